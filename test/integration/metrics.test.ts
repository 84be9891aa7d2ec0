/**
 * Workers and supervisors serve Prometheus metrics and a health check; the supervisor also
 * serves the lag figure KEDA's metrics-api trigger scales workers on.
 */
import { describe, expect, it } from "vitest";
import { resolve } from "node:path";
import { freePort } from "../../runtime/nats/local-server.ts";
import { requestEndOfInput } from "../../runtime/nats/control.ts";
import { ensureStream, publishAll, readAll } from "../../runtime/nats/streams.ts";
import { connect, natsServer } from "../support/nats-server.ts";
import { startEddy } from "../support/processes.ts";
import { waitFor } from "../support/wait.ts";

const ROOT = resolve(import.meta.dirname, "../..");

/** GET, asked again while the server is not listening yet. */
function get(url: string): Promise<{ status: number; text: string }> {
  return waitFor(url, async () => {
    const r = await fetch(url);
    return { status: r.status, text: await r.text() };
  }, { timeoutMs: 60_000, retryErrors: true });
}

describe("metrics", () => {
  it("reports records, lag, watermarks and checkpoints, and the scaling lag", async () => {
    await using server = await natsServer();
    const nc = await connect(server);
    const [workerPort, supervisorPort] = [await freePort(), await freePort()];
    await using supervisor = startEddy(["supervisor", "--nats", server.url, "--checkpoint-interval", "300", "--metrics-port", String(supervisorPort)]);
    await using worker = startEddy(["worker", "--pipeline", resolve(ROOT, "test/fixtures/counter.ts"), "--nats", server.url, "--metrics-port", String(workerPort)]);
    try {
      await ensureStream(nc, "COUNTER_IN", ["counter.in"]);
      await ensureStream(nc, "COUNTER_OUT", ["counter.out"]);
      expect((await get(`http://127.0.0.1:${workerPort}/healthz`)).status).toBe(200);
      expect((await get(`http://127.0.0.1:${supervisorPort}/healthz`)).status).toBe(200);

      await publishAll(nc, Array.from({ length: 50 }, (_, i) => ({ subject: "counter.in", data: JSON.stringify({ user: `u${i % 5}` }) })));
      await waitFor("the 50 counts", async () => (await readAll(nc, "COUNTER_OUT")).length === 50, { timeoutMs: 20_000, logs: worker.output, retryErrors: true });
      await requestEndOfInput(nc, "counter");
      const metrics = (await get(`http://127.0.0.1:${workerPort}/metrics`)).text;
      expect(metrics).toContain("# TYPE eddy_records_in_total counter");
      const inCount = [...metrics.matchAll(/^eddy_records_in_total\{job="counter",function="count",partition="\d"\} (\d+)$/gm)].reduce((n, m) => n + Number(m[1]), 0);
      expect(inCount, worker.output()).toBe(50);
      expect(metrics).toMatch(/^eddy_input_lag_messages\{job="counter",function="clicks",partition="0"\} 0$/m);
      expect(metrics).toMatch(/^eddy_checkpoint_applied\{job="counter",function="out",partition="0"\} [1-9]\d*$/m);
      expect(metrics).toMatch(/^eddy_materialized_checkpoints_total\{job="counter",function="out",partition="0"\} [1-9]\d*$/m);
      expect(metrics).toMatch(/^eddy_materialization_lag_checkpoints\{job="counter",function="out",partition="0"\} \d+$/m);
      expect(metrics).toMatch(/^eddy_materialization_lag_keys\{job="counter",function="count",partition="0"\} \d+$/m);
      expect(metrics).toMatch(/^eddy_materialization_backpressure\{job="counter",function="count",partition="0"\} 0$/m);
      // Where the actor's time went: once the actor is a second old, the last second adds up to a
      // second (each of the three rounded); handling 50 records took some of it.
      const sample = (text: string, name: string) => Number(text.match(new RegExp(`^eddy_${name}\\{job="counter",function="clicks",partition="0"\\} ([0-9.e+-]+)$`, "m"))?.[1]);
      const lastSecond = (text: string) => ["busy", "backpressured", "idle"].map((a) => sample(text, `${a}_time_ms_per_second`));
      expect(lastSecond(metrics).every((x) => Number.isInteger(x) && x >= 0), metrics).toBe(true);
      const aged = await waitFor("a whole second accounted", async () => {
        const text = (await get(`http://127.0.0.1:${workerPort}/metrics`)).text;
        return lastSecond(text).reduce((a, b) => a + b, 0) >= 998 && text;
      });
      expect(lastSecond(aged).reduce((a, b) => a + b, 0)).toBeLessThanOrEqual(1002);
      expect(sample(aged, "busy_time_seconds_total")).toBeGreaterThan(0);
      expect(sample(aged, "idle_time_seconds_total")).toBeGreaterThan(0);

      const scaling = await waitFor("the job's lag on /scaling to reach 0", async () => {
        const s = JSON.parse((await get(`http://127.0.0.1:${supervisorPort}/scaling`)).text) as { lag: number; jobs: Array<{ job: string; lag: number }> };
        return s.jobs.some((j) => j.job === "counter") && s.lag === 0 && s;
      }, { timeoutMs: 30_000, logs: supervisor.output });
      // Everything is processed and committed: no record waits. The barriers and watermark
      // updates left in the internal streams after the purge are not records, so the lag is 0.
      expect(scaling.jobs.map((j) => j.job), supervisor.output()).toEqual(["counter"]);
      expect(scaling.lag).toBe(0);
      const sup = (await get(`http://127.0.0.1:${supervisorPort}/metrics`)).text;
      expect(sup).toMatch(/^eddy_job_lag_messages\{job="counter"\} 0$/m);
      expect(sup).toMatch(/^eddy_checkpoint_age_seconds\{job="counter"\} \d/m);
      expect(sup).toMatch(/^eddy_checkpoint_duration_seconds\{job="counter"\} \d/m);
      expect(sup).toMatch(/^eddy_supervisor_leader\{supervisor="[^"]+"\} 1$/m);
    } finally {
      await nc.close();
    }
  });
});
