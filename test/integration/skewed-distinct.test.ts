/**
 * Skew handling on a real nats-server (design note cb): on a stream where one page has half of
 * all views, page views counted with local-global aggregation and distinct users counted with
 * split distinct aggregation (exact, and HyperLogLog) give the final results a plain loop gives,
 * while the hot partition processes far fewer records than the same functions without them.
 */
import { describe, expect, it } from "vitest";
import { startLocalJob } from "../../runtime/dev/local-job.ts";
import { ensureStream, publishAll, readAll } from "../../runtime/nats/streams.ts";
import { boundedOutOfOrderness, defineFunction, definePipeline, defineSink, fromFunction, fromStream, hllStandardError, tumbling, windowed, windowedDistinct, type WindowResult } from "../../runtime/sdk/index.ts";
import { seededRandom, zipfSampler } from "../../functions/seeded-random.ts";
import { connect, natsServer } from "../support/nats-server.ts";

interface View {
  readonly page: string;
  readonly user: string;
  readonly ts: number;
}

const WINDOW_MS = 1_000;
const BASE = 1_700_000_000_000;
const EVENTS = 8_000;

/** Half the views on "home", the rest Zipf over 30 pages; users Zipf over 3000; out of order by less than the watermark's bound. */
function skewedViews(seed: number): View[] {
  const random = seededRandom(seed);
  const page = zipfSampler(30, random);
  const user = zipfSampler(3_000, random);
  return Array.from({ length: EVENTS }, (_, i) => ({
    page: random() < 0.5 ? "home" : `page-${page()}`,
    user: `user-${user()}`,
    ts: BASE + i * 2 + Math.floor(random() * 500),
  }));
}

const count = {
  create: () => 0,
  add: (n: number) => n + 1,
  merge: (a: number, b: number) => a + b,
  result: (n: number) => n,
};

function skewPipeline() {
  const views = defineFunction<View, View>({
    name: "views",
    input: fromStream("SKEW", { subject: (p) => `skew.${p}.>`, partitions: 2 }),
    timestamp: (v) => v.ts,
    watermark: boundedOutOfOrderness(600),
    process: (ctx, v) => ctx.emit(v),
  });
  const common = { input: fromFunction(views), partitions: 4, key: (v: View) => v.page, window: tumbling(WINDOW_MS) };
  const pv = windowed({ ...common, name: "pv", aggregate: count, localAggregation: true });
  const pvPlain = windowed({ ...common, name: "pv-plain", aggregate: count });
  const uv = windowedDistinct({ ...common, name: "uv", distinct: (v: View) => v.user, split: 8, localAggregation: true });
  const uvPlain = windowedDistinct({ ...common, name: "uv-plain", distinct: (v: View) => v.user });
  const uvHll = windowedDistinct({ ...common, name: "uv-hll", distinct: (v: View) => v.user, approximate: true, split: 4, localAggregation: true });
  const sinks = ["pv", "pv-plain", "uv", "uv-plain", "uv-hll"].map((fn) => defineSink({ name: `${fn}-out`, input: fromFunction(fn), subject: `results.${fn}` }));
  return definePipeline({ name: "skew", functions: [views, pv, pvPlain, ...uv, ...uvPlain, ...uvHll, ...sinks] });
}

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

describe("skewed input with local-global and split distinct aggregation", () => {
  it("gives the plain loop's page views and distinct users while the hot partition processes far fewer records", { timeout: 180_000 }, async () => {
    await using server = await natsServer();
    const nc = await connect(server);
    try {
      await ensureStream(nc, "SKEW", ["skew.>"]);
      await ensureStream(nc, "RESULTS", ["results.>"]);
      const input = skewedViews(7);
      await publishAll(
        nc,
        input.map((v, i) => ({ subject: `skew.${i % 2}.view`, data: JSON.stringify(v) })),
      );

      const job = await startLocalJob(nc, skewPipeline(), { checkpointIntervalMs: 500 });
      await job.endInput();
      await job.finished();
      const stats = job.worker.stats();
      await job.stop();

      const expected = plainLoop(input);
      const read = async (fn: string) => finalResults(await readAll(nc, "RESULTS", `results.${fn}`));
      expect(await read("pv")).toEqual(expected.pv);
      expect(await read("pv-plain")).toEqual(expected.pv);
      expect(await read("uv")).toEqual(expected.uv);
      expect(await read("uv-plain")).toEqual(expected.uv);
      const hll = await read("uv-hll");
      expect([...hll.keys()].sort()).toEqual([...expected.uv.keys()].sort());
      for (const [id, n] of expected.uv) {
        // Small sets are near exact; the sum of bucket estimates errs less than one sketch would.
        expect(Math.abs(hll.get(id)! - n), id).toBeLessThanOrEqual(Math.max(2, 3 * hllStandardError(14) * n));
      }

      const recordsIn = (fn: string) => stats.filter((s) => s.fn === fn).map((s) => s.recordsIn);
      const total = (fn: string) => recordsIn(fn).reduce((a, b) => a + b, 0);
      const busiest = (fn: string) => Math.max(...recordsIn(fn));
      // Without local aggregation every view is a record, half of them in the hot page's partition.
      expect(total("pv-plain")).toBe(EVENTS);
      expect(busiest("pv-plain")).toBeGreaterThanOrEqual(EVENTS / 2);
      // With it, a page sends one partial per outgoing batch and window.
      expect(total("pv")).toBeLessThan(EVENTS / 4);
      expect(busiest("pv")).toBeLessThan(busiest("pv-plain") / 4);
      // Split distinct spreads the hot page's users over 8 buckets, and so over the partitions.
      const share = (fn: string) => busiest(fn) / total(fn);
      expect(share("uv-plain")).toBeGreaterThanOrEqual(0.5);
      expect(share("uv-split")).toBeLessThan(0.45);
    } finally {
      await nc.close();
    }
  });
});
