/**
 * The `process` of a function that passes every record on unchanged (a sink written with
 * `defineSink`). It is one shared function so that operator chaining (actor/chain.ts) can
 * recognise it by identity and hand records straight to what follows, instead of calling a
 * function per record that only calls `emit`.
 */
import type { Context } from "./function.ts";

/** Emits `record` with its own event time. */
export function forwardRecord(ctx: Context<any, any, any>, record: unknown): void {
  ctx.emit(record);
}
