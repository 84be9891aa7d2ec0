/**
 * Scaling and upgrading a deployed job without losing or repeating anything. The job is deployed
 * with `eddy deploy` and runs on generic worker processes: first one; then three (the newcomers
 * get their actors at a stop checkpoint, same generation); then one is SIGKILLed (recovered in a
 * new generation; so is one that dies right after joining) and another stops on SIGTERM (handed over gracefully); then a new version is
 * deployed (swapped in at a checkpoint); last, the job is scaled to zero and back. `eddy status` shows the partitions spread at each stage,
 * and the exactly-once output equals the running counts computed from the input.
 */
import { describe, expect, it } from "vitest";
import { resolve } from "node:path";
import { Kvm } from "@nats-io/kv";
import { assignmentKey, JOBS_BUCKET, type Assignment } from "../../runtime/core/protocol.ts";
import { deployModule } from "../../runtime/deploy/deploy.ts";
import { jobStatus } from "../../runtime/cli/status.ts";
import { ensureStream, publishAll, readAll } from "../../runtime/nats/streams.ts";
import { startSupervisor } from "../../runtime/supervisor/supervisor.ts";
import { connect, natsServer } from "../support/nats-server.ts";
import { startEddy, type EddyProcess } from "../support/processes.ts";
import { waitFor } from "../support/wait.ts";

const ROOT = resolve(import.meta.dirname, "../..");
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const decoder = new TextDecoder();

describe("scaling and upgrading a deployed job", () => {
  it("hands partitions over when workers join or leave, recovers a killed one, swaps code at a checkpoint, exactly once", async () => {
    await using server = await natsServer();
    const nc = await connect(server);
    const supervisor = await startSupervisor(nc, { checkpointIntervalMs: 300, checkpointTimeoutMs: 4000 });
    const workers: EddyProcess[] = [];
    const start = () => {
      const w = startEddy(["worker", "--nats", server.url]);
      workers.push(w);
      return w;
    };
    const patiently = { timeoutMs: 80_000, logs: () => workers.map((w) => w.output()).join("\n---\n"), retryErrors: true };
    const jobs = await new Kvm(nc).create(JOBS_BUCKET, { history: 1 });
    const assignment = async () => {
      const e = await jobs.get(assignmentKey("counter"));
      return e === null || e.length === 0 ? undefined : (JSON.parse(decoder.decode(e.value)) as Assignment);
    };
    /** Distinct owners as `eddy status` reports them. */
    const spread = async () => new Set((await jobStatus(server.url, "counter")).partitions.map((p) => p.owner)).size;
    const users = ["ann", "bob", "cid", "dee", "eve", "fay", "gus", "hal"];
    let sent = 0;
    const send = async (n: number) => {
      const batch = Array.from({ length: n }, (_, i) => ({ subject: "counter.in", data: JSON.stringify({ user: users[(sent + i) % users.length] }) }));
      sent += n;
      await publishAll(nc, batch);
    };
    const outputs = async () => (await readAll(nc, "COUNTER_OUT")).map((m) => JSON.parse(decoder.decode(m.data)) as { user: string; n: number; v?: number });
    try {
      await ensureStream(nc, "COUNTER_IN", ["counter.in"]);
      await ensureStream(nc, "COUNTER_OUT", ["counter.out"]);
      await deployModule(nc, resolve(ROOT, "test/fixtures/counter.ts"));
      start();
      await send(80);
      await waitFor("the first outputs", async () => (await outputs()).length === 80, patiently);
      expect(await spread()).toBe(1);
      const g1 = (await assignment())!.generation;

      start();
      start();
      await waitFor("three owners", async () => (await spread()) === 3, patiently);
      expect((await assignment())!.generation).toBe(g1); // joining is a handoff, not a recovery
      await send(80);
      await waitFor("outputs after scaling to three", async () => (await outputs()).length === 160, patiently);

      // A joiner that dies right after its handoff, before the next checkpoint commits: the job
      // restarts from the stop checkpoint again, and what ran in between is not counted twice.
      const joiner = start();
      await waitFor("four owners", async () => (await spread()) === 4, patiently);
      await joiner.kill();
      await send(40);
      await waitFor("outputs after the joiner died", async () => (await outputs()).length >= 200, patiently);

      await workers[1]!.kill(); // a crash: recovered in a new generation
      const gBefore = (await assignment())!.generation;
      await waitFor("a new generation after the crash", async () => (await assignment())!.generation > gBefore, patiently);
      await waitFor("two owners after the crash", async () => (await spread()) === 2, patiently);
      const g2 = (await assignment())!.generation;
      await send(80);
      await waitFor("outputs after the crash", async () => (await outputs()).length === 280, patiently);

      const leaving = workers[2]!;
      leaving.child.kill("SIGTERM"); // a graceful leave: handed over at a checkpoint
      await waitFor("one owner after the leave", async () => (await spread()) === 1, patiently);
      expect((await assignment())!.generation).toBe(g2);
      await waitFor("the leaving worker to exit", async () => leaving.child.exitCode !== null, patiently);
      expect(leaving.output()).toContain("partitions handed over");
      await send(80);
      await waitFor("outputs after the leave", async () => (await outputs()).length === 360, patiently);

      await deployModule(nc, resolve(ROOT, "test/fixtures/counter-v2.ts"));
      await waitFor("version 2 running", async () => (await assignment())!.codeVersion === 2, patiently);
      await send(80);
      await waitFor("outputs of version 2", async () => (await outputs()).length === 440, patiently);
      await sleep(500);

      // Scale to zero and back: the last worker parks the job at a checkpoint and exits at
      // once; a new worker takes it up from there in the same generation.
      const g3 = (await assignment())!.generation;
      const last = workers[0]!;
      last.child.kill("SIGTERM");
      await waitFor("the last worker to exit", async () => last.child.exitCode !== null, patiently);
      expect(last.output()).toContain("partitions handed over");
      expect(Object.keys((await assignment())!.owners)).toHaveLength(0);
      start();
      await send(40);
      await waitFor("outputs after scaling back from zero", async () => (await outputs()).length === 480, patiently);
      expect((await assignment())!.generation).toBe(g3);
      await sleep(500);

      const out = await outputs();
      expect(out).toHaveLength(480);
      expect(out.filter((o) => o.v === 2)).toHaveLength(120);
      const counts = new Map<string, number>();
      const expected: string[] = [];
      for (let i = 0; i < sent; i++) {
        const u = users[i % users.length]!;
        counts.set(u, (counts.get(u) ?? 0) + 1);
        expected.push(`${u}:${counts.get(u)}`);
      }
      expect(out.map((o) => `${o.user}:${o.n}`).sort()).toEqual(expected.sort());
    } finally {
      for (const w of workers) await w.kill();
      await supervisor.stop();
      await nc.close();
    }
  }, 180_000);
});
