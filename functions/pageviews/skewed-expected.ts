/**
 * The skewed job's final results computed the plain way, to check it against: one loop over the
 * views, views counted and users collected in a Set per (page, channel, minute). No view of the
 * generator is late (skewed-events.ts), so every view counts and each window's final result is
 * its whole contents. Distinct users are exact here; the job's HyperLogLog estimate must be within
 * `uvTolerance` of them.
 */
import { hllStandardError } from "../../runtime/sdk/index.ts";
import type { PageView } from "./events.ts";
import { SKEWED_WINDOW_MS, USERS_PRECISION } from "./skewed.ts";

/** Final views and exact distinct users by `<page>.<channel>.<window start>` (the job's KV key). */
export function expectedPageStats(views: Iterable<PageView>): Map<string, { pv: number; uv: number }> {
  const pv = new Map<string, number>();
  const users = new Map<string, Set<string>>();
  for (const v of views) {
    const id = `${v.page}.${v.channel}.${v.ts - (((v.ts % SKEWED_WINDOW_MS) + SKEWED_WINDOW_MS) % SKEWED_WINDOW_MS)}`;
    pv.set(id, (pv.get(id) ?? 0) + 1);
    let s = users.get(id);
    if (s === undefined) users.set(id, (s = new Set()));
    s.add(v.user);
  }
  const out = new Map<string, { pv: number; uv: number }>();
  for (const [id, n] of pv) out.set(id, { pv: n, uv: users.get(id)!.size });
  return out;
}

/**
 * How far an estimate of `exact` distinct users may be off: 4 relative standard errors of the
 * sketch (0.81 % each at precision 14), at least 4. A small set is counted by its non-empty
 * registers, so two users sharing a register count once: with hundreds of windows, a few of
 * some hundred users each lose 2 or 3 that way (118 users counted as 115 in the unit test), more
 * than 3 standard errors of their count. A split's estimate is a sum of the buckets' estimates,
 * whose relative error is no larger (design note cb).
 */
export function uvTolerance(exact: number): number {
  return Math.max(4, 4 * hllStandardError(USERS_PRECISION) * exact);
}
