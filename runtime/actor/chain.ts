/**
 * Runs a chain of functions (core/chaining.ts, design note ch) as one function.
 *
 * The chain is composed at the spec level, before any actor exists: `fusePipeline` replaces the
 * functions of each chain with one spec named after its head, whose `process` runs the head's
 * and, on every record the head emits into the next function's input, calls that function's
 * `process` synchronously, and so on to the tail, whose outputs (sink, upsert, side outputs,
 * consumers) become the fused function's. Functions that read a chain's tail read its head
 * instead. The job graph built from the fused pipeline is the physical one: the chained
 * functions have no actors, no input stream, no consumer and no partitions to assign, and the
 * head's actor keeps the whole chain in its epochs, snapshots and replay, so exactly-once needs
 * nothing new. Keeping the composition out of the actor leaves the actor unaware of chaining.
 *
 * A chained function sees what it would see in its own actor: its input's records with their
 * event time (re-stamped by its own `timestamp` selector if it has one), key "" and input 0, the
 * head's watermark and processing time. A record it throws on is dead-lettered under its own
 * name (and `Eddy-Producer` naming the function it read, in the head's partition) and the chain
 * goes on, as its own actor would do; its `ctx.count` counters are counted as the head's.
 */
import { buildJobGraph, type FunctionNode, type JobGraph } from "../core/job-graph.ts";
import { planChains, type ChainPlan } from "../core/chaining.ts";
import { KeyRequiredError } from "../core/operator.ts";
import { Rejection, selectEventTime } from "../core/record-input.ts";
import { forwardRecord } from "../spec/forward.ts";
import { copyRecord } from "../core/record-copy.ts";
import type { BroadcastContext, Context, FunctionSpec, Input, PipelineSpec, TimerService } from "../spec/function.ts";

/**
 * The side output name under which a chained function's dead letters reach the head's output
 * router (output-router.ts), which publishes them with the chained function's name. No user
 * output name can hold a NUL.
 */
export const CHAIN_DEAD_LETTER = "\u0000eddy-chain-dead-letter";

/** What a chained function could not process (the record of a `CHAIN_DEAD_LETTER` side output). */
export interface ChainDeadLetter {
  readonly fn: string;
  /** The function whose output the record was (its partition is the head's). */
  readonly from: string;
  readonly reason: string;
  readonly record: unknown;
}

/** A pipeline as it runs: chains fused into their heads, with the plan and the graph of each view. */
export interface PhysicalPipeline {
  /** The pipeline as written. */
  readonly logical: JobGraph;
  /** The pipeline with every chain fused into one function named after its head. */
  readonly pipeline: PipelineSpec;
  /** The graph the runtime builds actors, streams and assignments from. */
  readonly graph: JobGraph;
  readonly plan: ChainPlan;
  /** The functions fused into `head` after it, in order (empty when it heads no chain). */
  chainOf(head: string): readonly string[];
}

/** Fuses the chains of `pipeline` (core/chaining.ts); a pipeline without chains is returned as is. */
export function physicalPipeline(pipeline: PipelineSpec): PhysicalPipeline {
  const logical = buildJobGraph(pipeline);
  const plan = planChains(logical, pipeline.chaining !== false);
  const chains = new Map(plan.chains.map((c) => [c[0]!, c]));
  const chainOf = (head: string) => chains.get(head)?.slice(1) ?? [];
  if (plan.chains.length === 0) return { logical, pipeline, graph: logical, plan, chainOf };
  const members = new Set(plan.chains.flatMap((c) => c.slice(1)));
  const headOfTail = new Map(plan.chains.map((c) => [c[c.length - 1]!, c[0]!]));
  const functions = pipeline.functions
    .filter((f) => !members.has(f.name))
    .map((f) => {
      const chain = chains.get(f.name);
      return readingHeads(chain === undefined ? f : chainSpec(chain.map((n) => logical.node(n))), headOfTail);
    });
  const fused: PipelineSpec = { ...pipeline, functions };
  return { logical, pipeline: fused, graph: buildJobGraph(fused), plan, chainOf };
}

/** `spec` with its inputs that read a chain's tail reading the chain's head (same output name). */
function readingHeads(spec: FunctionSpec<any, any, any>, headOfTail: ReadonlyMap<string, string>): FunctionSpec<any, any, any> {
  const rename = (i: Input): Input => (i.kind === "function" && headOfTail.has(i.fn) ? { ...i, fn: headOfTail.get(i.fn)! } : i);
  if (Array.isArray(spec.input)) {
    const inputs = spec.input as readonly Input[];
    if (!inputs.some((i) => i.kind === "function" && headOfTail.has(i.fn))) return spec;
    return { ...spec, input: inputs.map(rename) as FunctionSpec["input"] };
  }
  const input = spec.input as Input;
  return input.kind === "function" && headOfTail.has(input.fn) ? { ...spec, input: rename(input) } : spec;
}

/** Where a function's outputs go: `emit` and `sideOutput` of the context it runs with. */
interface Downstream {
  emit(record: unknown, timestamp: number): void;
  side(name: string, record: unknown, timestamp: number): void;
  /** What receives the records emitted on the main output (undefined: nobody). */
  readonly main: Receiver | undefined;
}

/** What takes a record in: a chained function's input, or the head actor's main output. */
interface Receiver {
  deliver(record: unknown, timestamp: number): void;
}

/**
 * One spec that runs `nodes` (a chain, head first) as one function: the head's input, key,
 * state, timers and partitions; the tail's sink, upsert and changelog.
 */
export function chainSpec(nodes: readonly FunctionNode[]): FunctionSpec<any, any, any> {
  const head = nodes[0]!.spec;
  const tail = nodes[nodes.length - 1]!.spec;
  const { sink: _sink, upsert: _upsert, changelog: _changelog, ...rest } = head;
  const runtimes = new WeakMap<object, ChainRuntime>();
  let lastCtx: object | undefined;
  let last: ChainRuntime | undefined;
  // One runtime per context: an operator keeps one context for all its calls.
  const runtimeOf = (ctx: Context<any, any, any>): ChainRuntime => {
    if (ctx === lastCtx) return last!;
    let rt = runtimes.get(ctx);
    if (rt === undefined) runtimes.set(ctx, (rt = new ChainRuntime(nodes, ctx)));
    lastCtx = ctx;
    last = rt;
    return rt;
  };
  // The chain's output is its tail's: how that output is batched is set by the function nearest
  // the tail that sets it (design note cj), so an option set on any function of the chain applies.
  const nearestTail = <K extends "bufferTimeoutMs" | "earlyFlush">(option: K): FunctionSpec[K] => nodes.map((n) => n.spec[option]).findLast((v) => v !== undefined);
  const bufferTimeoutMs = nearestTail("bufferTimeoutMs");
  const earlyFlush = nearestTail("earlyFlush");
  const spec: FunctionSpec<any, any, any> = {
    ...rest,
    ...(bufferTimeoutMs === undefined ? {} : { bufferTimeoutMs }),
    ...(earlyFlush === undefined ? {} : { earlyFlush }),
    ...(tail.sink === undefined ? {} : { sink: tail.sink }),
    ...(tail.upsert === undefined ? {} : { upsert: tail.upsert }),
    ...(tail.changelog === undefined ? {} : { changelog: tail.changelog }),
    process(ctx, record) {
      head.process.call(head, runtimeOf(ctx).headCtx, record);
    },
  };
  if (head.onTimer !== undefined) {
    const onTimer = head.onTimer;
    spec.onTimer = (ctx, timer) => onTimer.call(head, runtimeOf(ctx).headCtx, timer);
  }
  if (head.processBroadcast !== undefined) {
    const processBroadcast = head.processBroadcast;
    // A broadcast context is made per call: its emits go into the chain like the head's others.
    spec.processBroadcast = (ctx, record) => {
      const into = new ChainRuntime(nodes, ctx as unknown as Context<any>).into;
      const wrapped: BroadcastContext<any, any> = Object.create(ctx);
      wrapped.emit = (r, ts) => into.emit(r, ts ?? ctx.timestamp);
      wrapped.sideOutput = (name, r, ts) => into.side(name, r, ts ?? ctx.timestamp);
      processBroadcast.call(head, wrapped, record);
    };
  }
  return spec;
}

/** The chain's links for one head context: the head's context with its outputs fed to the next function. */
class ChainRuntime {
  readonly headCtx: Context<any, any, any>;
  /** Where the head's outputs go: into the second function of the chain. */
  readonly into: Downstream;

  constructor(nodes: readonly FunctionNode[], real: Context<any, any, any>) {
    let downstream: Downstream = new ChainTail(real);
    for (let i = nodes.length - 1; i >= 1; i--) {
      const node = nodes[i]!;
      const upstream = nodes[i - 1]!;
      const output = node.inputs[0]!.output;
      // A function with keyed state may emit a value it keeps: a copy keeps the next function
      // from changing it (Flink copies between chained operators unless object reuse is on).
      const copy = mayHoldEmitted(upstream.spec);
      // A function that only forwards (a sink's `process`) and needs no copy would only call
      // `emit` per record: its input goes straight where its output would.
      const receiver: Receiver | undefined = passesThrough(node.spec) && !copy ? downstream.main : new Link(node.spec, upstream.name, downstream, real, copy);
      downstream = receiver === undefined ? DROP : output === undefined ? new MainInput(receiver) : new SideInput(output, receiver);
    }
    this.into = downstream;
    const into = downstream;
    const ctx: Context<any, any, any> = Object.create(real);
    const main = into.main;
    ctx.emit = main === undefined ? () => undefined : (r, ts) => main.deliver(r, ts ?? real.timestamp);
    ctx.sideOutput = (name, r, ts) => into.side(name, r, ts ?? real.timestamp);
    this.headCtx = ctx;
  }
}

/** Whether what `spec` emits may be an object it keeps in keyed or broadcast state. */
function mayHoldEmitted(spec: FunctionSpec<any, any, any>): boolean {
  return Object.keys(spec.state ?? {}).length > 0 || spec.broadcastState !== undefined;
}

/** Whether `spec` passes each record on unchanged with its event time (nothing else to run). */
function passesThrough(spec: FunctionSpec<any, any, any>): boolean {
  return spec.process === forwardRecord && spec.timestamp === undefined;
}

/** The head actor's own outputs: where the tail's records leave the chain. */
class ChainTail implements Downstream, Receiver {
  private readonly real: Context<any, any, any>;
  readonly main: Receiver = this;
  constructor(real: Context<any, any, any>) {
    this.real = real;
  }
  deliver(record: unknown, timestamp: number): void {
    this.real.emit(record, timestamp);
  }
  emit(record: unknown, timestamp: number): void {
    this.real.emit(record, timestamp);
  }
  side(name: string, record: unknown, timestamp: number): void {
    this.real.sideOutput(name, record, timestamp);
  }
}

/** A function that reads its producer's main output: side outputs are read by nobody, dropped. */
class MainInput implements Downstream {
  readonly main: Receiver;
  constructor(main: Receiver) {
    this.main = main;
  }
  emit(record: unknown, timestamp: number): void {
    this.main.deliver(record, timestamp);
  }
  side(): void {}
}

/** A function that reads one side output of its producer: the rest is read by nobody, dropped. */
class SideInput implements Downstream {
  private readonly output: string;
  private readonly to: Receiver;
  readonly main = undefined;
  constructor(output: string, to: Receiver) {
    this.output = output;
    this.to = to;
  }
  emit(): void {}
  side(name: string, record: unknown, timestamp: number): void {
    if (name === this.output) this.to.deliver(record, timestamp);
  }
}

/** Outputs nobody in the chain reads (what a dropped pass-through function would have read). */
const DROP: Downstream = { main: undefined, emit: () => undefined, side: () => undefined };

/**
 * A chained function: runs `process` for each record its upstream emits into its input. It is
 * its own context (one object per function and head context, not one per record), whose
 * `emit`/`sideOutput` go to `out`, the next function's input or the head actor's outputs.
 */
class Link implements Receiver, Context<any, any, any> {
  private readonly spec: FunctionSpec<any, any, any>;
  private readonly from: string;
  private readonly real: Context<any, any, any>;
  private readonly copy: boolean;
  private readonly process: (ctx: Context<any, any, any>, record: unknown) => void;
  private readonly selects: boolean;
  timestamp = -Infinity;
  readonly key = "";
  readonly input = 0;
  readonly state: Context<any, any, any>["state"];
  readonly broadcast = {};
  readonly timers: TimerService;

  constructor(spec: FunctionSpec<any, any, any>, from: string, out: Downstream, real: Context<any, any, any>, copy: boolean) {
    this.spec = spec;
    this.from = from;
    this.real = real;
    this.copy = copy;
    this.process = spec.process;
    this.selects = spec.timestamp !== undefined;
    const name = spec.name;
    const noKey = (what: string) => () => {
      throw new KeyRequiredError(`${name} uses ${what} but has no key selector`);
    };
    this.timers = {
      registerEventTimeTimer: noKey("timers"),
      deleteEventTimeTimer: noKey("timers"),
      registerProcessingTimeTimer: noKey("timers"),
      deleteProcessingTimeTimer: noKey("timers"),
    };
    const main = out.main;
    this.emit = main === undefined ? () => undefined : (record, ts) => main.deliver(record, ts ?? this.timestamp);
    this.sideOutput = (output, record, ts) => out.side(output, record, ts ?? this.timestamp);
    this.lookup = () => {
      throw new Error(`${name} calls ctx.lookup() but declares no lookup`);
    };
    // A broadcast context (the head's processBroadcast) has no counters.
    this.count = (event, n) => void (real.count === undefined ? undefined : real.count(event, n));
    this.state = new Proxy(
      {},
      {
        get: (_, state) => {
          if (typeof state !== "string") return undefined;
          throw new KeyRequiredError(`${name} uses state "${state}" but declares no state and has no key selector`);
        },
      },
    );
  }

  get watermark(): number {
    return this.real.watermark;
  }

  get processingTime(): number {
    return this.real.processingTime;
  }

  // The context's functions are the Link's own (not methods on `this`), so that a function that
  // takes them apart (`({ emit }, r) => emit(r)`) works as it does with an actor's context.
  readonly emit: (record: unknown, timestamp?: number) => void;
  readonly sideOutput: (output: string, record: unknown, timestamp?: number) => void;
  readonly lookup: () => never;
  readonly count: (event: string, n?: number) => void;

  deliver(record: unknown, timestamp: number): void {
    let value = record;
    if (this.copy) {
      try {
        value = copyRecord(record);
      } catch (e) {
        return this.deadLetter(`encode: record for ${this.spec.name} cannot be copied: ${describe(e)}`, record, timestamp);
      }
    }
    let ts = timestamp;
    if (this.selects) {
      const t = selectEventTime(this.spec, value, 0, this.real.processingTime);
      if (t instanceof Rejection) return this.deadLetter(t.reason, value, timestamp);
      ts = t;
    }
    const outer = this.timestamp;
    this.timestamp = ts;
    try {
      this.process.call(this.spec, this, value);
    } catch (e) {
      this.deadLetter(`process: ${this.spec.name}.process failed for key "": ${describe(e)}`, value, ts);
    }
    this.timestamp = outer;
  }

  private deadLetter(reason: string, record: unknown, timestamp: number): void {
    const letter: ChainDeadLetter = { fn: this.spec.name, from: this.from, reason, record };
    this.real.sideOutput(CHAIN_DEAD_LETTER, letter, timestamp);
  }
}

function describe(cause: unknown): string {
  return cause instanceof Error ? cause.message : String(cause);
}
