/**
 * The page-view job on skewed input (issue 16 item 6): page views (exact) and distinct users
 * (HyperLogLog) per (page, channel, minute), with early results every few seconds of processing
 * time and the final result when the window closes, kept in a KV bucket a dashboard reads.
 *
 * When one page has half of all views, a plain keyed aggregation puts half the work on one
 * partition. Two fixes (design note cb), each optional: local-global aggregation
 * (`localAggregation`: the actors of `views` fold a batch's views per key and minute into one
 * partial, so the hot key costs the aggregating function a record per batch, not per view), and
 * split distinct aggregation: `page-stats-split` counts views and users per (user bucket, page,
 * channel) — hash(user) mod `split` — and `page-stats` adds the latest counts of a window's
 * buckets. Every user lands in one bucket, so the sum of the buckets' distinct counts is the
 * window's distinct count and the sum of their views its views (design note cg).
 *
 *   SKEWED_PAGEVIEWS ──> views (validate; event time, watermark 2 s)
 *     plain:  ──> page-stats (page|channel, 1 min, early every earlyMs; partials with localAggregation)
 *     split:  ──> page-stats-split (bucket/page|channel) ──> page-stats (page|channel: sums)
 *   page-stats ──> upsert into KV bucket PAGE_STATS (<page>.<channel>.<window start>)
 *              └─> page-stats-out (sink: results.skewed-pageviews)
 *
 * The default export uses both (16 buckets); skewed-plain.ts neither (same job name, so deploying
 * one over the other swaps them: an incompatible upgrade, from empty state).
 */
import {
  approxCountDistinct,
  boundedOutOfOrderness,
  defineFunction,
  definePipeline,
  defineSink,
  distinctBucket,
  earlyFirings,
  fromFunction,
  fromStream,
  tumbling,
  windowed,
  windowParameters,
  type AggregateFunction,
  type Firing,
  type HllSketch,
  type TimeWindow,
} from "../../runtime/sdk/index.ts";
import { MalformedPageViewError } from "./pipeline.ts";
import type { PageView } from "./events.ts";

export const SKEWED_WINDOW_MS = 60_000;
export const SKEWED_MAX_OUT_OF_ORDERNESS_MS = 2_000;
/** Early results every 5 s of processing time unless the live parameter `earlyMs` says otherwise. */
export const DEFAULT_EARLY_MS = 5_000;
/** HyperLogLog precision of the distinct users: 2^14 registers, relative standard error ≈ 0.81 %. */
export const USERS_PRECISION = 14;
export const DEFAULT_SPLIT = 16;

/** Views and distinct users of one (page, channel) in one minute, as published and upserted. */
export interface PageStats {
  readonly page: string;
  readonly channel: string;
  readonly windowStart: number;
  readonly windowEnd: number;
  /** Views, exact. */
  readonly pv: number;
  /** Distinct users, HyperLogLog estimate. */
  readonly uv: number;
  /** `"early"` while the window is open (more to come), `"on-time"` for the final result. */
  readonly firing: Firing;
  /** True for the final result of the window (`firing` is not `"early"`). */
  readonly final: boolean;
}

/** What `page-stats-split` emits per (bucket, page|channel, window). */
export interface BucketStats {
  /** `page|channel`. */
  readonly key: string;
  readonly bucket: number;
  readonly pv: number;
  readonly uv: number;
}

interface PvUv {
  pv: number;
  users: HllSketch;
}

const users = approxCountDistinct((v: PageView) => v.user, { precision: USERS_PRECISION });

/** Views and a sketch of the users, together: one state entry per window. */
const pvUv: AggregateFunction<PageView, PvUv, { pv: number; uv: number }> = {
  create: () => ({ pv: 0, users: users.create() }),
  add: (acc, v) => {
    acc.pv++;
    acc.users = users.add(acc.users, v);
    return acc;
  },
  merge: (a, b) => ({ pv: a.pv + b.pv, users: users.merge!(a.users, b.users) }),
  result: (acc) => ({ pv: acc.pv, uv: users.result(acc.users) }),
};

/** Each firing of a bucket carries its whole counts so far: keep the latest per bucket, add them up. */
const bucketSums: AggregateFunction<BucketStats, Record<string, [number, number]>, { pv: number; uv: number }> = {
  create: () => ({}),
  add: (acc, c) => {
    acc[String(c.bucket)] = [c.pv, c.uv];
    return acc;
  },
  merge: (a, b) => ({ ...a, ...b }),
  result: (acc) => {
    let pv = 0;
    let uv = 0;
    for (const [p, u] of Object.values(acc)) {
      pv += p;
      uv += u;
    }
    return { pv, uv };
  },
};

const stats = (key: string, w: TimeWindow, r: { pv: number; uv: number }, firing: Firing): PageStats => {
  const bar = key.indexOf("|");
  return { page: key.slice(0, bar), channel: key.slice(bar + 1), windowStart: w.start, windowEnd: w.end, pv: r.pv, uv: r.uv, firing, final: firing !== "early" };
};

/** KV key of a window's row: `<page>.<channel>.<window start>` (a watch on `home.>` sees the hot page). */
export const statsKey = (r: Pick<PageStats, "page" | "channel" | "windowStart">): string => `${r.page}.${r.channel}.${r.windowStart}`;

export interface SkewedPageviewsOptions {
  readonly job?: string;
  /** Source stream (default SKEWED_PAGEVIEWS), subjects `<subject>.<partition>`. */
  readonly stream?: string;
  readonly subject?: string;
  /** Source partitions (default 2): the producer's `partitions`. */
  readonly sourcePartitions?: number;
  /** Partitions of the aggregating functions (default 4). */
  readonly partitions?: number;
  /** User buckets of the split (default 16); 0: no split (one aggregating function). */
  readonly split?: number;
  /** Local-global aggregation into the first aggregating function (default true). */
  readonly localAggregation?: boolean;
  /** Stream of the live parameters (subjects `<paramsSubject>.<name>`). */
  readonly paramsStream?: string;
  readonly paramsSubject?: string;
  /** KV bucket the results are upserted into (default PAGE_STATS). */
  readonly bucket?: string;
  /** Subject of the results (default results.skewed-pageviews). */
  readonly resultsSubject?: string;
}

export function skewedPageviewsPipeline(options: SkewedPageviewsOptions = {}) {
  const job = options.job ?? "skewed-pageviews";
  const subject = options.subject ?? "skewed-pageviews";
  const partitions = options.partitions ?? 4;
  const split = options.split ?? DEFAULT_SPLIT;
  if (!Number.isSafeInteger(split) || split < 0 || split > 4096) throw new RangeError(`split must be a whole number from 0 to 4096, got ${split}`);

  const views = defineFunction<PageView, PageView>({
    name: "views",
    input: fromStream(options.stream ?? "SKEWED_PAGEVIEWS", { subject: (p) => `${subject}.${p}`, partitions: options.sourcePartitions ?? 2, format: "json-lines" }),
    timestamp: (v) => v.ts,
    watermark: boundedOutOfOrderness(SKEWED_MAX_OUT_OF_ORDERNESS_MS),
    process(ctx, v) {
      for (const field of ["user", "page", "channel"] as const) {
        if (typeof v[field] !== "string" || v[field].length === 0) throw new MalformedPageViewError(`missing field "${field}"`);
      }
      ctx.emit({ user: v.user, page: v.page, channel: v.channel, ts: v.ts });
    },
  });

  // One parameters source feeds both stages: `eddy params set <job> page-stats earlyMs <ms>`.
  const params = windowParameters("page-stats", fromStream(options.paramsStream ?? "SKEWED_PAGEVIEWS_PARAMS", { subject: `${options.paramsSubject ?? "skewed-pageviews-params"}.>` }));
  const trigger = earlyFirings({ every: { parameter: () => ["earlyMs"], default: DEFAULT_EARLY_MS } });
  const common = { parameters: fromFunction(params), partitions, window: tumbling(SKEWED_WINDOW_MS), trigger, lateRecords: "drop" as const };
  // earlyFirings decides by time alone, so the first stage may take partials (note cg).
  const local = { localAggregation: options.localAggregation ?? true };

  const staged =
    split === 0
      ? [windowed({ ...common, ...local, name: "page-stats", input: fromFunction(views), key: (v: PageView) => `${v.page}|${v.channel}`, aggregate: pvUv, output: stats })]
      : [
          windowed({
            ...common,
            ...local,
            name: "page-stats-split",
            input: fromFunction(views),
            // The bucket leads and has no "/", so the first "/" ends it.
            key: (v: PageView) => `${distinctBucket(v.user, split)}/${v.page}|${v.channel}`,
            aggregate: pvUv,
            output: (key, _w, r): BucketStats => {
              const slash = key.indexOf("/");
              return { key: key.slice(slash + 1), bucket: Number(key.slice(0, slash)), pv: r.pv, uv: r.uv };
            },
          }),
          windowed({ ...common, name: "page-stats", input: fromFunction("page-stats-split"), key: (c: BucketStats) => c.key, aggregate: bucketSums, output: stats }),
        ];
  const final = staged[staged.length - 1]!;
  const pageStats = { ...final, upsert: { bucket: options.bucket ?? "PAGE_STATS", key: statsKey } };

  const out = defineSink<PageStats>({ name: "page-stats-out", input: fromFunction(pageStats), subject: options.resultsSubject ?? `results.${job}` });
  return definePipeline({ name: job, functions: [views, params, ...staged.slice(0, -1), pageStats, out] });
}

export default skewedPageviewsPipeline();
