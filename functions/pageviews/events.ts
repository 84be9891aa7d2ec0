/**
 * Page-view events for the user-behaviour scenario, and a seeded generator of them.
 *
 * The generator is deterministic for a seed: event times advance steadily, arrive out of order by
 * up to `maxDisorderMs`, a small share arrive late enough to update an already fired window, and
 * a few arrive far too late to be counted. It also produces malformed messages (not JSON, missing
 * fields) so that dead-lettering is exercised on every run.
 */

import { seededRandom } from "../seeded-random.ts";

export { seededRandom };

/** One page view as published by the site. */
export interface PageView {
  readonly user: string;
  readonly page: string;
  readonly channel: string;
  /** Event time, epoch ms. */
  readonly ts: number;
}

/** A message as published into the source stream: valid JSON of a page view, or garbage. */
export interface GeneratedMessage {
  readonly payload: string;
  /** The decoded event when the payload is a valid page view. */
  readonly event?: PageView;
  /** Why the payload is malformed, when it is. */
  readonly malformed?: "not-json" | "missing-page" | "missing-ts";
}

export interface GeneratorOptions {
  readonly seed: number;
  readonly events: number;
  /** Event time of the first event (default 2026-01-01T00:00:00Z). */
  readonly startTs?: number;
  /** Event-time step between consecutive events (default 20 ms). */
  readonly stepMs?: number;
  /** Ordinary out-of-orderness (default 3000 ms). */
  readonly maxDisorderMs?: number;
  /** Share of events delayed 5–12 s: late, often still within the allowed lateness (default 0.01). */
  readonly lateShare?: number;
  /** Share of events delayed 25–60 s: later than any allowed lateness (default 0.01). */
  readonly tooLateShare?: number;
  /** Share of malformed messages (default 0.01). */
  readonly malformedShare?: number;
}

export const PAGES = ["/home", "/search", "/product", "/cart", "/checkout"] as const;
export const CHANNELS = ["web", "ios", "android"] as const;


export function generatePageViews(options: GeneratorOptions): GeneratedMessage[] {
  const rnd = seededRandom(options.seed);
  const start = options.startTs ?? Date.UTC(2026, 0, 1);
  const step = options.stepMs ?? 20;
  const disorder = options.maxDisorderMs ?? 3000;
  const lateShare = options.lateShare ?? 0.01;
  const tooLateShare = options.tooLateShare ?? 0.01;
  const malformedShare = options.malformedShare ?? 0.01;
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rnd() * xs.length)]!;
  const out: GeneratedMessage[] = [];
  for (let i = 0; i < options.events; i++) {
    const base = start + i * step;
    const r = rnd();
    let ts: number;
    if (r < tooLateShare) ts = base - 25_000 - Math.floor(rnd() * 35_000);
    else if (r < tooLateShare + lateShare) ts = base - 5_000 - Math.floor(rnd() * 7_000);
    else ts = base - Math.floor(rnd() * disorder);
    // Skewed popularity: low page and user numbers are far more frequent.
    const page = PAGES[Math.floor(rnd() * rnd() * PAGES.length)]!;
    const user = `u${Math.floor(rnd() * rnd() * 400)}`;
    const event: PageView = { user, page, channel: pick(CHANNELS), ts };
    const m = rnd();
    if (m < malformedShare / 3) out.push({ payload: `{"user":"${user}","page":`, malformed: "not-json" });
    else if (m < (2 * malformedShare) / 3) out.push({ payload: JSON.stringify({ user, channel: event.channel, ts }), malformed: "missing-page" });
    else if (m < malformedShare) out.push({ payload: JSON.stringify({ user, page, channel: event.channel }), malformed: "missing-ts" });
    else out.push({ payload: JSON.stringify(event), event });
  }
  return out;
}
