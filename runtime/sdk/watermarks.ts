/**
 * Watermark strategies for sources, as small constructors over the serialisable specs of runtime/spec/watermarks.ts.
 *
 * A source function sets `watermark:` to one of these; functions downstream combine the
 * watermarks of all their producers (minimum over the ones that are not idle).
 */
import type { WatermarkStrategy } from "../spec/watermarks.ts";

export type { WatermarkStrategy } from "../spec/watermarks.ts";

/**
 * Watermark = highest event time seen minus `maxOutOfOrdernessMs` (Flink's bounded out-of-orderness).
 * @example watermark: boundedOutOfOrderness(3_000)
 */
export function boundedOutOfOrderness(maxOutOfOrdernessMs: number, options: { idleTimeoutMs?: number } = {}): WatermarkStrategy {
  return { kind: "bounded", maxOutOfOrdernessMs, ...options };
}

/**
 * Watermark from a quantile of recent event times, for skewed inputs where a few stragglers would
 * stall a min-watermark and a max-watermark would drop the bulk of the data.
 * @example watermark: percentileWatermark(0.99, { boundMs: 1_000 })
 */
export function percentileWatermark(
  quantile: number,
  options: { boundMs?: number; sampleSize?: number; recomputeEvery?: number; idleTimeoutMs?: number } = {},
): WatermarkStrategy {
  return { kind: "percentile", quantile, ...options };
}

/**
 * Marks a source idle after `idleTimeoutMs` without events, so it stops holding back downstream
 * watermarks.
 * @example watermark: withIdleness(boundedOutOfOrderness(3_000), 10_000)
 */
export function withIdleness(strategy: WatermarkStrategy, idleTimeoutMs: number): WatermarkStrategy {
  if (strategy.kind === "none") return strategy;
  return { ...strategy, idleTimeoutMs };
}
