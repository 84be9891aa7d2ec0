/**
 * The real-time user-behaviour pipeline: page views and distinct users per (page, channel) in
 * 10-second tumbling event-time windows, with allowed lateness and a side output for events that
 * come later than that.
 *
 *   PAGEVIEWS stream ──> pageviews (parse, validate, event time, watermark)
 *                    ──> views-per-page (keyed by page|channel, tumbling 10 s, lateness 5 s)
 *                    ├─> window-results (sink: results.pageviews.windows)
 *                    └─> late-events    (sink: results.pageviews.late, from the "late" side output)
 */
import { boundedOutOfOrderness, defineFunction, definePipeline, defineSink, fromFunction, fromStream, tumbling, windowed } from "../../runtime/sdk/index.ts";
import type { PageView } from "./events.ts";

export const WINDOW_MS = 10_000;
export const ALLOWED_LATENESS_MS = 5_000;
export const MAX_OUT_OF_ORDERNESS_MS = 3_000;

/** A fired window: views and distinct users of one (page, channel). */
export interface PageWindow {
  readonly page: string;
  readonly channel: string;
  readonly windowStart: number;
  readonly windowEnd: number;
  readonly views: number;
  readonly users: number;
  /** "on-time" for the first firing, "late" for updates caused by late-but-allowed events. */
  readonly firing: "early" | "on-time" | "late";
}

/** Accumulator: a view count and the set of users (as an object, so it is plain msgpack). */
interface Views {
  views: number;
  users: Record<string, 1>;
}

/** A record cannot be used as a page view; it is dead-lettered with this message. */
export class MalformedPageViewError extends Error {
  override readonly name = "MalformedPageViewError";
}

export interface PageviewsPipelineOptions {
  readonly job?: string;
  readonly sourceStream?: string;
  readonly sourceSubject?: string;
  readonly resultsSubject?: string;
  readonly lateSubject?: string;
  readonly partitions?: number;
}

export function pageviewsPipeline(options: PageviewsPipelineOptions = {}) {
  const parse = defineFunction<PageView, PageView>({
    name: "pageviews",
    input: fromStream(options.sourceStream ?? "PAGEVIEWS", { subject: options.sourceSubject ?? "pageviews.>" }),
    timestamp: (e) => e.ts,
    watermark: boundedOutOfOrderness(MAX_OUT_OF_ORDERNESS_MS),
    process(ctx, e) {
      for (const field of ["user", "page", "channel"] as const) {
        if (typeof e[field] !== "string" || e[field].length === 0) throw new MalformedPageViewError(`missing field "${field}"`);
      }
      ctx.emit({ user: e.user, page: e.page, channel: e.channel, ts: e.ts });
    },
  });

  const counts = windowed({
    name: "views-per-page",
    input: fromFunction(parse),
    partitions: options.partitions ?? 4,
    key: (v: PageView) => `${v.page}|${v.channel}`,
    window: tumbling(WINDOW_MS),
    allowedLatenessMs: ALLOWED_LATENESS_MS,
    lateOutput: "late",
    aggregate: {
      create: (): Views => ({ views: 0, users: {} }),
      add: (acc: Views, v: PageView) => {
        acc.views++;
        acc.users[v.user] = 1;
        return acc;
      },
      merge: (a: Views, b: Views) => ({ views: a.views + b.views, users: { ...a.users, ...b.users } }),
      result: (acc: Views) => ({ views: acc.views, users: Object.keys(acc.users).length }),
    },
    output: (key, w, r, firing): PageWindow => {
      const [page, channel] = key.split("|") as [string, string];
      return { page, channel, windowStart: w.start, windowEnd: w.end, views: r.views, users: r.users, firing };
    },
  });

  const results = defineSink<PageWindow>({
    name: "window-results",
    input: fromFunction(counts),
    subject: options.resultsSubject ?? "results.pageviews.windows",
  });

  const late = defineSink<PageView>({
    name: "late-events",
    input: fromFunction(counts, "late"),
    subject: options.lateSubject ?? "results.pageviews.late",
  });

  return definePipeline({ name: options.job ?? "pageviews", functions: [parse, counts, results, late] });
}

export default pageviewsPipeline();
