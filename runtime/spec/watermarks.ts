/**
 * Watermark strategies as plain data: the authoring API (runtime/sdk/watermarks.ts) builds them
 * and the core's generators (runtime/core/watermarks.ts) interpret them. They sit at the bottom
 * layer because a source's function spec carries one.
 */

/**
 * How a source derives its watermark from the event times it reads (plain, serialisable data).
 *
 * - `bounded`: Flink's bounded out-of-orderness, `W = maxTs − maxOutOfOrdernessMs − 1`.
 * - `percentile`: for skewed sources, where a handful of events (or a lagging upstream
 *   partition) trail far behind the bulk. `W` follows the bulk: it is chosen so that a fraction
 *   `quantile` of the recent events lie strictly after it (see `createWatermarkGenerator`).
 * - `none`: no watermark (stays `-Infinity`), e.g. for processing-time-only pipelines.
 *
 * `idleTimeoutMs`: a source that has seen no event for this long (processing time) is idle and
 * stops holding back the watermark of the actors it feeds.
 */
export type WatermarkStrategy =
  | { readonly kind: "bounded"; readonly maxOutOfOrdernessMs: number; readonly idleTimeoutMs?: number }
  | {
      readonly kind: "percentile";
      /** Fraction (0..1] of recent events the watermark must stay behind, e.g. 0.99. */
      readonly quantile: number;
      /** Extra slack subtracted from the quantile (default 0). */
      readonly boundMs?: number;
      /** Number of most recent event times sampled (default 1000). */
      readonly sampleSize?: number;
      /** Recompute the watermark after every this many events (default 100). */
      readonly recomputeEvery?: number;
      readonly idleTimeoutMs?: number;
    }
  | { readonly kind: "none" };
