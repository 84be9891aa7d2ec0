/**
 * The fields every SDK operator copies from its author's spec into the `FunctionSpec` it builds.
 *
 * Each operator (windows, CEP, dedup, aggregates, joins, lookups) takes a name, an input, an
 * optional partition count and, when it works in event time, a timestamp selector and a watermark
 * strategy. Copying them by hand in every operator meant repeating the rule that an absent option
 * stays absent (so the runtime's defaults apply, and a spec serializes without `undefined`s).
 */
import type { WatermarkStrategy } from "../spec/watermarks.ts";

/** The name, input and partition count of an operator's spec, absent options left out. */
export function specBase<I>(spec: { readonly name: string; readonly input: I; readonly partitions?: number | undefined }): { name: string; input: I; partitions?: number } {
  return {
    name: spec.name,
    input: spec.input,
    ...(spec.partitions === undefined ? {} : { partitions: spec.partitions }),
  };
}

/** The event-time selectors of an operator's spec, absent ones left out. */
export function eventTimeOf<T>(spec: { readonly timestamp?: T | undefined; readonly watermark?: WatermarkStrategy | undefined }): { timestamp?: T; watermark?: WatermarkStrategy } {
  return {
    ...(spec.timestamp === undefined ? {} : { timestamp: spec.timestamp }),
    ...(spec.watermark === undefined ? {} : { watermark: spec.watermark }),
  };
}
