/**
 * The authoring API of an eddy stream function.
 *
 * A function is written as if it were stateless: `process(ctx, record)` is called once per
 * record and `onTimer(ctx, timer)` once per due timer, and everything it needs to remember goes
 * through `ctx.state`. The runtime runs one actor per (function, partition); the key selector
 * decides the partition of every record, so all records of one key meet the same state. Nothing
 * here depends on NATS or Effect: the same definition runs in the test harness and in workers.
 * The types of a spec live in runtime/spec/function.ts (shared with the core, which runs them);
 * this module adds the constructors and re-exports the types.
 */
import type { BroadcastStateDeclarations, FunctionInput, FunctionSpec, Input, PipelineSpec, StreamInput } from "../spec/function.ts";
import type { StateDeclarations } from "../spec/state.ts";

export type {
  BroadcastContext,
  BroadcastHandles,
  BroadcastLimits,
  BroadcastStateDeclarations,
  ReadOnlyBroadcastHandles,
  ReadOnlyBroadcastState,
  Context,
  FunctionInput,
  FunctionSpec,
  Input,
  InputFormat,
  PipelineSpec,
  RowOf,
  SinkSpec,
  StreamInput,
  TimerInfo,
  TimerService,
  UpsertSpec,
  WindowingInfo,
} from "../spec/function.ts";
import { specBase } from "./spec-base.ts";
import { forwardRecord } from "../spec/forward.ts";

/**
 * Reads a user stream.
 * @example input: fromStream("PAGEVIEWS", { subject: "pageviews.>" })
 */
export function fromStream(stream: string, options: Omit<StreamInput, "kind" | "stream"> = {}): StreamInput {
  return { kind: "stream", stream, ...options };
}

/**
 * Reads the main output (or a named side output) of another function.
 * @example input: fromFunction("views-per-page", "late")
 */
export function fromFunction(fn: string | { readonly name: string }, output?: string, options: { readonly broadcast?: boolean } = {}): FunctionInput {
  const name = typeof fn === "string" ? fn : fn.name;
  return { kind: "function", fn: name, ...(output === undefined ? {} : { output }), ...(options.broadcast === true ? { broadcast: true } : {}) };
}

/**
 * Marks a function input as broadcast: every partition of the reading function receives every
 * record, and `processBroadcast` applies it at the next checkpoint barrier (the same barrier in
 * every partition). See docs/guides/broadcast-state.md.
 * @example input: [fromFunction("events"), broadcast(fromFunction("rules"))]
 */
export function broadcast(input: FunctionInput): FunctionInput {
  return { ...input, broadcast: true };
}

/**
 * Defines a stream function.
 * @example
 * export const counts = defineFunction({
 *   name: "counts",
 *   input: fromFunction("parse"),
 *   key: (e: { user: string }) => e.user,
 *   state: { n: valueState<number>() },
 *   process(ctx, e) { ctx.emit({ user: e.user, n: ctx.state.n.update((n) => (n ?? 0) + 1) }); },
 * });
 */
export function defineFunction<In, Out, S extends StateDeclarations = {}, B extends BroadcastStateDeclarations = {}>(spec: FunctionSpec<In, Out, S, B>): FunctionSpec<In, Out, S, B> {
  return spec;
}

/**
 * Defines a sink: a function that publishes every record it receives to a user subject.
 * @example defineSink({ name: "out", input: fromFunction("counts"), subject: "results.counts" })
 */
export function defineSink<In>(spec: {
  readonly name: string;
  readonly input: Input | readonly FunctionInput[];
  readonly subject: string | ((record: In) => string);
  readonly format?: "json" | "msgpack" | "json-lines";
  readonly delivery?: "exactly-once" | "at-least-once";
  readonly partitions?: number;
  /** `false`: not chained onto the function it reads (design note ch). */
  readonly chain?: boolean;
}): FunctionSpec<In, In, {}> {
  return {
    ...specBase(spec),
    ...(spec.chain === undefined ? {} : { chain: spec.chain }),
    sink: {
      subject: spec.subject,
      ...(spec.format === undefined ? {} : { format: spec.format }),
      ...(spec.delivery === undefined ? {} : { delivery: spec.delivery }),
    },
    process: forwardRecord,
  };
}

/**
 * Groups functions into a pipeline (a job). The module a worker runs exports it as `default`.
 * @example export default definePipeline({ name: "pageviews", functions: [parse, counts, out] });
 */
export function definePipeline(spec: PipelineSpec): PipelineSpec {
  return spec;
}
