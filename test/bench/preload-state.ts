/**
 * Fills a keyed function's state bucket before its job starts, as if the job had processed a
 * load that created `keys` keys and materialized it: the `recovery` and `state` benchmarks need
 * millions of stored keys, and having the job count them (records through the source, the
 * counters, checkpoints and materialization) takes 20–80 minutes at 10 M keys on the shared
 * 2-core machine (docs/benchmarks.md), while writing the same entries with bulk KV publishes
 * takes a few minutes.
 *
 * "The same entries" is what makes a benchmark on this state honest: a restore and the state cache
 * must meet exactly what a job-processed load leaves in KV, including what the actor trusts
 * without reading the entries — the filter of stored keys that answers "absent" for a new key
 * (design note bk), the timer layout and the timers' index a restore reads instead of listing
 * (notes bi, bs), and the record of schema versions (`_ver`). Everything is built with the
 * runtime's own functions (`stateKey`, `encodeValue`, `partitionOf`, `StoredKeyFilter`,
 * `TimerMarkerIndex`) and written through `JetStreamTransport.writeState`, the call
 * materialization writes with. Left out is what only a running job has: `_applied`, positions and
 * watermarks (a job started on the bucket begins at checkpoint 0 and at the start of its streams).
 * test/integration/preload-state.test.ts compares a preloaded bucket with the bucket a job's own
 * load leaves, and runs a counter on a preloaded one.
 */
import type { NatsConnection } from "@nats-io/transport-node";
import { buildJobGraph } from "../../runtime/core/job-graph.ts";
import { partitionOf } from "../../runtime/core/hash.ts";
import { keyFilterBlockKey, keyFilterKey, stateKey, timerLayoutKey, versionsKey } from "../../runtime/core/kv-keys.ts";
import { stateBucket } from "../../runtime/core/naming.ts";
import { StoredKeyFilter } from "../../runtime/core/stored-keys.ts";
import { TimerMarkerIndex } from "../../runtime/core/timer-index.ts";
import { encodeValue } from "../../runtime/core/wire.ts";
import type { PipelineSpec } from "../../runtime/sdk/function.ts";
import { ensureJobTopology } from "../../runtime/nats/topology.ts";
import { JetStreamTransport } from "../../runtime/nats/transport.ts";

/** How a benchmark's keys get their state: written into KV before the job starts, or counted by the job from published records. */
export type LoadMode = "preload" | "job";

/** The load mode when none is asked for: preloading from 1 M keys, where the job's own load takes 20–80 minutes here. */
export const defaultLoadMode = (keys: number): LoadMode => (keys >= 1_000_000 ? "preload" : "job");

export interface PreloadOptions {
  /** The job's pipeline: its graph names the bucket, the partitions and the declared states. */
  readonly pipeline: PipelineSpec;
  /** The keyed function whose state is written. */
  readonly fn: string;
  /** The value state (declared by `fn`) each key gets a value of. */
  readonly state: string;
  readonly keys: number;
  /** The key of the `i`-th entry (0 ≤ i < keys); keys must be distinct. */
  readonly keyOf: (i: number) => string;
  /** Its value, as the function would have set it. */
  readonly valueOf: (i: number) => unknown;
  readonly log?: (line: string) => void;
}

export interface PreloadResult {
  readonly entries: number;
  readonly seconds: number;
}

/** Entries built and written per `writeState` call: bounded memory at any number of keys. */
const CHUNK = 100_000;

/**
 * Creates the job's streams and buckets (as a deployment does) and writes `keys` entries of
 * `state` of `fn`, then, per partition, the filter of stored keys covering them, the versions
 * record, the timer layout and an empty timers' index. The source streams must exist. Meant for a
 * job that has never run: it neither reads nor deletes what the bucket holds.
 */
export async function preloadKeyedState(nc: NatsConnection, opts: PreloadOptions): Promise<PreloadResult> {
  const started = performance.now();
  const graph = buildJobGraph(opts.pipeline);
  const node = graph.functions.find((f) => f.name === opts.fn);
  if (node === undefined) throw new Error(`pipeline "${graph.job}" has no function "${opts.fn}"`);
  if (node.spec.key === undefined) throw new Error(`function "${opts.fn}" is not keyed`);
  const declarations = (node.spec.state ?? {}) as Record<string, { readonly version?: number; readonly kind?: string }>;
  if (declarations[opts.state] === undefined) throw new Error(`function "${opts.fn}" declares no state "${opts.state}"`);
  await ensureJobTopology(nc, graph);
  const bucket = stateBucket(graph.job, node.name);
  const transport = new JetStreamTransport(nc);
  const filters = Array.from({ length: node.partitions }, () => StoredKeyFilter.empty());
  for (let i = 0; i < opts.keys; ) {
    const end = Math.min(opts.keys, i + CHUNK);
    const puts: Array<{ key: string; value: Uint8Array }> = [];
    for (; i < end; i++) {
      const key = opts.keyOf(i);
      const p = partitionOf(key, node.partitions);
      puts.push({ key: stateKey(p, opts.state, key), value: encodeValue(opts.valueOf(i)) });
      filters[p]!.add(key);
    }
    await transport.writeState(bucket, puts, []);
    if (i % 1_000_000 === 0 || i === opts.keys) opts.log?.(`preloaded ${i} of ${opts.keys} keys (${((performance.now() - started) / 1000).toFixed(1)} s)`);
  }
  // After the entries, as a snapshot's delta puts them and a round writes them: a bucket whose
  // filter is there has every entry the filter covers.
  const versions: Record<string, number> = {};
  for (const [name, decl] of Object.entries(declarations)) versions[name] = decl.version ?? 1;
  const meta: Array<{ key: string; value: Uint8Array }> = [];
  filters.forEach((filter, p) => {
    const { header, blocks } = filter.takeChanges();
    for (const [block, bytes] of blocks) meta.push({ key: keyFilterBlockKey(p, block), value: encodeValue(bytes) });
    if (header !== undefined) meta.push({ key: keyFilterKey(p), value: encodeValue(header) });
    meta.push({ key: versionsKey(p), value: encodeValue(versions) });
    meta.push({ key: timerLayoutKey(p), value: encodeValue(1) });
    for (const [key, value] of new TimerMarkerIndex().takeWrites(p).puts) meta.push({ key, value });
  });
  await transport.writeState(bucket, meta, []);
  return { entries: opts.keys, seconds: Math.round((performance.now() - started) / 100) / 10 };
}
