/**
 * The job of `npm run bench -- skew`: the skewed page-view job (functions/pageviews/skewed.ts)
 * with its aggregating functions on `SKEW_BENCH_PARTITIONS` partitions (default 8), split over
 * `SKEW_BENCH_SPLIT` user buckets (0: no split), with local-global aggregation when
 * `SKEW_BENCH_LOCAL` is 1. The benchmark deploys it and runs its `eddy worker`
 * processes with both set, so deploy and workers build the same topology.
 */
import { skewedPageviewsPipeline } from "../../functions/pageviews/skewed.ts";

function envInt(name: string, fallback: number, max: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === "") return fallback;
  const n = Number(raw);
  if (!Number.isSafeInteger(n) || n < 0 || n > max) throw new RangeError(`${name} must be a whole number from 0 to ${max}, got ${JSON.stringify(raw)}`);
  return n;
}

export default skewedPageviewsPipeline({
  split: envInt("SKEW_BENCH_SPLIT", 16, 4096),
  localAggregation: envInt("SKEW_BENCH_LOCAL", 0, 1) === 1,
  partitions: Math.max(1, envInt("SKEW_BENCH_PARTITIONS", 8, 4096)),
});
