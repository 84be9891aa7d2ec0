/**
 * The size of V8's young generation for the processes that run actors (`eddy worker`, `eddy dev`).
 *
 * Node 24 lets the young generation grow to 64 MB (two 32 MB semi-spaces). In the latency
 * benchmark's worker that made a full (mark-compact) collection start about once a second,
 * however little the old generation held: V8 begins incremental marking once the old
 * generation's room before its limit is smaller than the young generation could promote, and a
 * worker's bounded heap growth (heap-growth.ts) leaves it ~10 MB of room. Each cycle marked for
 * ~140 ms of a core in the background and paused the event loop for 7–30 ms, and the events
 * waiting meanwhile made the at-least-once p99. With 16 MB semi-spaces the same run had one or two
 * full collections instead of nine or ten, scavenges of ~3 ms instead of ~9 ms (three times as
 * many), 18 % less worker CPU, and p99 27–42 ms against 43–60 ms (docs/benchmarks.md, session 19).
 *
 * The size can only be given when V8 starts — `v8.setFlagsFromString` after start changes
 * nothing — so whatever starts an actor process passes {@link youngGenerationFlags}: bin/eddy.mjs
 * (which runs the same check in plain JavaScript), `eddy scale`, the container image. A process
 * started with a size of its own (`--max-semi-space-size`, or `--max-heap-size`, which node
 * refuses next to both other limits) in its arguments or `NODE_OPTIONS` keeps it.
 */

/** Semi-space size in MB for actor processes (V8's default on a 64-bit machine: 32 MB, grown into). */
export const ACTOR_SEMI_SPACE_MB = 16;

/** The commands whose process runs actors. */
export const ACTOR_COMMANDS: ReadonlySet<string> = new Set(["worker", "dev"]);

/**
 * The node options that size the young generation of an actor process: empty when `execArgv` or
 * `nodeOptions` (the `NODE_OPTIONS` of the process to start) already size it.
 *
 *   spawn(process.execPath, [...youngGenerationFlags([], process.env.NODE_OPTIONS), cli, "worker"]);
 */
export function youngGenerationFlags(execArgv: readonly string[], nodeOptions: string | undefined): string[] {
  const given = [...execArgv, ...(nodeOptions ?? "").split(/\s+/)].some((a) => /^--max[-_](semi[-_]space|heap)[-_]size(=|$)/.test(a));
  return given ? [] : [`--max-semi-space-size=${ACTOR_SEMI_SPACE_MB}`];
}
