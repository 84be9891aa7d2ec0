/**
 * What a checkpoint that timed out means (design note ci).
 *
 * A barrier travels in-band, behind whatever is already in each actor's input. When a function is
 * slower than its source, or a recovery re-reads a backlog, the barrier reaches it only after that
 * backlog is processed, which can take longer than the checkpoint timeout. Counting such a timeout
 * as a failure recovered the job after three of them, and the recovery re-read the same backlog: a
 * restart loop that discarded all progress. So a timeout is judged by what the actors that did not
 * ack were doing: if each of them read input since the trigger (its worker's heartbeat says so),
 * the barriers are behind a backlog — the checkpoint is aborted without counting as a failure and
 * the next one waits twice as long, up to a bound (Flink's checkpoint timeout, 10 min by default).
 * A missing actor that made no progress is still waiting for its barrier if an actor of a function
 * it reads is missing too (the barrier has not been forwarded to it: a sink idle behind a slow
 * function), or waiting for its turn if a missing actor that is processing runs on the same worker
 * (a worker is one event loop: an idle source's trigger and ack wait while a busy neighbour works
 * through its backlog), or if its worker wrote no heartbeat since the trigger but still has one
 * (its event loop was busy the whole time: a loop that never comes back loses its heartbeat within
 * 5 s and is recovered as a dead worker). One that made no progress otherwise, or whose progress
 * is not known (no heartbeat, or one from an older worker), is hung as far as anyone can tell:
 * that timeout counts as a failure, as does one at the bound.
 */
import { actorFunction as functionOf, type JobSpecRecord, type WorkerHeartbeat } from "./protocol.ts";

/**
 * Per actor (`<fn>/<partition>`), its progress counter (`count`) as its owner's heartbeat reports
 * it, and that heartbeat's number (`beat`: it grows with every heartbeat the worker writes).
 */
export type ActorProgress = ReadonlyMap<string, { readonly count: number; readonly beat: number }>;

/**
 * The progress counters of `actors` in `generation`, each taken from the heartbeat of the worker
 * that owns it: an actor whose owner reports nothing for that generation has none.
 */
export function progressOf(
  actors: Iterable<string>,
  owners: Readonly<Record<string, string>>,
  heartbeats: ReadonlyMap<string, WorkerHeartbeat>,
  generation: number,
): Map<string, { count: number; beat: number }> {
  const out = new Map<string, { count: number; beat: number }>();
  for (const actor of actors) {
    if (!Object.hasOwn(owners, actor)) continue;
    const p = heartbeats.get(owners[actor]!)?.progress;
    if (p === undefined || p.generation !== generation || !Object.hasOwn(p.actors, actor)) continue;
    out.set(actor, { count: p.actors[actor]!, beat: p.beat });
  }
  return out;
}

/** What a timed-out checkpoint knows. */
export interface TimedOut {
  /** Actors whose ack is missing. */
  readonly missing: readonly string[];
  /** Their progress when the checkpoint was triggered (the last heartbeats read before it). */
  readonly atTrigger: ActorProgress;
  /** Their progress at the timeout. */
  readonly atTimeout: ActorProgress;
  /** How long this checkpoint waited. */
  readonly timeoutMs: number;
  /** The longest a checkpoint may wait (the next one never waits longer). */
  readonly maxTimeoutMs: number;
  /**
   * Per function, the functions it reads (`upstreamOf`); a function not in it (a spec from before
   * the job graph was recorded) is taken to read nothing.
   */
  readonly upstream: ReadonlyMap<string, readonly string[]>;
  /** The worker each actor runs on (the assignment's owners). */
  readonly owners: Readonly<Record<string, string>>;
}

/** The verdict on a timed-out checkpoint. */
export type TimeoutVerdict =
  /** Every missing actor is reading its input: abort without a failure; the next checkpoint waits `nextTimeoutMs`. */
  | { readonly kind: "behind-backlog"; readonly processing: readonly string[]; readonly nextTimeoutMs: number }
  /** A missing actor made no progress (`stalled`), or the checkpoint waited as long as any may: a failure. */
  | { readonly kind: "failure"; readonly stalled: readonly string[] };


/** Per function of a spec, the functions it reads (absent inputs: none). */
export function upstreamOf(spec: JobSpecRecord): Map<string, string[]> {
  return new Map(spec.functions.map((f) => [f.name, (f.inputs ?? []).map((i) => i.fn)]));
}

/** Judges a timed-out checkpoint (see the module's comment). */
export function judgeTimeout(t: TimedOut): TimeoutVerdict {
  const missingFns = new Set(t.missing.map(functionOf));
  const moved = (actor: string) => {
    const before = t.atTrigger.get(actor);
    const after = t.atTimeout.get(actor);
    return before !== undefined && after !== undefined && after.count > before.count;
  };
  // The worker wrote no heartbeat since the trigger, yet its last one has not expired.
  const silent = (actor: string) => {
    const before = t.atTrigger.get(actor);
    const after = t.atTimeout.get(actor);
    return before !== undefined && after !== undefined && after.beat === before.beat;
  };
  const processing = t.missing.filter(moved);
  const ownerOf = (actor: string) => (Object.hasOwn(t.owners, actor) ? t.owners[actor] : undefined);
  const busyWorkers = new Set(processing.map(ownerOf));
  const waiting = (actor: string) => {
    const owner = ownerOf(actor);
    return (t.upstream.get(functionOf(actor)) ?? []).some((fn) => missingFns.has(fn)) || (owner !== undefined && busyWorkers.has(owner)) || silent(actor);
  };
  const stalled = t.missing.filter((actor) => !moved(actor) && !waiting(actor));
  if (stalled.length > 0 || t.missing.length === 0 || t.timeoutMs >= t.maxTimeoutMs) return { kind: "failure", stalled };
  return { kind: "behind-backlog", processing: processing.length > 0 ? processing : [...t.missing], nextTimeoutMs: Math.min(t.maxTimeoutMs, 2 * t.timeoutMs) };
}

/** The progress counter an actor reports: monotonic while it runs, moved by every message it handles. */
export const progressCounter = (s: { readonly recordsIn: number; readonly skipped: number; readonly position: number }): number => s.recordsIn + s.skipped + s.position;
