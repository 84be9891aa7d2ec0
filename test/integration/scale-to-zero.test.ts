/**
 * Scale to zero, end to end as far as KEDA's inputs go: a real nats-server, a supervisor process
 * serving `/scaling`, generic worker processes, and the ScaledObject `eddy k8s render` produces
 * (with `--workers-min 0`), whose metrics-api trigger is evaluated the way KEDA does against what
 * `/scaling` answers:
 *
 * - a job deployed while no worker runs counts (from its deployment record), so input wakes one;
 * - once the job has processed everything it is idle: lag 0 in `/scaling`, `/metrics` and
 *   `eddy status`, and KEDA's activation rule says inactive, i.e. zero workers;
 * - new input makes the lag positive and the trigger active again;
 * - an undeployed job no longer counts.
 */
import { describe, expect, it } from "vitest";
import { spawnSync } from "node:child_process";
import { resolve } from "node:path";
import { renderManifests } from "../../runtime/cli/k8s-render.ts";
import { deployModule, undeploy } from "../../runtime/deploy/deploy.ts";
import { freePort } from "../../runtime/nats/local-server.ts";
import { ensureStream, publishAll, readAll } from "../../runtime/nats/streams.ts";
import { connect, natsServer } from "../support/nats-server.ts";
import { startEddy, type EddyProcess } from "../support/processes.ts";

const ROOT = resolve(import.meta.dirname, "../..");
const CLI = resolve(ROOT, "runtime/cli/main.mjs");
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface Scaling {
  readonly lag: number;
  readonly jobs: ReadonlyArray<{ readonly job: string; readonly lag: number }>;
}

/**
 * What KEDA decides from one reading of a ScaledObject's metrics-api trigger: the scaler is
 * active when the value is above `activationTargetValue`; inactive with `minReplicaCount` 0
 * means zero workers (after the cooldown), active means the HPA's ceil(value / targetValue)
 * (AverageValue), at least one, within the bounds.
 */
function kedaDecision(scaledObject: any, reading: Record<string, unknown>): { active: boolean; replicas: number } {
  const trigger = scaledObject.spec.triggers.find((t: any) => t.type === "metrics-api");
  const value = Number(reading[trigger.metadata.valueLocation]);
  const active = value > Number(trigger.metadata.activationTargetValue);
  const { minReplicaCount: min, maxReplicaCount: max } = scaledObject.spec;
  if (!active) return { active, replicas: min };
  return { active, replicas: Math.min(max, Math.max(min, 1, Math.ceil(value / Number(trigger.metadata.targetValue)))) };
}

describe("scale to zero", () => {
  it("idle jobs report lag 0, which deactivates KEDA's trigger; input, also for a job no worker ran yet, activates it", async () => {
    await using server = await natsServer();
    const nc = await connect(server);
    const port = await freePort();
    await using supervisor = startEddy(["supervisor", "--nats", server.url, "--checkpoint-interval", "300", "--metrics-port", String(port)]);
    const workers: EddyProcess[] = [];
    const scaledObject = renderManifests({ workersMin: 0, workersMax: 5, lagTarget: 100 }).find((o) => o.kind === "ScaledObject");
    expect(scaledObject).toBeDefined();
    const scaling = async (): Promise<Scaling> => {
      for (let i = 0; ; i++) {
        try {
          return (await (await fetch(`http://127.0.0.1:${port}/scaling`)).json()) as Scaling;
        } catch (e) {
          if (i > 100) throw e;
          await sleep(100);
        }
      }
    };
    const waitScaling = async (what: string, ok: (s: Scaling) => boolean): Promise<Scaling> => {
      let last: Scaling | undefined;
      for (let i = 0; i < 400; i++) {
        last = await scaling();
        if (ok(last)) return last;
        await sleep(100);
      }
      throw new Error(`timed out waiting for ${what}: /scaling says ${JSON.stringify(last)}\n${supervisor.output()}\n${workers.map((w) => w.output()).join("\n")}`);
    };
    const clicks = (users: string[]) => publishAll(nc, users.map((user) => ({ subject: "counter.in", data: JSON.stringify({ user }) })));
    try {
      await ensureStream(nc, "COUNTER_IN", ["counter.in"]);
      await ensureStream(nc, "COUNTER_OUT", ["counter.out"]);

      // Deployed while no worker runs: its backlog counts, and the trigger wakes a worker.
      await deployModule(nc, resolve(ROOT, "test/fixtures/counter.ts"));
      await clicks(["ann", "bob", "ann", "cy", "bob"]);
      const waking = await waitScaling("the deployed job's backlog", (s) => s.jobs.some((j) => j.job === "counter" && j.lag === 5));
      expect(kedaDecision(scaledObject, waking as unknown as Record<string, unknown>)).toEqual({ active: true, replicas: 1 });

      // A worker runs it to the end of its input: idle, lag 0 everywhere, trigger inactive.
      workers.push(startEddy(["worker", "--nats", server.url]));
      for (let i = 0; i < 300 && (await readAll(nc, "COUNTER_OUT").catch(() => [])).length < 5; i++) await sleep(100);
      expect((await readAll(nc, "COUNTER_OUT")).length, workers[0]!.output()).toBe(5);
      const idle = await waitScaling("lag 0 once idle", (s) => s.jobs.some((j) => j.job === "counter") && s.lag === 0);
      expect(idle.jobs).toEqual([{ job: "counter", lag: 0, generation: expect.any(Number), failed: false }]);
      expect(kedaDecision(scaledObject, idle as unknown as Record<string, unknown>)).toEqual({ active: false, replicas: 0 });
      const metrics = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
      expect(metrics).toMatch(/^eddy_job_lag_messages\{job="counter"\} 0$/m);
      const status = spawnSync(process.execPath, [CLI, "status", "counter", "--json", "--nats", server.url], { encoding: "utf8" });
      expect(status.status, status.stderr).toBe(0);
      const partitions = (JSON.parse(status.stdout) as { partitions: Array<{ lag: number }> }).partitions;
      expect(partitions.length).toBe(4);
      expect(partitions.map((p) => p.lag)).toEqual([0, 0, 0, 0]);

      // Scaled to zero (the worker is gone), input arrives: the lag rises and the trigger is active.
      await workers[0]!.kill();
      await clicks(["dee", "ann", "eve"]);
      const woken = await waitScaling("the new input counted", (s) => s.lag >= 3);
      expect(kedaDecision(scaledObject, woken as unknown as Record<string, unknown>)).toEqual({ active: true, replicas: 1 });

      // An undeployed job stops counting.
      await undeploy(nc, "counter");
      await waitScaling("the undeployed job gone", (s) => !s.jobs.some((j) => j.job === "counter") && s.lag === 0);
    } finally {
      for (const w of workers) await w.kill();
      await nc.close();
    }
  }, 120_000);
});
