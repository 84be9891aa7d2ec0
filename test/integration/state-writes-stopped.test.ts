/**
 * `eddy state put|delete` on a job that is not running, through the real CLI against a real
 * nats-server, a supervisor and a worker process (test/fixtures/ledger.ts):
 *
 * - with the job stopped by `eddy stop`, a write is appended to the function's input log at once
 *   (the command says it is queued, and the log grew by one), and `eddy start` applies it in
 *   order with the data that follows it;
 * - a write that cannot be applied (undeclared state, wrong kind, a value the declaration's
 *   `validate` refuses — checked against the deployed code also while stopped) is refused with
 *   one line and exit code 1, and nothing reaches the log.
 */
import { describe, expect, it } from "vitest";
import { spawn } from "node:child_process";
import { resolve } from "node:path";
import { jetstreamManager } from "@nats-io/jetstream";
import { inputStream } from "../../runtime/core/naming.ts";
import { ensureStream, publishAll } from "../../runtime/nats/streams.ts";
import { stateClient } from "../../runtime/nats/state-client.ts";
import { startSupervisor } from "../../runtime/supervisor/supervisor.ts";
import { connect, natsServer } from "../support/nats-server.ts";
import { startEddy } from "../support/processes.ts";
import { waitFor } from "../support/wait.ts";

const ROOT = resolve(import.meta.dirname, "../..");
const CLI = resolve(ROOT, "runtime/cli/main.mjs");

describe("state writes to a stopped job", () => {
  it("are queued in the input log and applied on start, or refused with one line", async () => {
    await using server = await natsServer();
    const nc = await connect(server);
    const supervisor = await startSupervisor(nc, { checkpointIntervalMs: 200 });
    let worker = startEddy(["worker", "--nats", server.url]);
    const eddy = (args: string[]) =>
      new Promise<{ code: number | null; stdout: string; stderr: string; ms: number }>((done) => {
        const t0 = Date.now();
        const child = spawn(process.execPath, [CLI, ...args, "--nats", server.url], { cwd: ROOT });
        let stdout = "";
        let stderr = "";
        child.stdout.on("data", (d) => (stdout += d));
        child.stderr.on("data", (d) => (stderr += d));
        child.on("close", (code) => done({ code, stdout, stderr, ms: Date.now() - t0 }));
      });
    // The probes read state that may not exist yet: an error means "not yet".
    const until = (what: string, probe: () => Promise<boolean>) => waitFor(what, probe, { timeoutMs: 30_000, retryErrors: true, logs: () => worker.output() });
    const jsm = await jetstreamManager(nc);
    const logLength = async () => (await jsm.streams.info(inputStream("ledger", "book"))).state.last_seq;
    const publish = (account: string, ids: string[]) => publishAll(nc, ids.map((id) => ({ subject: "ledger.in", data: JSON.stringify({ account, id }) })));
    try {
      await ensureStream(nc, "LEDGER_IN", ["ledger.in"]);
      expect((await eddy(["deploy", resolve(ROOT, "test/fixtures/ledger.ts")])).code).toBe(0);
      await publish("a1", ["1", "2"]);
      const book = await stateClient(nc, "ledger", "book");
      await until("the records counted", async () => (await book.get<number>("count", "a1")) === 2);

      const stop = await eddy(["stop", "ledger"]);
      expect(stop.code, stop.stderr).toBe(0);
      const before = await logLength();

      // Queued at once: the log grew by exactly this write, and the command says what happened.
      const put = await eddy(["state", "put", "ledger", "book", "count", "a1", "100"]);
      expect(put.code, put.stderr).toBe(0);
      expect(put.stdout).toMatch(/queued/);
      expect(put.stdout).not.toMatch(/\(applied\)/);
      expect(put.ms).toBeLessThan(8_000);
      expect(await logLength()).toBe(before + 1);

      // Refused: one line, exit 1, nothing appended.
      const refused = await eddy(["state", "put", "ledger", "book", "nope", "a1", "1"]);
      expect(refused.code).toBe(1);
      expect(refused.stderr.trim().split("\n"), refused.stderr).toHaveLength(1);
      expect(refused.stderr).toMatch(/^eddy: .*not declared/);
      const wrongKind = await eddy(["state", "put", "ledger", "book", "entries", "a1", "1"]);
      expect(wrongKind.code).toBe(1);
      expect(wrongKind.stderr.trim().split("\n"), wrongKind.stderr).toHaveLength(1);
      // The declared validate runs on the deployed code, also with nobody running the job.
      const wrongType = await eddy(["state", "put", "ledger", "book", "count", "a1", '"ten"']);
      expect(wrongType.code).toBe(1);
      expect(wrongType.stderr).toBe('eddy: operation 1 (put): state "count" refuses "ten": a count is a whole number >= 0\n');
      expect(await logLength()).toBe(before + 1);

      // Data published while stopped comes after the write once the job runs again.
      await publish("a1", ["3"]);
      const start = await eddy(["start", "ledger"]);
      expect(start.code, start.stderr).toBe(0);
      await until("the queued write and the later record applied", async () => (await book.get<number>("count", "a1")) === 101);
      expect(await book.get("entries", "a1")).toEqual({ "d:1": 1, "d:2": 1, "d:3": 1 });

      // Running again, a write is applied before the command returns.
      const live = await eddy(["state", "delete", "ledger", "book", "entries", "a1", "--subkey", "d:1"]);
      expect(live.code, live.stderr).toBe(0);
      expect(live.stdout).toMatch(/\(applied\)/);
      expect(await book.get("entries", "a1", { subkey: "d:1" })).toBeUndefined();
      const wrongTypeLive = await eddy(["state", "put", "ledger", "book", "count", "a1", "-1"]);
      expect(wrongTypeLive.code).toBe(1);
      expect(wrongTypeLive.stderr).toBe('eddy: operation 1 (put): state "count" refuses -1: a count is a whole number >= 0\n');

      // Deployed but run by nobody (its only worker crashed): the write goes to the log after the
      // retries, says so, and the next worker applies it.
      await worker.kill();
      const quick = await stateClient(nc, "ledger", "book", { timeoutMs: 1_000 });
      const length = await logLength();
      const receipt = await quick.put("count", "a1", 500);
      expect(receipt.applied).toBe(false);
      expect(receipt.queued).toMatch(/no worker serves/);
      expect(await logLength()).toBe(length + 1);
      worker = startEddy(["worker", "--nats", server.url]);
      await until("the write queued during the crash applied", async () => (await book.get<number>("count", "a1")) === 500);
    } finally {
      await worker.kill();
      await supervisor.stop();
      await nc.close();
    }
  }, 120_000);
});
