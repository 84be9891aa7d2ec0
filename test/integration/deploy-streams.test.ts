/**
 * `eddy deploy` checks the user streams a job needs before it publishes anything, against a real
 * nats-server: a missing source stream or a sink subject no stream captures is refused with one
 * line per missing thing and a ready command, and nothing is deployed; `--create-streams` creates
 * them with eddy's defaults, and the job then runs on a generic worker.
 */
import { describe, expect, it } from "vitest";
import { spawn } from "node:child_process";
import { resolve } from "node:path";
import { jetstreamManager, RetentionPolicy, StorageType } from "@nats-io/jetstream";
import { deployments } from "../../runtime/deploy/deploy.ts";
import { publishAll, readAll } from "../../runtime/nats/streams.ts";
import { startSupervisor } from "../../runtime/supervisor/supervisor.ts";
import { connect, natsServer } from "../support/nats-server.ts";
import { startEddy } from "../support/processes.ts";

const ROOT = resolve(import.meta.dirname, "../..");
const CLI = resolve(ROOT, "runtime/cli/main.mjs");
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe("deploy checks streams", () => {
  it("refuses a job whose streams are missing, saying what to create, and creates them with --create-streams", async () => {
    await using server = await natsServer();
    const nc = await connect(server);
    const eddy = (args: string[]) =>
      new Promise<{ code: number | null; stdout: string; stderr: string }>((done) => {
        const child = spawn(process.execPath, [CLI, ...args, "--nats", server.url], { cwd: ROOT });
        let stdout = "";
        let stderr = "";
        child.stdout.on("data", (d) => (stdout += d));
        child.stderr.on("data", (d) => (stderr += d));
        child.on("close", (code) => done({ code, stdout, stderr }));
      });
    const supervisor = await startSupervisor(nc, { checkpointIntervalMs: 200 });
    await using worker = startEddy(["worker", "--nats", server.url]);
    try {
      const refused = await eddy(["deploy", "test/fixtures/counter.ts"]);
      expect(refused.code, refused.stderr).toBe(1);
      expect(refused.stderr.split("\n").filter((l) => l.trim() !== "" && !l.startsWith("eddy deploy:"))).toEqual([
        "eddy: 2 streams the job needs are missing (create them, or deploy with --create-streams):",
        `  source "clicks" of job "counter" reads stream COUNTER_IN, which does not exist: nats stream add COUNTER_IN --subjects 'counter.in' --storage file --retention limits --discard old --replicas 1 --defaults`,
        `  sink "out" of job "counter" publishes to counter.out, which no stream captures: nats stream add COUNTER_OUT --subjects 'counter.out' --storage file --retention limits --discard old --replicas 1 --dupe-window 120s --defaults`,
      ]);
      expect(await deployments(nc)).toEqual([]);

      const created = await eddy(["deploy", "test/fixtures/counter.ts", "--create-streams"]);
      expect(created.code, created.stderr).toBe(0);
      expect(created.stdout).toMatch(/^counter: deployed version 1 /m);
      expect(created.stdout).toContain("  created stream COUNTER_IN (counter.in)");
      expect(created.stdout).toContain("  created stream COUNTER_OUT (counter.out; duplicate window 120 s)");
      const jsm = await jetstreamManager(nc);
      for (const name of ["COUNTER_IN", "COUNTER_OUT"]) {
        const { config } = await jsm.streams.info(name);
        expect([config.storage, config.retention, config.num_replicas]).toEqual([StorageType.File, RetentionPolicy.Limits, 1]);
      }
      expect((await jsm.streams.info("COUNTER_OUT")).config.duplicate_window).toBe(120_000_000_000);
      expect(await jsm.streams.find("counter.out")).toBe("COUNTER_OUT");

      // The job runs on the streams it got.
      await publishAll(nc, ["ann", "bob", "ann"].map((user) => ({ subject: "counter.in", data: JSON.stringify({ user }) })));
      for (let i = 0; i < 300 && (await readAll(nc, "COUNTER_OUT")).length < 3; i++) await sleep(100);
      expect((await readAll(nc, "COUNTER_OUT")).length, worker.output()).toBe(3);

      // With everything there, a deploy checks and says nothing more.
      const again = await eddy(["deploy", "test/fixtures/counter.ts"]);
      expect(again.code, again.stderr).toBe(0);
      expect(again.stdout).not.toMatch(/created stream/);
    } finally {
      await worker.kill();
      await supervisor.stop();
      await nc.close();
    }
  }, 120_000);
});
