/**
 * Savepoints end to end with the CLI, a real nats-server, a supervisor and a generic worker
 * process running the deployed counter: a savepoint of the running job is listed; the job is
 * stopped with a savepoint; an incompatible version is refused with one line and nothing changes;
 * a compatible version deployed from the savepoint counts on from it; last, the keyed count is
 * repartitioned from 2 to 3 partitions in a new savepoint and restored into code for 3. Clicks
 * published while the job is stopped are counted after each restore; a restore writes each
 * partition's filter of stored keys. The exactly-once output,
 * over all versions, equals the running counts computed from the input: nothing lost or doubled.
 */
import { describe, expect, it } from "vitest";
import { resolve } from "node:path";
import { Kvm } from "@nats-io/kv";
import { JOBS_BUCKET, latestKey, type CheckpointRecord, type CommittedCheckpoint } from "../../runtime/core/protocol.ts";
import { deployModule, deployments } from "../../runtime/deploy/deploy.ts";
import { jobStatus } from "../../runtime/cli/status.ts";
import { ensureStream, publishAll, readAll } from "../../runtime/nats/streams.ts";
import { keyFilterKey } from "../../runtime/core/kv-keys.ts";
import { stateBucket } from "../../runtime/core/naming.ts";
import { deleteSavepoint, listSavepoints, readSavepoint } from "../../runtime/nats/savepoints.ts";
import { startSupervisor } from "../../runtime/supervisor/supervisor.ts";
import { connect, natsServer } from "../support/nats-server.ts";
import { eddyOk, runEddy } from "../support/cli.ts";
import { startEddy } from "../support/processes.ts";
import { waitFor } from "../support/wait.ts";

const ROOT = resolve(import.meta.dirname, "../..");
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const decoder = new TextDecoder();

describe("savepoints", () => {
  it("stops a job with a savepoint, refuses incompatible code, restores compatible and repartitioned code exactly once", async () => {
    await using server = await natsServer();
    const nc = await connect(server);
    const supervisor = await startSupervisor(nc, { checkpointIntervalMs: 200 });
    await using worker = startEddy(["worker", "--nats", server.url]);
    const eddy = (...args: string[]) => runEddy([...args, "--nats", server.url]);
    const ok = (...args: string[]) => eddyOk([...args, "--nats", server.url], { logs: worker.output });
    const patiently = { timeoutMs: 60_000, logs: worker.output, retryErrors: true };
    const users = ["ann", "bob", "cid", "dee", "eve"];
    let sent = 0;
    const send = async (n: number) => {
      const batch = Array.from({ length: n }, (_, i) => ({ subject: "counter.in", data: JSON.stringify({ user: users[(sent + i) % users.length] }) }));
      sent += n;
      await publishAll(nc, batch);
    };
    const outputs = async () => (await readAll(nc, "COUNTER_OUT")).map((m) => JSON.parse(decoder.decode(m.data)) as { user: string; n: number; v?: number });
    const jobs = await new Kvm(nc).create(JOBS_BUCKET, { history: 1 });
    const latest = async () => {
      const e = await jobs.get(latestKey("counter"));
      return e === null || e.length === 0 ? undefined : (JSON.parse(decoder.decode(e.value)) as CommittedCheckpoint);
    };
    try {
      await ensureStream(nc, "COUNTER_IN", ["counter.in"]);
      await ensureStream(nc, "COUNTER_OUT", ["counter.out"]);
      await deployModule(nc, resolve(ROOT, "test/fixtures/counter.ts"));
      await send(40);
      await waitFor("the first outputs", async () => (await outputs()).length === 40, patiently);

      // A savepoint of the running job: taken through the leader, listed, complete.
      const running = JSON.parse(await ok("savepoint", "counter", "--json")) as { savepoint: string; checkpoint: number };
      expect(running.savepoint).toMatch(/^sp-\d{8}T\d{9}Z-\d+$/);
      const table = await ok("savepoints", "counter");
      expect(table).toMatch(/^id\s+checkpoint\s+created \(UTC\)/);
      expect(table).toContain(running.savepoint);
      const saved = await readSavepoint(nc, "counter", running.savepoint);
      expect(saved.manifest).toMatchObject({ job: "counter", checkpoint: running.checkpoint, codeVersion: 1 });
      expect(saved.manifest.functions.map((f) => [f.name, f.partitions, f.isSource, f.state])).toEqual([
        ["clicks", 1, true, {}],
        ["count", 2, false, { n: { kind: "value", version: 1 } }],
        ["out", 1, false, {}],
      ]);
      // Two partitions' counts add up to the clicks counted when it was taken (all 40).
      const counted = saved.exports.get("count")!.flatMap((e) => e.entries.filter(([k]) => k.split(".")[1] === "n"));
      expect(counted).toHaveLength(users.length);

      await send(20);
      await waitFor("outputs after the savepoint", async () => (await outputs()).length === 60, patiently);

      // Stop with a savepoint: the deployment goes, the workers let go of the job.
      const stopped = JSON.parse(await ok("stop", "counter", "--savepoint", "--json")) as { savepoint: string; checkpoint: number };
      expect(stopped.savepoint).not.toBe(running.savepoint);
      expect(await deployments(nc)).toEqual([]);
      await waitFor("the worker to stop the job", async () => worker.output().includes("job counter undeployed"), patiently);
      expect((await listSavepoints(nc, "counter")).map((s) => s.manifest.id)).toEqual([running.savepoint, stopped.savepoint]);
      await send(20); // counted once the job runs again, from the savepoint's source position

      // Incompatible code is refused with one line, and nothing changes.
      const before = await latest();
      const refused = await eddy("deploy", resolve(ROOT, "test/fixtures/counter-incompatible.ts"), "--from-savepoint", stopped.savepoint);
      expect(refused.code).toBe(1);
      expect(refused.stderr.trim().split("\n").filter((l) => l.startsWith("eddy:"))).toEqual([
        expect.stringMatching(/^eddy: .*function "count".*state "n": kind changed from value to list/),
      ]);
      expect(await deployments(nc)).toEqual([]);
      expect(await latest()).toEqual(before);

      // Compatible code from the savepoint: counts go on from it.
      const [v2] = await deployModule(nc, resolve(ROOT, "test/fixtures/counter-v2.ts"), { fromSavepoint: stopped.savepoint });
      expect(v2!.restored).toMatchObject({ savepoint: stopped.savepoint, migrated: [], skipped: [] });
      expect(v2!.restored!.checkpoint).toBeGreaterThan(before!.id);
      const records = (await supervisor.checkpoints("counter")) as CheckpointRecord[];
      expect(records.find((r) => r.id === v2!.restored!.checkpoint)).toMatchObject({ status: "committed", restoredFrom: stopped.savepoint });
      // The restore wrote each partition's filter of stored keys (design note bk): the restored
      // actors answer a new user as absent without a lookup, and the counts below go on from the
      // savepoint only if every saved user is in it.
      const countState = await new Kvm(nc).open(stateBucket("counter", "count"));
      for (const p of [0, 1]) expect(await countState.get(keyFilterKey(p)), `partition ${p}'s filter`).not.toBeNull();
      await waitFor("the clicks sent while stopped", async () => (await outputs()).length === 80, patiently);
      await send(20);
      await waitFor("outputs of version 2", async () => (await outputs()).length === 100, patiently);
      // A running job's state is never overwritten.
      await expect(deployModule(nc, resolve(ROOT, "test/fixtures/counter-v2.ts"), { fromSavepoint: running.savepoint })).rejects.toThrow(/stop it first: eddy stop counter/);

      // Repartition the keyed count (2 → 3) in a new savepoint and restore it into code for 3.
      const second = JSON.parse(await ok("stop", "counter", "--savepoint", "--json")) as { savepoint: string };
      const rescaled = JSON.parse(await ok("state", "repartition", "counter", "count", "--partitions", "3", "--from-savepoint", second.savepoint, "--json")) as { savepoint: string };
      expect(rescaled.savepoint).not.toBe(second.savepoint);
      expect((await readSavepoint(nc, "counter", rescaled.savepoint)).manifest.functions.find((f) => f.name === "count")!.partitions).toBe(3);
      await waitFor("the worker to stop the job again", async () => worker.output().split("job counter undeployed").length === 3, patiently);
      // The saved partition count must match the code: restoring 2 partitions into 3 is refused.
      await expect(deployModule(nc, resolve(ROOT, "test/fixtures/counter-rescaled.ts"), { fromSavepoint: second.savepoint })).rejects.toThrow(/saved with 2 partitions, the job has 3.*repartition/);
      await send(20);
      await deployModule(nc, resolve(ROOT, "test/fixtures/counter-rescaled.ts"), { fromSavepoint: rescaled.savepoint });
      await waitFor("outputs of the repartitioned count", async () => (await outputs()).length === 120, patiently);
      await send(20);
      await waitFor("more outputs of the repartitioned count", async () => (await outputs()).length === 140, patiently);
      const status = await jobStatus(server.url, "counter");
      expect(status.partitions.filter((p) => p.function === "count").map((p) => p.partition)).toEqual([0, 1, 2]);
      await sleep(300);

      const out = await outputs();
      expect(out).toHaveLength(140);
      expect(out.filter((o) => o.v === 2)).toHaveLength(40);
      expect(out.filter((o) => o.v === 3)).toHaveLength(40);
      const counts = new Map<string, number>();
      const expected: string[] = [];
      for (let i = 0; i < sent; i++) {
        const u = users[i % users.length]!;
        counts.set(u, (counts.get(u) ?? 0) + 1);
        expected.push(`${u}:${counts.get(u)}`);
      }
      expect(out.map((o) => `${o.user}:${o.n}`).sort()).toEqual(expected.sort());

      // Savepoints stay until deleted (checkpoint cleanup never touches them).
      expect((await listSavepoints(nc, "counter")).map((s) => s.manifest.id)).toEqual([running.savepoint, stopped.savepoint, second.savepoint, rescaled.savepoint]);
      await deleteSavepoint(nc, "counter", running.savepoint);
      expect((await listSavepoints(nc, "counter")).map((s) => s.manifest.id)).toEqual([stopped.savepoint, second.savepoint, rescaled.savepoint]);
    } finally {
      await supervisor.stop();
      await nc.close();
    }
  }, 90_000);
});
