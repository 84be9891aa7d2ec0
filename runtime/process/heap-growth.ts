/**
 * How far V8 lets a worker's heap grow past what its last full garbage collection kept.
 *
 * A worker's live heap is small next to what passes through it: with a 16 MiB state cache and
 * 100 000 keys, a heap snapshot holds about 60 MB, yet the process peaked above 550 MB. V8 sizes
 * the old generation from its allocation rate and, with a multi-GB default limit, lets it grow to
 * several times the live data between full collections; records, batches, KV replies and
 * snapshot encodings promoted out of the young generation are garbage there. So the peak RSS
 * followed the throughput, not the state cache budget (docs/design/bk-stored-keys-and-memory.md).
 * Bounding the growth factor makes full collections come sooner, and the heap stay near its live
 * size, at some GC time. Unlike `--max-old-space-size` it is no hard limit: a worker whose live
 * data exceed any figure keeps running instead of dying out of memory.
 *
 * `--heap-growing-percent` is read by V8 at each full collection, so it takes effect when set at
 * runtime; one given on the command line (`node --heap-growing-percent=N`) is left alone.
 */
import { setFlagsFromString } from "node:v8";

/** After a full GC the old generation may grow by this much before the next one (V8 picks 10–300 % by itself). */
export const WORKER_HEAP_GROWING_PERCENT = 25;

/** The V8 flag a worker sets, or undefined when the process was started with one. */
export function heapGrowthFlag(execArgv: readonly string[], percent = WORKER_HEAP_GROWING_PERCENT): string | undefined {
  if (execArgv.some((a) => /^--heap[-_]growing[-_]percent(=|$)/.test(a))) return undefined;
  return `--heap-growing-percent=${percent}`;
}

/** Applies `heapGrowthFlag` to this process. */
export function limitHeapGrowth(): void {
  const flag = heapGrowthFlag(process.execArgv);
  if (flag !== undefined) setFlagsFromString(flag);
}
