/**
 * The validated shape of a pipeline: which function feeds which, with how many partitions.
 *
 * Built once from a `PipelineSpec` before anything touches NATS, so a pipeline with a typo in an
 * input, a cycle, a name that is not a subject token or keyed state without a key is rejected
 * with a message that says what to fix. The runtime asks it for every actor's producers (whose
 * watermarks it must wait for) and consumers (where its output goes).
 */
import { checkLookup } from "./lookup.ts";
import { BUCKET_NAME } from "./upsert.ts";
import type { FunctionInput, FunctionSpec, Input, PipelineSpec, StreamInput } from "../spec/function.ts";
import { isValidStateName } from "./kv-keys.ts";
import { createWatermarkGenerator } from "./watermarks.ts";
import { broadcastDeclarationProblem, broadcastLimits } from "./broadcast.ts";
import { bufferTimeoutProblem } from "./output-flush.ts";
import { InputError } from "../errors.ts";

/** The pipeline definition cannot run as written; the message says what to change. */
export class InvalidPipelineError extends InputError {
  override readonly name = "InvalidPipelineError";
}

/** Default partition count of keyed functions that do not set one. */
export const DEFAULT_KEYED_PARTITIONS = 8;

const TOKEN = /^[A-Za-z0-9_-]+$/;

/** A function that reads another function's output. */
export interface Edge {
  /** The consuming function. */
  readonly to: FunctionNode;
  /** Side output name, or undefined for the main output. */
  readonly output: string | undefined;
  /** Index of this edge among the consumer's inputs (`ctx.input`). */
  readonly input: number;
  /** A broadcast input: every partition of the consumer gets every record (design note bq). */
  readonly broadcast: boolean;
}

export interface FunctionNode {
  readonly name: string;
  readonly spec: FunctionSpec<any, any, any>;
  readonly partitions: number;
  /** True when the input is a user stream. */
  readonly isSource: boolean;
  /** The user stream a source reads. */
  readonly stream?: StreamInput;
  /** The functions read, in input order (empty for a source). */
  readonly inputs: readonly FunctionInput[];
  /** Producer ids (`<fn>/<partition>`) that feed this function's actors: their barriers are aligned. */
  readonly producers: readonly string[];
  /**
   * The producers whose watermarks this function's actors combine: all but those that feed it
   * only through broadcast inputs (a rule stream, mostly idle, must not hold event time back).
   */
  readonly watermarkProducers: readonly string[];
  /** Indices of the broadcast inputs (empty for most functions). */
  readonly broadcastInputs: readonly number[];
  /** Functions reading this one, by output. */
  readonly consumers: readonly Edge[];
}

export interface JobGraph {
  readonly job: string;
  readonly functions: readonly FunctionNode[];
  /** Limits of the job's dead-letter stream (defaults applied). */
  readonly deadLetters: { readonly maxAgeMs: number; readonly maxBytes: number };
  node(name: string): FunctionNode;
}

/**
 * A broadcast input needs `processBroadcast`, and broadcast state or `processBroadcast` need a
 * broadcast input; a stream input cannot be broadcast, and a function needs an input that is not.
 */
/** An upsert sink names a bucket NATS accepts and a key function (design note bv). */
function checkUpsert(spec: FunctionSpec<any, any, any, any>): void {
  const u = spec.upsert as { bucket?: unknown; key?: unknown } | undefined;
  if (u === undefined) return;
  if (u === null || typeof u !== "object") throw new InvalidPipelineError(`function "${spec.name}": upsert must be { bucket, key }`);
  if (typeof u.bucket !== "string" || !BUCKET_NAME.test(u.bucket)) throw new InvalidPipelineError(`function "${spec.name}": upsert bucket ${JSON.stringify(u.bucket)} must match [A-Za-z0-9_-]+`);
  // eddy's own buckets (state, jobs, workers, leader) are named eddy_…: an upsert must not write into them.
  if (/^eddy_/i.test(u.bucket)) throw new InvalidPipelineError(`function "${spec.name}": upsert bucket "${u.bucket}" is in eddy's own namespace (eddy_…); choose another name`);
  if (typeof u.key !== "function") throw new InvalidPipelineError(`function "${spec.name}": upsert key must be a function of the row`);
}

export function checkBroadcast(spec: FunctionSpec<any, any, any, any>, inputs: readonly Input[]): void {
  const fn = spec.name;
  const broadcast = inputs.filter((i) => (i as { broadcast?: unknown }).broadcast === true);
  for (const i of inputs) {
    const flag = (i as { broadcast?: unknown }).broadcast;
    if (flag !== undefined && typeof flag !== "boolean") throw new InvalidPipelineError(`function "${fn}": an input's broadcast must be true or false, got ${JSON.stringify(flag)}`);
    if (flag === true && i.kind === "stream") throw new InvalidPipelineError(`function "${fn}": a stream input cannot be broadcast (read the stream in a source function and broadcast its output)`);
  }
  const declared = spec.broadcastState === undefined ? [] : Object.entries(spec.broadcastState as object);
  if (broadcast.length === 0) {
    if (spec.broadcastState !== undefined) throw new InvalidPipelineError(`function "${fn}" declares broadcastState but has no broadcast input (mark one with broadcast(fromFunction(...)))`);
    if (spec.processBroadcast !== undefined) throw new InvalidPipelineError(`function "${fn}" has processBroadcast() but no broadcast input (mark one with broadcast(fromFunction(...)))`);
    return;
  }
  if (typeof spec.processBroadcast !== "function") throw new InvalidPipelineError(`function "${fn}" has a broadcast input but no processBroadcast()`);
  if (broadcast.length === inputs.length) throw new InvalidPipelineError(`function "${fn}": every input is broadcast; it needs one that is not (the records processBroadcast's state applies to)`);
  if (spec.broadcastState !== undefined && (spec.broadcastState === null || typeof spec.broadcastState !== "object")) throw new InvalidPipelineError(`function "${fn}": broadcastState must be an object of mapState() declarations`);
  for (const [name, decl] of declared) {
    if (!isValidStateName(name)) throw new InvalidPipelineError(`function "${fn}": broadcast state name "${name}" must be a letter followed by letters, digits or '-'`);
    const problem = broadcastDeclarationProblem(name, decl);
    if (problem !== undefined) throw new InvalidPipelineError(`function "${fn}": ${problem}`);
  }
  try {
    broadcastLimits(fn, spec.broadcastLimits);
  } catch (e) {
    throw new InvalidPipelineError((e as Error).message);
  }
}

/** The producer id of an actor, as carried in message headers and watermark tables. */
export function producerId(fn: string, partition: number): string {
  return `${fn}/${partition}`;
}

/** Dead letters are kept this long by default (Kafka's default retention). */
export const DEFAULT_DEAD_LETTER_MAX_AGE_MS = 7 * 24 * 3600_000;
/** A dead-letter stream keeps at most this many bytes by default, dropping the oldest. */
export const DEFAULT_DEAD_LETTER_MAX_BYTES = 1024 * 1024 * 1024;

export function buildJobGraph(pipeline: PipelineSpec): JobGraph {
  const job = pipeline.name;
  if (typeof job !== "string" || !TOKEN.test(job)) throw new InvalidPipelineError(`job name "${job}" must match [A-Za-z0-9_-]+`);
  if (pipeline.functions.length === 0) throw new InvalidPipelineError(`job "${job}" has no functions`);
  const specs = new Map<string, FunctionSpec<any, any, any>>();
  for (const spec of pipeline.functions) {
    if (typeof spec.name !== "string" || !TOKEN.test(spec.name)) {
      throw new InvalidPipelineError(`function name "${spec.name}" must match [A-Za-z0-9_-]+`);
    }
    if (specs.has(spec.name)) throw new InvalidPipelineError(`function "${spec.name}" is defined twice`);
    if (typeof spec.process !== "function") throw new InvalidPipelineError(`function "${spec.name}" has no process()`);
    specs.set(spec.name, spec);
  }

  const inputsOf = (spec: FunctionSpec<any, any, any>): readonly Input[] => (Array.isArray(spec.input) ? spec.input : [spec.input as Input]);
  const streamOf = (spec: FunctionSpec<any, any, any>): StreamInput | undefined => {
    const inputs = inputsOf(spec);
    return inputs.length === 1 && inputs[0]!.kind === "stream" ? inputs[0] : undefined;
  };

  const partitionsOf = (spec: FunctionSpec<any, any, any>): number => {
    const stream = streamOf(spec);
    const p = spec.partitions ?? (stream !== undefined ? stream.partitions ?? 1 : spec.key ? DEFAULT_KEYED_PARTITIONS : 1);
    if (!Number.isInteger(p) || p < 1 || p > 4096) throw new InvalidPipelineError(`function "${spec.name}": partitions must be an integer in 1..4096`);
    if (stream?.partitions !== undefined && spec.partitions !== undefined && spec.partitions !== stream.partitions) {
      throw new InvalidPipelineError(`function "${spec.name}": partitions and input.partitions disagree`);
    }
    return p;
  };

  for (const spec of specs.values()) {
    const hasState = Object.keys(spec.state ?? {}).length > 0;
    for (const name of Object.keys(spec.state ?? {})) {
      if (!isValidStateName(name)) throw new InvalidPipelineError(`function "${spec.name}": state name "${name}" must be a letter followed by letters, digits or '-'`);
    }
    if (spec.watermark !== undefined) {
      try {
        createWatermarkGenerator(spec.watermark);
      } catch (e) {
        throw new InvalidPipelineError(`function "${spec.name}": invalid watermark strategy: ${(e as Error).message}`);
      }
    }
    for (const option of ["maxFutureMs", "maxRecordBytes"] as const) {
      const v = spec[option];
      if (v !== undefined && (typeof v !== "number" || !Number.isFinite(v) || v < 0)) throw new InvalidPipelineError(`function "${spec.name}": ${option} must be a non-negative number, got ${String(v)}`);
    }
    if (spec.bufferTimeoutMs !== undefined) {
      const problem = bufferTimeoutProblem(spec.bufferTimeoutMs);
      if (problem !== undefined) throw new InvalidPipelineError(`function "${spec.name}": ${problem}`);
    }
    if (spec.futureTimestamps !== undefined && spec.futureTimestamps !== "dead-letter" && spec.futureTimestamps !== "clamp") {
      throw new InvalidPipelineError(`function "${spec.name}": futureTimestamps must be "dead-letter" or "clamp"`);
    }
    if (spec.earlyFlush !== undefined && typeof spec.earlyFlush !== "boolean") throw new InvalidPipelineError(`function "${spec.name}": earlyFlush must be true or false, got ${JSON.stringify(spec.earlyFlush)}`);
    if (spec.chain !== undefined && typeof spec.chain !== "boolean") throw new InvalidPipelineError(`function "${spec.name}": chain must be true or false, got ${JSON.stringify(spec.chain)}`);
    if (hasState && spec.key === undefined) throw new InvalidPipelineError(`function "${spec.name}" declares state but has no key selector`);
    checkUpsert(spec);
    const inputs = inputsOf(spec);
    if (inputs.length === 0) throw new InvalidPipelineError(`function "${spec.name}" has no input`);
    checkBroadcast(spec, inputs);
    try {
      checkLookup(spec);
    } catch (e) {
      throw new InvalidPipelineError((e as Error).message);
    }
    for (const input of inputs) {
      if (input?.kind === "function") {
        if (!specs.has(input.fn)) throw new InvalidPipelineError(`function "${spec.name}" reads unknown function "${input.fn}"`);
        if (input.fn === spec.name) throw new InvalidPipelineError(`function "${spec.name}" reads itself`);
      } else if (input?.kind === "stream") {
        if (inputs.length > 1) throw new InvalidPipelineError(`function "${spec.name}": a stream input must be the function's only input (read it in a source function and join its output)`);
        if (typeof input.stream !== "string" || input.stream.length === 0) {
          throw new InvalidPipelineError(`function "${spec.name}" needs a stream name`);
        }
        if (input.changelog !== undefined && typeof input.changelog !== "function") {
          throw new InvalidPipelineError(`function "${spec.name}": a stream input's changelog must be a function from a message to Changes (e.g. oplog())`);
        }
        if ((spec.partitions ?? input.partitions ?? 1) > 1 && typeof input.subject !== "function") {
          // Otherwise every partition would read every message.
          throw new InvalidPipelineError(`function "${spec.name}": a source with several partitions needs subject: (p) => ... (one subject filter per partition)`);
        }
      } else {
        throw new InvalidPipelineError(`function "${spec.name}" has an unknown input kind`);
      }
    }
  }

  // Cycle check: depth-first over the inputs.
  const state = new Map<string, "visiting" | "done">();
  const visit = (name: string): void => {
    if (state.get(name) === "done") return;
    if (state.get(name) === "visiting") throw new InvalidPipelineError(`functions form a cycle through "${name}"`);
    state.set(name, "visiting");
    for (const input of inputsOf(specs.get(name)!)) if (input.kind === "function") visit(input.fn);
    state.set(name, "done");
  };
  for (const name of specs.keys()) visit(name);

  type MutableNode = FunctionNode & { consumers: Edge[]; producers: string[]; watermarkProducers: string[] };
  const nodes = new Map<string, MutableNode>();
  for (const spec of specs.values()) {
    const stream = streamOf(spec);
    nodes.set(spec.name, {
      name: spec.name,
      spec,
      partitions: partitionsOf(spec),
      isSource: stream !== undefined,
      ...(stream === undefined ? {} : { stream }),
      inputs: inputsOf(spec).filter((i): i is FunctionInput => i.kind === "function"),
      producers: [],
      watermarkProducers: [],
      broadcastInputs: inputsOf(spec).flatMap((i, index) => (i.kind === "function" && i.broadcast === true ? [index] : [])),
      consumers: [],
    });
  }
  for (const node of nodes.values()) {
    const producers = new Set<string>();
    const timed = new Set<string>();
    node.inputs.forEach((input, index) => {
      const upstream = nodes.get(input.fn)!;
      const broadcast = input.broadcast === true;
      upstream.consumers.push({ to: node, output: input.output, input: index, broadcast });
      for (let p = 0; p < upstream.partitions; p++) {
        producers.add(producerId(upstream.name, p));
        if (!broadcast) timed.add(producerId(upstream.name, p));
      }
    });
    node.producers = [...producers];
    node.watermarkProducers = [...timed];
  }
  const functions = [...nodes.values()];
  if (pipeline.chaining !== undefined && typeof pipeline.chaining !== "boolean") throw new InvalidPipelineError(`job "${job}": chaining must be true or false, got ${JSON.stringify(pipeline.chaining)}`);
  const retention = pipeline.deadLetters ?? {};
  for (const option of ["maxAgeMs", "maxBytes"] as const) {
    const v = retention[option];
    if (v !== undefined && (typeof v !== "number" || !Number.isInteger(v) || v < 0)) throw new InvalidPipelineError(`job "${job}": deadLetters.${option} must be a non-negative whole number, got ${String(v)}`);
  }
  return {
    job,
    functions,
    deadLetters: { maxAgeMs: retention.maxAgeMs ?? DEFAULT_DEAD_LETTER_MAX_AGE_MS, maxBytes: retention.maxBytes ?? DEFAULT_DEAD_LETTER_MAX_BYTES },
    node(name) {
      const n = nodes.get(name);
      if (n === undefined) throw new InvalidPipelineError(`job "${job}" has no function "${name}"`);
      return n;
    },
  };
}
