/**
 * Which functions run fused with the function they read (operator chaining, design note ch).
 *
 * Every function boundary otherwise costs a JetStream publish and consume per batch, a stream
 * and a consumer, and a barrier alignment. A function connected forward to its only producer —
 * no key (no repartitioning), the same partition count, one input that is all of that producer's
 * output — gains nothing from the hop, so, like Flink's StreamingJobGraphGenerator, eddy runs it
 * inside the producer's actor. The decision is a pure function of the job graph so that the
 * rules are tested with plain graphs and every caller (deploy, worker, status) agrees on them.
 */
import type { FunctionNode, JobGraph } from "./job-graph.ts";

/** The chaining of a job: the chains of two or more functions, and why the others stand alone. */
export interface ChainPlan {
  /** Each chain, head first (head → … → tail); only chains of two or more functions. */
  readonly chains: readonly (readonly string[])[];
  /**
   * Why a function that reads another function is not chained onto it (`chain: false`, keyed, …),
   * by function name. Functions chained, and sources, have no entry.
   */
  readonly reasons: ReadonlyMap<string, string>;
  /** The head of the chain `fn` runs in (itself when it is not chained). */
  headOf(fn: string): string;
}

/**
 * Why `node` cannot run chained onto the function it reads, or undefined when it can (then that
 * function is `node.inputs[0].fn`). `chaining` is the pipeline's switch (`PipelineSpec.chaining`).
 */
export function chainBreak(graph: JobGraph, node: FunctionNode, chaining = true): string | undefined {
  // Flink: StreamGraph#isChainingEnabled (env.disableOperatorChaining()).
  if (!chaining) return "chaining is disabled for the pipeline (chaining: false)";
  if (node.isSource) return "it reads a stream";
  // Flink: downStreamVertex.getInEdges().size() == 1.
  if (node.inputs.length !== 1) return `it has ${node.inputs.length} inputs`;
  const input = node.inputs[0]!;
  // A broadcast partitioner is not a forward one, and broadcast records wait for a barrier.
  if (input.broadcast === true) return "its input is broadcast";
  const up = graph.node(input.fn);
  // Flink: ChainingStrategy.NEVER on either side (disableChaining()).
  if (node.spec.chain === false) return "chain: false";
  if (up.spec.chain === false) return `"${up.name}" has chain: false`;
  // Flink: the edge's partitioner is a ForwardPartitioner; a key selector repartitions (keyBy).
  if (node.spec.key !== undefined) return "it is keyed (its records are repartitioned by key)";
  // Flink: upStreamVertex.getParallelism() == downStreamVertex.getParallelism(). The counts are
  // those the job graph gave (an unkeyed function defaults to 1): chaining never changes how
  // many partitions a function runs in, so a job behaves as it did unchained.
  if (node.partitions !== up.partitions) return `it has ${node.partitions} partition${node.partitions === 1 ? "" : "s"} and "${up.name}" ${up.partitions}${node.spec.partitions === undefined ? ` (set partitions: ${up.partitions} to chain it)` : ""}`;
  // eddy: the producer's every output goes into this one function, so the fused actor has one
  // set of outputs (the chain's tail's) and no fan-out to keep apart.
  if (up.consumers.length !== 1) return `"${up.name}" has ${up.consumers.length} consumers`;
  if (up.spec.sink !== undefined || up.spec.upsert !== undefined) return `"${up.name}" is a sink`;
  // eddy: lookups are read for a batch before it runs, from the batch's records.
  if (node.spec.lookup !== undefined) return "it has a lookup (read per input batch)";
  return undefined;
}

/** The chains of `graph` (`chaining`: the pipeline's switch, `PipelineSpec.chaining`). */
export function planChains(graph: JobGraph, chaining = true): ChainPlan {
  const reasons = new Map<string, string>();
  /** Upstream → the one function chained onto it. */
  const next = new Map<string, string>();
  const chainedOnto = new Set<string>();
  for (const node of graph.functions) {
    if (node.isSource) continue;
    const why = chainBreak(graph, node, chaining);
    if (why !== undefined) {
      reasons.set(node.name, why);
      continue;
    }
    next.set(node.inputs[0]!.fn, node.name);
    chainedOnto.add(node.name);
  }
  const head = new Map<string, string>();
  const chains: string[][] = [];
  for (const node of graph.functions) {
    if (chainedOnto.has(node.name) || !next.has(node.name)) continue;
    const chain = [node.name];
    // The graph has no cycles, and each function has at most one chained successor.
    for (let n = next.get(node.name); n !== undefined; n = next.get(n)) chain.push(n);
    for (const member of chain) head.set(member, node.name);
    chains.push(chain);
  }
  return { chains, reasons, headOf: (fn) => head.get(fn) ?? fn };
}
