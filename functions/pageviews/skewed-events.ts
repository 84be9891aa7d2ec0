/**
 * Skewed page views for the hot-page scenario (issue 16 item 6): one page takes a fixed share of
 * all views (half by default), the others follow Zipf, so one key of a per-page aggregation holds
 * most of the work. Deterministic for a seed; event times advance steadily and arrive out of
 * order by less than the job's watermark bound, so no view is late and every window's final
 * result is exactly what a plain loop over the views computes (skewed-expected.ts).
 */
import { seededRandom, zipfSampler } from "../seeded-random.ts";
import type { PageView } from "./events.ts";

export const HOT_PAGE = "home";
/** Channels and their shares of the views: most views come from the web. */
export const CHANNEL_SHARES = [
  ["web", 0.6],
  ["ios", 0.25],
  ["android", 0.15],
] as const;

function channelOf(x: number): string {
  let acc = 0;
  for (const [channel, share] of CHANNEL_SHARES) if (x < (acc += share)) return channel;
  return CHANNEL_SHARES[CHANNEL_SHARES.length - 1]![0];
}

export interface SkewedViewsOptions {
  readonly seed: number;
  readonly events: number;
  /** Share of views on the hot page (default 0.5). */
  readonly hotShare?: number;
  /** Other pages, Zipf-distributed (default 200). */
  readonly pages?: number;
  /** Users, uniform (default 100 000): the hot page's windows have many distinct users. */
  readonly users?: number;
  /** Event time of the first view (default 2026-01-01T00:00:00Z). */
  readonly startTs?: number;
  /** Event-time step between consecutive views (default 1 ms: 60 000 views a minute). */
  readonly stepMs?: number;
  /** Out-of-orderness, below the job's watermark bound (default 1 000 ms). */
  readonly maxDisorderMs?: number;
  /** Index of the first view: event times continue from there (use another seed for the next part; default 0). */
  readonly from?: number;
}

/** `events` views, the first at `startTs + from × stepMs`. */
export function generateSkewedViews(options: SkewedViewsOptions): PageView[] {
  const hotShare = options.hotShare ?? 0.5;
  if (!(hotShare >= 0 && hotShare <= 1)) throw new RangeError(`hotShare must be from 0 to 1, got ${hotShare}`);
  const random = seededRandom(options.seed);
  const page = zipfSampler(options.pages ?? 200, random);
  const users = options.users ?? 100_000;
  const start = options.startTs ?? Date.UTC(2026, 0, 1);
  const step = options.stepMs ?? 1;
  const disorder = options.maxDisorderMs ?? 1_000;
  const from = options.from ?? 0;
  const out: PageView[] = new Array(options.events);
  for (let i = 0; i < options.events; i++) {
    out[i] = {
      user: `u${Math.floor(random() * users)}`,
      page: random() < hotShare ? HOT_PAGE : `page-${page()}`,
      channel: channelOf(random()),
      ts: start + (from + i) * step - Math.floor(random() * disorder),
    };
  }
  return out;
}
