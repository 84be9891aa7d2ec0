/**
 * Deploying code to generic workers: `eddy deploy` bundles a module, validates it and publishes
 * a version; a worker started without `--pipeline` fetches the bundle and runs the job. A module
 * that does not load or that is incompatible with the running version is rejected and the
 * running version stays. Undeploying stops the job on the workers.
 */
import { describe, expect, it } from "vitest";
import { execFileSync } from "node:child_process";
import { resolve } from "node:path";
import { deployModule, deployments, IncompatibleDeploymentError, undeploy } from "../../runtime/deploy/deploy.ts";
import { InvalidModuleError } from "../../runtime/deploy/bundle.ts";
import { requestEndOfInput } from "../../runtime/nats/control.ts";
import { ensureStream, publishAll, readAll } from "../../runtime/nats/streams.ts";
import { startSupervisor } from "../../runtime/supervisor/supervisor.ts";
import { connect, natsServer } from "../support/nats-server.ts";
import { startEddy } from "../support/processes.ts";

const ROOT = resolve(import.meta.dirname, "../..");
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe("deployments", () => {
  it("runs deployed code on a generic worker and refuses bad or incompatible modules", async () => {
    await using server = await natsServer();
    const nc = await connect(server);
    const supervisor = await startSupervisor(nc, { checkpointIntervalMs: 300 });
    await using worker = startEddy(["worker", "--nats", server.url]);
    try {
      await ensureStream(nc, "COUNTER_IN", ["counter.in"]);
      await ensureStream(nc, "COUNTER_OUT", ["counter.out"]);
      const [first] = await deployModule(nc, resolve(ROOT, "test/fixtures/counter.ts"));
      expect(first).toMatchObject({ job: "counter", version: 1, unchanged: false });
      expect(first!.digest).toMatch(/^sha256-[0-9a-f]{64}$/);
      // The same code again is no new version.
      expect((await deployModule(nc, resolve(ROOT, "test/fixtures/counter.ts")))[0]).toMatchObject({ version: 1, unchanged: true });

      await publishAll(nc, ["ann", "bob", "ann"].map((user) => ({ subject: "counter.in", data: JSON.stringify({ user }) })));
      // The worker writes the job's spec once it runs the job; then the end of input can be set.
      for (let i = 0; i < 200; i++) {
        try {
          await requestEndOfInput(nc, "counter");
          break;
        } catch {
          await sleep(100);
        }
      }
      const totals = async () => (await readAll(nc, "COUNTER_OUT")).map((m) => JSON.parse(new TextDecoder().decode(m.data)));
      let out: Array<{ user: string; n: number }> = [];
      for (let i = 0; i < 300 && out.length < 3; i++) {
        out = await totals();
        await sleep(100);
      }
      expect(out.map((t) => `${t.user}:${t.n}`).sort(), worker.output()).toEqual(["ann:1", "ann:2", "bob:1"]);

      await expect(deployModule(nc, resolve(ROOT, "test/fixtures/broken-module.ts"), { job: "counter" })).rejects.toThrow(InvalidModuleError);
      await expect(deployModule(nc, resolve(ROOT, "test/fixtures/counter-incompatible.ts"))).rejects.toThrow(IncompatibleDeploymentError);
      await expect(deployModule(nc, resolve(ROOT, "test/fixtures/counter-incompatible.ts"))).rejects.toThrow(/state "n": kind value -> list/);
      expect((await deployments(nc)).map((d) => [d.job, d.version, d.digest])).toEqual([["counter", 1, first!.digest]]);

      // The CLI says the same, and refuses a bad module with one line and a non-zero exit.
      const ls = execFileSync(process.execPath, [resolve(ROOT, "runtime/cli/main.ts"), "ls", "--nats", server.url], { encoding: "utf8" });
      expect(ls).toMatch(/^job\s+version\s+code/);
      expect(ls).toMatch(/counter\s+1\s+sha256-/);
      let failed: { status: number; stderr: string } | undefined;
      try {
        execFileSync(process.execPath, [resolve(ROOT, "runtime/cli/main.ts"), "deploy", resolve(ROOT, "test/fixtures/broken-module.ts"), "--nats", server.url], { encoding: "utf8", stdio: "pipe" });
      } catch (e) {
        failed = e as { status: number; stderr: string };
      }
      expect(failed?.status).toBe(1);
      expect(failed?.stderr.trim().split("\n").filter((l) => l.startsWith("eddy:"))).toEqual([expect.stringMatching(/^eddy: .*broken-module\.ts fails to load: this module is broken on purpose/)]);

      // eddy status shows the deployed version and who owns each partition.
      const status = JSON.parse(execFileSync(process.execPath, [resolve(ROOT, "runtime/cli/main.ts"), "status", "counter", "--nats", server.url, "--json"], { encoding: "utf8" }));
      expect(status).toMatchObject({ job: "counter", deployedVersion: 1 });
      expect(status.generation).toBeGreaterThanOrEqual(1);
      expect(status.partitions.map((p: { function: string; partition: number }) => `${p.function}/${p.partition}`)).toEqual(["clicks/0", "count/0", "count/1", "out/0"]);
      expect(new Set(status.partitions.map((p: { owner: string }) => p.owner)).size).toBe(1);
      expect(status.partitions[0].owner).toMatch(/-counter$/);
      const table = execFileSync(process.execPath, [resolve(ROOT, "runtime/cli/main.ts"), "status", "counter", "--nats", server.url], { encoding: "utf8" });
      expect(table).toMatch(/^job counter: version 1, generation \d+, last checkpoint/);
      expect(table).toMatch(/^function\s+partition\s+owner\s+lag\s+watermark \(UTC\)\s+watermark lag$/m);

      await undeploy(nc, "counter");
      expect(await deployments(nc)).toEqual([]);
      for (let i = 0; i < 100 && !worker.output().includes("job counter undeployed"); i++) await sleep(100);
      expect(worker.output()).toContain("job counter undeployed");
    } finally {
      await supervisor.stop();
      await nc.close();
    }
  });
});
