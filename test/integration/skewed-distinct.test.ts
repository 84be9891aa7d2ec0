/**
 * Skew handling on a real nats-server (design note cb): on a stream where one page has half of
 * all views, page views counted with local-global aggregation and distinct users counted with
 * split distinct aggregation (exact, and HyperLogLog) give the final results a plain loop gives,
 * while the hot partition processes far fewer records than the same functions without them; and a
 * worker process killed while partials are in flight changes no result (exactly-once).
 */
import { describe, expect, it } from "vitest";
import { startLocalJob } from "../../runtime/dev/local-job.ts";
import { ensureStream, publishAll, readAll } from "../../runtime/nats/streams.ts";
import { startSupervisor } from "../../runtime/supervisor/supervisor.ts";
import { hllStandardError, type WindowResult } from "../../runtime/sdk/index.ts";
import { BASE, skewedViews, skewPipeline, WINDOW_MS, type View } from "../fixtures/skewed-distinct.ts";
import { connect, natsServer } from "../support/nats-server.ts";
import { startWorkerProcess, type EddyProcess } from "../support/processes.ts";
import { waitFor } from "../support/wait.ts";

/** Views and distinct users per page and window, by a plain loop. */
function plainLoop(input: readonly View[]) {
  const pv = new Map<string, number>();
  const users = new Map<string, Set<string>>();
  for (const v of input) {
    const id = `${v.page}|${Math.floor(v.ts / WINDOW_MS) * WINDOW_MS}`;
    pv.set(id, (pv.get(id) ?? 0) + 1);
    let s = users.get(id);
    if (s === undefined) users.set(id, (s = new Set()));
    s.add(v.user);
  }
  return { pv, uv: new Map([...users].map(([id, s]) => [id, s.size])) };
}

const decoder = new TextDecoder();

/** The final value of every (key, window): the last firing published. */
function finalResults(messages: readonly { data: Uint8Array }[]): Map<string, number> {
  const out = new Map<string, number>();
  for (const m of messages) {
    const r = JSON.parse(decoder.decode(m.data)) as WindowResult<number>;
    out.set(`${r.key}|${r.start}`, r.value);
  }
  return out;
}

/** Every HyperLogLog count within 3 standard errors of the exact one (small sets: within 2). */
function expectWithinHllError(estimates: ReadonlyMap<string, number>, exact: ReadonlyMap<string, number>): void {
  expect([...estimates.keys()].sort()).toEqual([...exact.keys()].sort());
  for (const [id, n] of exact) expect(Math.abs(estimates.get(id)! - n), id).toBeLessThanOrEqual(Math.max(2, 3 * hllStandardError(14) * n));
}

describe("skewed input with local-global and split distinct aggregation", () => {
  it("gives the plain loop's page views and distinct users while the hot partition processes far fewer records", { timeout: 180_000 }, async () => {
    await using server = await natsServer();
    const nc = await connect(server);
    try {
      await ensureStream(nc, "SKEW", ["skew.>"]);
      await ensureStream(nc, "RESULTS", ["results.>"]);
      const events = 8_000;
      const input = skewedViews(7, events);
      await publishAll(
        nc,
        input.map((v, i) => ({ subject: `skew.${i % 2}.view`, data: JSON.stringify(v) })),
      );

      const job = await startLocalJob(nc, skewPipeline({ job: "skew", stream: "SKEW", subject: "skew", plain: true }), { checkpointIntervalMs: 500 });
      await job.endInput();
      await job.finished();
      const stats = job.worker.stats();
      await job.stop();

      const expected = plainLoop(input);
      const read = async (fn: string) => finalResults(await readAll(nc, "RESULTS", `results.skew.${fn}`));
      expect(await read("pv")).toEqual(expected.pv);
      expect(await read("pv-plain")).toEqual(expected.pv);
      expect(await read("uv")).toEqual(expected.uv);
      expect(await read("uv-plain")).toEqual(expected.uv);
      expectWithinHllError(await read("uv-hll"), expected.uv);

      const recordsIn = (fn: string) => stats.filter((s) => s.fn === fn).map((s) => s.recordsIn);
      const total = (fn: string) => recordsIn(fn).reduce((a, b) => a + b, 0);
      const busiest = (fn: string) => Math.max(...recordsIn(fn));
      // Without local aggregation every view is a record, half of them in the hot page's partition.
      expect(total("pv-plain")).toBe(events);
      expect(busiest("pv-plain")).toBeGreaterThanOrEqual(events / 2);
      // With it, a page sends one partial per outgoing batch and window.
      expect(total("pv")).toBeLessThan(events / 4);
      expect(busiest("pv")).toBeLessThan(busiest("pv-plain") / 4);
      // Split distinct spreads the hot page's users over 8 buckets, and so over the partitions.
      const share = (fn: string) => busiest(fn) / total(fn);
      expect(share("uv-plain")).toBeGreaterThanOrEqual(0.5);
      expect(share("uv-split")).toBeLessThan(0.45);
    } finally {
      await nc.close();
    }
  });

  it("publishes every result once and unchanged when the worker is killed while partials are in flight", { timeout: 240_000 }, async () => {
    await using server = await natsServer();
    const nc = await connect(server);
    const supervisor = await startSupervisor(nc, { checkpointIntervalMs: 300, checkpointTimeoutMs: 5000 });
    const workers: EddyProcess[] = [];
    const worker = () => {
      const w = startWorkerProcess("test/fixtures/skewed-distinct.ts", server.url);
      workers.push(w);
      return w;
    };
    try {
      await ensureStream(nc, "SKEWK", ["skewk.>"]);
      await ensureStream(nc, "RESULTS", ["results.>"]);
      const first = skewedViews(11, 4_000);
      const second = skewedViews(12, 4_000, 4_000);
      const publish = (views: readonly View[]) => publishAll(nc, views.map((v, i) => ({ subject: `skewk.${i % 2}.view`, data: JSON.stringify(v) })));
      const messages = (fn: string) => readAll(nc, "RESULTS", `results.skewk.${fn}`);

      let current = worker();
      await publish(first);
      await waitFor("results of the first views", async () => ((await messages("pv")).length > 0 ? true : undefined), { timeoutMs: 90_000 });
      await publish(second.slice(0, 2_000));
      await current.kill();
      current = worker();
      await publish(second.slice(2_000));
      // One view per source partition far ahead moves the watermark past every window of the input.
      await publishAll(nc, [0, 1].map((p) => ({ subject: `skewk.${p}.view`, data: JSON.stringify({ page: "end", user: "end", ts: BASE + 60_000 }) })));

      const expected = plainLoop([...first, ...second]);
      await waitFor("every window's results", async () => ((await messages("pv")).length >= expected.pv.size && (await messages("uv")).length >= expected.uv.size && (await messages("uv-hll")).length >= expected.uv.size ? true : undefined), {
        timeoutMs: 120_000,
      });
      // No input is late, so each window fires once: a result published twice would be a second message.
      for (const fn of ["pv", "uv", "uv-hll"]) expect((await messages(fn)).length, fn).toBe(expected.pv.size);
      expect(finalResults(await messages("pv"))).toEqual(expected.pv);
      expect(finalResults(await messages("uv"))).toEqual(expected.uv);
      expectWithinHllError(finalResults(await messages("uv-hll")), expected.uv);
    } finally {
      for (const w of workers) await w.kill();
      await supervisor.stop();
      await nc.close();
      if (process.env.EDDY_TEST_DEBUG) for (const w of workers) console.log(w.output());
    }
  });
});
