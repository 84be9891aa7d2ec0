/**
 * The validated shape of a pipeline: which function feeds which, with how many partitions.
 *
 * Built once from a `PipelineSpec` before anything touches NATS, so a pipeline with a typo in an
 * input, a cycle, a name that is not a subject token or keyed state without a key is rejected
 * with a message that says what to fix. The runtime asks it for every actor's producers (whose
 * watermarks it must wait for) and consumers (where its output goes).
 */
import type { FunctionSpec, PipelineSpec } from "../sdk/function.ts";
import { isValidStateName } from "./kv-keys.ts";
import { createWatermarkGenerator } from "./watermarks.ts";

/** The pipeline definition cannot run as written; the message says what to change. */
export class InvalidPipelineError extends Error {
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
}

export interface FunctionNode {
  readonly name: string;
  readonly spec: FunctionSpec<any, any, any>;
  readonly partitions: number;
  /** True when the input is a user stream. */
  readonly isSource: boolean;
  /** Producer ids (`<fn>/<partition>`) whose watermarks this function's actors combine. */
  readonly producers: readonly string[];
  /** Functions reading this one, by output. */
  readonly consumers: readonly Edge[];
}

export interface JobGraph {
  readonly job: string;
  readonly functions: readonly FunctionNode[];
  node(name: string): FunctionNode;
}

/** The producer id of an actor, as carried in message headers and watermark tables. */
export function producerId(fn: string, partition: number): string {
  return `${fn}/${partition}`;
}

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

  const partitionsOf = (spec: FunctionSpec<any, any, any>): number => {
    const p = spec.partitions ?? (spec.input.kind === "stream" ? spec.input.partitions ?? 1 : spec.key ? DEFAULT_KEYED_PARTITIONS : 1);
    if (!Number.isInteger(p) || p < 1 || p > 4096) throw new InvalidPipelineError(`function "${spec.name}": partitions must be an integer in 1..4096`);
    if (spec.input.kind === "stream" && spec.input.partitions !== undefined && spec.partitions !== undefined && spec.partitions !== spec.input.partitions) {
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
    if (hasState && spec.key === undefined) throw new InvalidPipelineError(`function "${spec.name}" declares state but has no key selector`);
    if (spec.input.kind === "function") {
      if (!specs.has(spec.input.fn)) throw new InvalidPipelineError(`function "${spec.name}" reads unknown function "${spec.input.fn}"`);
      if (spec.input.fn === spec.name) throw new InvalidPipelineError(`function "${spec.name}" reads itself`);
    } else if (spec.input.kind === "stream") {
      if (typeof spec.input.stream !== "string" || spec.input.stream.length === 0) {
        throw new InvalidPipelineError(`function "${spec.name}" needs a stream name`);
      }
      if ((spec.partitions ?? spec.input.partitions ?? 1) > 1 && typeof spec.input.subject !== "function") {
        // Otherwise every partition would read every message.
        throw new InvalidPipelineError(`function "${spec.name}": a source with several partitions needs subject: (p) => ... (one subject filter per partition)`);
      }
    } else {
      throw new InvalidPipelineError(`function "${(spec as FunctionSpec).name}" has an unknown input kind`);
    }
  }

  // Cycle check: follow inputs upwards from every function.
  for (const spec of specs.values()) {
    const seen = new Set<string>();
    for (let cur: FunctionSpec | undefined = spec; cur?.input.kind === "function"; cur = specs.get(cur.input.fn)) {
      if (seen.has(cur.name)) throw new InvalidPipelineError(`functions form a cycle through "${cur.name}"`);
      seen.add(cur.name);
    }
  }

  type MutableNode = FunctionNode & { consumers: Edge[]; producers: string[] };
  const nodes = new Map<string, MutableNode>();
  for (const spec of specs.values()) {
    nodes.set(spec.name, { name: spec.name, spec, partitions: partitionsOf(spec), isSource: spec.input.kind === "stream", producers: [], consumers: [] });
  }
  for (const node of nodes.values()) {
    const input = node.spec.input;
    if (input.kind !== "function") continue;
    const upstream = nodes.get(input.fn)!;
    upstream.consumers.push({ to: node, output: input.output });
    node.producers = Array.from({ length: upstream.partitions }, (_, p) => producerId(upstream.name, p));
  }
  const functions = [...nodes.values()];
  return {
    job,
    functions,
    node(name) {
      const n = nodes.get(name);
      if (n === undefined) throw new InvalidPipelineError(`job "${job}" has no function "${name}"`);
      return n;
    },
  };
}
