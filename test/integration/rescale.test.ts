/**
 * Scaling without losing or repeating anything: a job runs on one worker process; a second and a
 * third join (their actors are handed over at a stop checkpoint, same generation); one leaves on
 * SIGTERM (handed over the same way); one is SIGKILLed (recovered in a new generation). Through it
 * all the exactly-once output equals the running counts computed from the input, and the
 * partitions end up spread over the workers.
 */
import { describe, expect, it } from "vitest";
import { resolve } from "node:path";
import { Kvm } from "@nats-io/kv";
import { assignmentKey, JOBS_BUCKET, type Assignment } from "../../runtime/core/protocol.ts";
import { requestEndOfInput } from "../../runtime/nats/control.ts";
import { ensureStream, publishAll, readAll } from "../../runtime/nats/streams.ts";
import { startSupervisor } from "../../runtime/supervisor/supervisor.ts";
import { connect, natsServer } from "../support/nats-server.ts";
import { startWorkerProcess, type EddyProcess } from "../support/processes.ts";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const decoder = new TextDecoder();

describe("rescaling", () => {
  it("hands partitions over at checkpoints when workers join or leave, and recovers a killed one, exactly once", async () => {
    await using server = await natsServer();
    const nc = await connect(server);
    const supervisor = await startSupervisor(nc, { checkpointIntervalMs: 300, log: () => undefined });
    const workers: EddyProcess[] = [];
    const start = () => {
      const w = startWorkerProcess("test/fixtures/counter.ts", server.url);
      workers.push(w);
      return w;
    };
    const jobs = await new Kvm(nc).create(JOBS_BUCKET, { history: 1 });
    const assignment = async () => {
      const e = await jobs.get(assignmentKey("counter"));
      return e === null || e.length === 0 ? undefined : (JSON.parse(decoder.decode(e.value)) as Assignment);
    };
    const owners = async () => new Set(Object.values((await assignment())?.owners ?? {}));
    const waitFor = async (what: string, ok: () => Promise<boolean>) => {
      for (let i = 0; i < 300; i++) {
        if (await ok()) return;
        await sleep(100);
      }
      throw new Error(`timed out waiting for ${what}\n${workers.map((w) => w.output()).join("\n---\n")}`);
    };
    const users = ["ann", "bob", "cid", "dee", "eve", "fay", "gus", "hal"];
    let sent = 0;
    const send = async (n: number) => {
      const batch = Array.from({ length: n }, (_, i) => ({ subject: "counter.in", data: JSON.stringify({ user: users[(sent + i) % users.length] }) }));
      sent += n;
      await publishAll(nc, batch);
    };
    const outputs = async () => (await readAll(nc, "COUNTER_OUT")).map((m) => JSON.parse(decoder.decode(m.data)) as { user: string; n: number });
    try {
      await ensureStream(nc, "COUNTER_IN", ["counter.in"]);
      await ensureStream(nc, "COUNTER_OUT", ["counter.out"]);
      start();
      await send(80);
      await waitFor("the first outputs", async () => (await outputs()).length === 80);
      const g1 = (await assignment())!.generation;

      start();
      start();
      await waitFor("three owners", async () => (await owners()).size === 3);
      const joined = (await assignment())!;
      expect(joined.generation).toBe(g1); // joining is a handoff, not a recovery
      expect(joined.incarnation ?? 0).toBeGreaterThan(0);
      await send(80);
      await waitFor("outputs after joining", async () => (await outputs()).length === 160);

      // A graceful leave: SIGTERM, the worker hands its actors over before it exits.
      const leaving = workers[1]!;
      leaving.child.kill("SIGTERM");
      await waitFor("two owners after a graceful leave", async () => (await owners()).size === 2);
      expect((await assignment())!.generation).toBe(g1);
      await waitFor("the leaving worker to exit", async () => leaving.child.exitCode !== null);
      expect(leaving.output()).toContain("partitions handed over");
      await send(80);
      await waitFor("outputs after the leave", async () => (await outputs()).length === 240);

      // A crash: SIGKILL; the supervisor recovers the job in a new generation.
      await workers[2]!.kill();
      await waitFor("a new generation after the crash", async () => (await assignment())!.generation > g1);
      await send(80);
      await requestEndOfInput(nc, "counter");
      await waitFor("every output", async () => (await outputs()).length >= 320);
      await sleep(500);

      const out = await outputs();
      const expected = new Map<string, number>();
      const rows: string[] = [];
      for (let i = 0; i < sent; i++) {
        const u = users[i % users.length]!;
        expected.set(u, (expected.get(u) ?? 0) + 1);
        rows.push(`${u}:${expected.get(u)}`);
      }
      expect(out.map((o) => `${o.user}:${o.n}`).sort()).toEqual(rows.sort());
    } finally {
      for (const w of workers) await w.kill();
      await supervisor.stop();
      await nc.close();
    }
  }, 120_000);
});
