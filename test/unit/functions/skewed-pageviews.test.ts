/**
 * The skewed page-view job (issue 16 item 6) through the SDK harness: its aggregating functions
 * driven as the runtime drives them (records in event-time order with a bounded-out-of-orderness
 * watermark, processing time advancing as records are handled, the split stage's output handed
 * to the summing stage before the watermark that follows it), plain and split. Final results
 * must equal a plain loop — views exactly, distinct users within the sketch's error — early
 * results must come before the window closes, and the upsert bucket must end with the final row.
 */
import { describe, expect, it } from "vitest";
import { testHarness, type TestHarness } from "eddy/testing";
import { partitionOf } from "../../../runtime/core/hash.ts";
import type { PageView } from "../../../functions/pageviews/events.ts";
import { generateSkewedViews, HOT_PAGE } from "../../../functions/pageviews/skewed-events.ts";
import { expectedPageStats, uvTolerance } from "../../../functions/pageviews/skewed-expected.ts";
import { DEFAULT_EARLY_MS, SKEWED_MAX_OUT_OF_ORDERNESS_MS, skewedPageviewsPipeline, statsKey, type BucketStats, type PageStats } from "../../../functions/pageviews/skewed.ts";

const START = Date.UTC(2026, 0, 1);
const STEP_MS = 6;
const EVENTS = 40_000;

function fn(pipeline: ReturnType<typeof skewedPageviewsPipeline>, name: string) {
  const f = pipeline.functions.find((x) => x.name === name);
  if (f === undefined) throw new Error(`no function ${name}`);
  return f;
}

interface Run {
  /** Every result of page-stats, in order, with the processing time it was emitted at. */
  readonly results: { readonly row: PageStats; readonly at: number }[];
  readonly upserted: ReadonlyMap<string, unknown>;
}

/**
 * Drives the job's aggregating stages over `views`: 1 ms of processing time per view, the
 * watermark (highest event time − bound − 1) advanced every 100 views, the split stage's new
 * output forwarded to page-stats with its event time before page-stats sees that watermark.
 */
function drive(split: number, views: readonly PageView[]): Run {
  const pipeline = skewedPageviewsPipeline({ split });
  const first = testHarness(fn(pipeline, split === 0 ? "page-stats" : "page-stats-split") as never, { now: 0 }) as TestHarness<PageView, unknown>;
  const last = split === 0 ? (first as unknown as TestHarness<BucketStats, PageStats>) : (testHarness(fn(pipeline, "page-stats") as never, { now: 0 }) as TestHarness<BucketStats, PageStats>);
  const results: Run["results"] = [];
  let forwarded = 0;
  let collected = 0;
  const pump = () => {
    if (split !== 0) {
      const out = (first as unknown as TestHarness<PageView, BucketStats>).emitted();
      for (; forwarded < out.length; forwarded++) last.send(out[forwarded]!.value, { timestamp: out[forwarded]!.timestamp });
    }
    const out = last.output();
    for (; collected < out.length; collected++) results.push({ row: out[collected]!, at: last.processingTime });
  };
  const advance = (to: { processing?: number; watermark?: number }) => {
    if (to.processing !== undefined) first.advanceProcessingTime(to.processing);
    pump();
    if (to.processing !== undefined && last !== (first as unknown)) last.advanceProcessingTime(to.processing);
    if (to.watermark !== undefined) {
      first.advanceWatermark(to.watermark);
      pump();
      if (last !== (first as unknown)) last.advanceWatermark(to.watermark);
    }
    pump();
  };
  let maxTs = -Infinity;
  views.forEach((v, i) => {
    first.send(v, { timestamp: v.ts });
    maxTs = Math.max(maxTs, v.ts);
    if ((i + 1) % 100 === 0) advance({ processing: i + 1, watermark: maxTs - SKEWED_MAX_OUT_OF_ORDERNESS_MS - 1 });
  });
  advance({ processing: views.length, watermark: Number.MAX_SAFE_INTEGER });
  last.checkpoint();
  return { results, upserted: last.upserted() };
}

const finals = (run: Run) => new Map(run.results.filter((r) => r.row.final).map((r) => [statsKey(r.row), r.row]));

describe("the skewed page-view generator", () => {
  it("puts about half of the views on the hot page and spreads the rest, the same for a seed", () => {
    const views = generateSkewedViews({ seed: 3, events: 20_000 });
    expect(generateSkewedViews({ seed: 3, events: 20_000 })).toEqual(views);
    const hot = views.filter((v) => v.page === HOT_PAGE).length / views.length;
    expect(hot).toBeGreaterThan(0.48);
    expect(hot).toBeLessThan(0.52);
    const others = new Map<string, number>();
    for (const v of views) if (v.page !== HOT_PAGE) others.set(v.page, (others.get(v.page) ?? 0) + 1);
    // Zipf: the first page is the most viewed of the rest, by far more than the tenth.
    const top = [...others].sort((a, b) => b[1] - a[1]);
    expect(top[0]![0]).toBe("page-0");
    expect(others.get("page-0")!).toBeGreaterThan(5 * (others.get("page-9") ?? 0));
    expect(others.size).toBeGreaterThan(100);
  });

  it("stays within the watermark's bound: no view is late", () => {
    const views = generateSkewedViews({ seed: 4, events: 20_000 });
    let maxTs = -Infinity;
    for (const v of views) {
      expect(v.ts).toBeGreaterThan(maxTs - SKEWED_MAX_OUT_OF_ORDERNESS_MS - 1);
      maxTs = Math.max(maxTs, v.ts);
    }
  });
});

describe.each([
  ["plain", 0],
  ["split over 16 buckets", 16],
])("the skewed page-view job, %s", (_name, split) => {
  const views = generateSkewedViews({ seed: 11, events: EVENTS, startTs: START, stepMs: STEP_MS });
  const run = drive(split, views);
  const expected = expectedPageStats(views);

  it("ends each (page, channel, minute) with the plain loop's views and, within the sketch's error, its distinct users", () => {
    const got = finals(run);
    expect([...got.keys()].sort()).toEqual([...expected.keys()].sort());
    for (const [id, e] of expected) {
      const row = got.get(id)!;
      expect(row.pv, id).toBe(e.pv);
      expect(Math.abs(row.uv - e.uv), `${id}: ${row.uv} for ${e.uv}`).toBeLessThanOrEqual(uvTolerance(e.uv));
      expect(row.firing).toBe("on-time");
    }
    // The hot page's windows have thousands of users: the sketch is tested where it estimates.
    expect(Math.max(...[...expected.values()].map((e) => e.uv))).toBeGreaterThan(1_500);
  });

  it("emits early results, marked early, before each busy window's final one, growing towards it", () => {
    const byWindow = new Map<string, { row: PageStats; at: number }[]>();
    for (const r of run.results) byWindow.set(statsKey(r.row), [...(byWindow.get(statsKey(r.row)) ?? []), r]);
    // The hot page's windows of a whole minute (not the few views before the first minute).
    const hot = [...byWindow].filter(([id, rs]) => id.startsWith(`${HOT_PAGE}.`) && rs[0]!.row.windowStart >= START && rs[0]!.row.windowEnd <= START + EVENTS * STEP_MS);
    expect(hot.length).toBeGreaterThanOrEqual(3 * 4);
    for (const [id, rs] of hot) {
      const early = rs.filter((r) => !r.row.final);
      // A minute of event time is 10 s of processing time here: at least one early firing at 5 s.
      expect(early.length, id).toBeGreaterThanOrEqual(1);
      expect(early.every((r) => r.row.firing === "early")).toBe(true);
      expect(rs[rs.length - 1]!.row.final, id).toBe(true);
      expect(rs.filter((r) => r.row.final)).toHaveLength(1);
      const pvs = rs.map((r) => r.row.pv);
      expect(pvs, id).toEqual([...pvs].sort((a, b) => a - b));
      expect(early[0]!.row.pv).toBeLessThan(rs[rs.length - 1]!.row.pv);
    }
    // Early firings follow the processing-time interval: none closer than it for one window (plain), or than half of it (split: both stages fire on it).
    const hotRows = hot[0]![1].filter((r) => !r.row.final).map((r) => r.at);
    for (let i = 1; i < hotRows.length; i++) expect(hotRows[i]! - hotRows[i - 1]!).toBeGreaterThanOrEqual(DEFAULT_EARLY_MS / 2);
  });

  it("leaves the final row of every window in the upsert bucket", () => {
    const rows = new Map([...finals(run)].map(([id, row]) => [id, row as unknown]));
    expect(new Map(run.upserted)).toEqual(rows);
  });
});

describe("split distinct aggregation on the hot page", () => {
  it("spreads the hot page's views over the buckets, so no partition of 8 gets twice its fair share, where the plain job's gets more", () => {
    const views = generateSkewedViews({ seed: 5, events: 20_000 });
    const share = (key: (v: PageView) => string) => {
      const per = new Array<number>(8).fill(0);
      for (const v of views) per[partitionOf(key(v), 8)]!++;
      return Math.max(...per) / views.length;
    };
    // home|web alone has 30 % of the views.
    expect(share((v) => `${v.page}|${v.channel}`)).toBeGreaterThan(2 / 8);
    const pipeline = skewedPageviewsPipeline({ split: 16 });
    const splitKey = fn(pipeline, "page-stats-split").key as (v: PageView) => string;
    expect(share(splitKey)).toBeLessThan(2 / 8);
    expect(new Set(views.filter((v) => v.page === HOT_PAGE).map((v) => splitKey(v).split("/")[0])).size).toBe(16);
  });
});
