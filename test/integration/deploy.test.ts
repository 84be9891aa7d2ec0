/**
 * Deploying code to generic workers: `eddy deploy` bundles a module, validates it and publishes
 * a version; a worker started without `--pipeline` fetches the bundle and runs the job. A module
 * that does not load or that is incompatible with the running version is rejected and the
 * running version stays. Undeploying stops the job on the workers.
 */
import { describe, expect, it } from "vitest";
import { resolve } from "node:path";
import { deployModule, deployments, IncompatibleDeploymentError, start, undeploy } from "../../runtime/deploy/deploy.ts";
import { openDeployments } from "../../runtime/nats/deployments.ts";
import { Objm } from "@nats-io/obj";
import { InvalidModuleError } from "../../runtime/deploy/bundle.ts";
import { Kvm } from "@nats-io/kv";
import { assignmentKey, JOBS_BUCKET, type Assignment } from "../../runtime/core/protocol.ts";
import { ensureStream, publishAll, readAll } from "../../runtime/nats/streams.ts";
import { startSupervisor } from "../../runtime/supervisor/supervisor.ts";
import { connect, natsServer } from "../support/nats-server.ts";
import { runEddy } from "../support/cli.ts";
import { startEddy } from "../support/processes.ts";
import { waitFor } from "../support/wait.ts";

const ROOT = resolve(import.meta.dirname, "../..");

describe("deployments", () => {
  it("runs deployed code on a generic worker and refuses bad or incompatible modules", async () => {
    await using server = await natsServer();
    const nc = await connect(server);
    const supLog: string[] = [];
    const supervisor = await startSupervisor(nc, { checkpointIntervalMs: 300, log: (l) => void supLog.push(l) });
    await using worker = startEddy(["worker", "--nats", server.url]);
    try {
      await ensureStream(nc, "COUNTER_IN", ["counter.in"]);
      await ensureStream(nc, "COUNTER_OUT", ["counter.out"]);
      const store = await openDeployments(nc);
      const [first] = await deployModule(nc, resolve(ROOT, "test/fixtures/counter.ts"));
      expect(first).toMatchObject({ job: "counter", version: 1, unchanged: false });
      expect(first!.digest).toMatch(/^sha256-[0-9a-f]{64}$/);
      // The same code again is no new version.
      expect((await deployModule(nc, resolve(ROOT, "test/fixtures/counter.ts")))[0]).toMatchObject({ version: 1, unchanged: true });

      await publishAll(nc, ["ann", "bob", "ann"].map((user) => ({ subject: "counter.in", data: JSON.stringify({ user }) })));
      // The sink is exactly-once: rows appear as the periodic checkpoints commit.
      const totals = async () => (await readAll(nc, "COUNTER_OUT")).map((m) => JSON.parse(new TextDecoder().decode(m.data)));
      let out: Array<{ user: string; n: number }> = await waitFor("three totals", async () => {
        const o = await totals();
        return o.length >= 3 && o;
      }, { logs: worker.output });
      expect(out.map((t) => `${t.user}:${t.n}`).sort(), worker.output()).toEqual(["ann:1", "ann:2", "bob:1"]);

      await expect(deployModule(nc, resolve(ROOT, "test/fixtures/broken-module.ts"), { job: "counter" })).rejects.toThrow(InvalidModuleError);
      await expect(deployModule(nc, resolve(ROOT, "test/fixtures/counter-incompatible.ts"))).rejects.toThrow(IncompatibleDeploymentError);
      await expect(deployModule(nc, resolve(ROOT, "test/fixtures/counter-incompatible.ts"))).rejects.toThrow(/state "n": kind value -> list/);
      expect((await deployments(nc)).map((d) => [d.job, d.version, d.digest])).toEqual([["counter", 1, first!.digest]]);

      // The CLI says the same, and refuses a bad module with one line and a non-zero exit.
      const ls = (await runEddy(["ls", "--nats", server.url])).stdout;
      expect(ls).toMatch(/^job\s+version\s+code/);
      expect(ls).toMatch(/counter\s+1\s+sha256-/);
      const failed = await runEddy(["deploy", resolve(ROOT, "test/fixtures/broken-module.ts"), "--nats", server.url]);
      expect(failed.code).toBe(1);
      expect(failed.stderr.trim().split("\n").filter((l) => l.startsWith("eddy:"))).toEqual([expect.stringMatching(/^eddy: .*broken-module\.ts fails to load: this module is broken on purpose/)]);

      // eddy status shows the deployed version and who owns each partition.
      const status = JSON.parse((await runEddy(["status", "counter", "--nats", server.url, "--json"])).stdout);
      expect(status).toMatchObject({ job: "counter", deployedVersion: 1 });
      expect(status.generation).toBeGreaterThanOrEqual(1);
      expect(status.partitions.map((p: { function: string; partition: number }) => `${p.function}/${p.partition}`)).toEqual(["clicks/0", "count/0", "count/1", "out/0"]);
      expect(new Set(status.partitions.map((p: { owner: string }) => p.owner)).size).toBe(1);
      expect(status.partitions[0].owner).toMatch(/-counter$/);
      // Each running actor says what its read loop awaits (mostly "waiting for input" here).
      for (const p of status.partitions as Array<{ now: unknown }>) expect(p.now).toMatch(/^(waiting|reading|settling|checking|ending|spilling|uploading) /);
      const table = (await runEddy(["status", "counter", "--nats", server.url])).stdout;
      expect(table).toMatch(/^job counter: version 1, generation \d+, last checkpoint/);
      expect(table).toMatch(/^function\s+partition\s+owner\s+lag\s+watermark \(UTC\)\s+watermark lag\s+now$/m);

      // A compatible new version replaces the running code at a checkpoint: counting goes on
      // from the state version 1 left.
      const generation = async () => JSON.parse(new TextDecoder().decode((await (await new Kvm(nc).open(JOBS_BUCKET)).get(assignmentKey("counter")))!.value)) as Assignment;
      const before = await generation();
      const [second] = await deployModule(nc, resolve(ROOT, "test/fixtures/counter-v2.ts"));
      expect(second).toMatchObject({ job: "counter", version: 2, unchanged: false });
      // Normally the same generation (the swap is a handoff at a stop checkpoint); if that
      // checkpoint cannot complete the supervisor recovers instead, which is just as exact.
      const after = await waitFor("version 2 running", async () => {
        const a = await generation();
        return a.codeVersion === 2 && a;
      }, { timeoutMs: 20_000, logs: () => `${supLog.join("\n")}\n${worker.output()}` });
      expect(after.generation).toBeGreaterThanOrEqual(before.generation);
      await publishAll(nc, ["ann", "cid"].map((user) => ({ subject: "counter.in", data: JSON.stringify({ user }) })));
      out = await waitFor("five totals", async () => {
        const o = await totals();
        return o.length >= 5 && o;
      }, { logs: worker.output });
      expect(out.slice(3), worker.output()).toEqual(expect.arrayContaining([{ user: "ann", n: 3, v: 2 }, { user: "cid", n: 1, v: 2 }]));
      expect(out).toHaveLength(5);

      await undeploy(nc, "counter");
      expect(await deployments(nc)).toEqual([]);
      // The state stays after an undeploy: a later deploy must still be compatible with it, and
      // versions go on counting.
      await expect(deployModule(nc, resolve(ROOT, "test/fixtures/counter-incompatible.ts"))).rejects.toThrow(/its state is that of version 2/);
      await waitFor("the worker to stop the job", () => worker.output().includes("job counter undeployed"), { logs: worker.output });
      expect((await deployModule(nc, resolve(ROOT, "test/fixtures/counter.ts")))[0]).toMatchObject({ version: 3, unchanged: false });
      await waitFor("the worker to run version 3", () => worker.output().split("running job counter version 3").length === 2);

      // Starting a stopped job is no new version, nor is deploying its code again while stopped:
      // the last version becomes current again and the workers run it.
      const versions = async () => (await store.jobs.keys("counter.deploy.*").then(async (it) => { const ks: string[] = []; for await (const k of it) ks.push(k); return ks.sort(); }));
      expect(await versions()).toEqual(["counter.deploy.1", "counter.deploy.2", "counter.deploy.3"]);
      await undeploy(nc, "counter");
      await waitFor("the worker to stop the job", () => worker.output().split("job counter undeployed").length === 3);
      expect(await start(nc, "counter")).toMatchObject({ version: 3, unchanged: true, started: true });
      expect((await deployments(nc)).map((d) => d.version)).toEqual([3]);
      await waitFor("the worker to run version 3 again", () => worker.output().split("running job counter version 3").length === 3);
      await undeploy(nc, "counter");
      await waitFor("the worker to stop the job again", () => worker.output().split("job counter undeployed").length === 4);
      expect((await deployModule(nc, resolve(ROOT, "test/fixtures/counter.ts")))[0]).toMatchObject({ version: 3, unchanged: true, started: true });
      expect((await deployments(nc)).map((d) => d.version)).toEqual([3]);
      expect(await versions()).toEqual(["counter.deploy.1", "counter.deploy.2", "counter.deploy.3"]);
      await waitFor("the worker to run version 3 once more", () => worker.output().split("running job counter version 3").length === 4);
    } finally {
      await supervisor.stop();
      await nc.close();
    }
  });

  it("refuses to run deployed code whose bytes no longer match the deployment's digest", async () => {
    await using server = await natsServer();
    const nc = await connect(server);
    const supervisor = await startSupervisor(nc, { checkpointIntervalMs: 300 });
    try {
      await ensureStream(nc, "COUNTER_IN", ["counter.in"]);
      await ensureStream(nc, "COUNTER_OUT", ["counter.out"]);
      const [deployed] = await deployModule(nc, resolve(ROOT, "test/fixtures/counter.ts"));
      // Someone with write access to the code store replaces the bundle behind the digest.
      const code = await new Objm(nc).open("eddy_code");
      await code.putBlob({ name: deployed!.digest }, new TextEncoder().encode('export default { name: "counter", evil: true };'));

      await using worker = startEddy(["worker", "--nats", server.url]);
      await publishAll(nc, [{ subject: "counter.in", data: JSON.stringify({ user: "ann" }) }]);
      await waitFor("the worker to refuse the code", () => worker.output().includes("was tampered with"), { timeoutMs: 20_000, logs: worker.output });
      expect(worker.output()).toMatch(new RegExp(`job counter version 1: deployed code ${deployed!.digest} in eddy_code was tampered with: its bytes hash to sha256-[0-9a-f]{64}; refusing to run it`));
      expect(worker.output()).not.toContain("running job counter");
      expect(await readAll(nc, "COUNTER_OUT")).toEqual([]);

      // Deploying the same code again repairs the object (same version: nothing else changed),
      // and the worker, which keeps retrying, runs it.
      expect((await deployModule(nc, resolve(ROOT, "test/fixtures/counter.ts")))[0]).toMatchObject({ version: 1, unchanged: true });
      await waitFor("the worker to run the repaired code", () => worker.output().includes("running job counter version 1"), { timeoutMs: 20_000, logs: worker.output });
      const out = await waitFor("the count", async () => {
        const o = (await readAll(nc, "COUNTER_OUT")).map((m) => JSON.parse(new TextDecoder().decode(m.data)) as unknown);
        return o.length > 0 && o;
      }, { logs: worker.output });
      expect(out).toEqual([{ user: "ann", n: 1 }]);
    } finally {
      await supervisor.stop();
      await nc.close();
    }
  }, 60_000);

  it("refuses a version that would give chained functions actors of their own, and takes the other way round", async () => {
    await using server = await natsServer();
    const nc = await connect(server);
    try {
      await ensureStream(nc, "CHAIN_IN", ["chain.in.*"]);
      await ensureStream(nc, "CHAIN_OUT", ["chain.out"]);
      expect((await deployModule(nc, resolve(ROOT, "test/fixtures/chained-ledger.ts")))[0]).toMatchObject({ job: "chainledger", version: 1 });
      // Its checkpoints hold no snapshot of `keep` or `out`: restored with actors of their own, they would find none.
      await expect(deployModule(nc, resolve(ROOT, "test/fixtures/chained-ledger-unchained.ts"))).rejects.toThrow(IncompatibleDeploymentError);
      await expect(deployModule(nc, resolve(ROOT, "test/fixtures/chained-ledger-unchained.ts"))).rejects.toThrow(/function "keep" runs chained in its producer's actors .*eddy deploy --from-savepoint/);
    } finally {
      await nc.close();
    }
    // Unchained first, then chained: the chained functions' snapshots are simply not read (note ch).
    await using other = await natsServer();
    const nc2 = await connect(other);
    try {
      await ensureStream(nc2, "CHAIN_IN", ["chain.in.*"]);
      await ensureStream(nc2, "CHAIN_OUT", ["chain.out"]);
      expect((await deployModule(nc2, resolve(ROOT, "test/fixtures/chained-ledger-unchained.ts")))[0]).toMatchObject({ version: 1 });
      expect((await deployModule(nc2, resolve(ROOT, "test/fixtures/chained-ledger.ts")))[0]).toMatchObject({ version: 2, unchanged: false });
    } finally {
      await nc2.close();
    }
  }, 60_000);
});
