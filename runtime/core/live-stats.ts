/**
 * Live figures of a job's actors, as workers answer them over NATS for the console (`eddy ui`):
 * each worker replies to a request on `eddy.<job>.ctl.stats` with the counters of the actors it
 * runs, and the console turns two samples into rates. Prometheus has the same numbers per worker
 * process; this is how one process sees the whole job without scraping every worker.
 *
 * A reply comes from another process and is decoded as untrusted input: anything malformed is
 * refused with a reason and left out, never allowed to break the page. Pure: time is an argument.
 */
import { InputError } from "../errors.ts";

/** One actor's figures in a reply. Counters are since the actor started (they reset on restart). */
export interface LiveActorStats {
  readonly fn: string;
  readonly partition: number;
  readonly recordsIn: number;
  readonly recordsOut: number;
  readonly deadLettered: number;
  /** Input messages waiting after the last one read. */
  readonly lag: number;
  /** Event-time watermark (epoch ms); null before the first, "end" at the end of input. */
  readonly watermark: number | null | "end";
  readonly applied: number;
  readonly heldBytes: number;
  readonly cacheHits: number;
  readonly cacheMisses: number;
  readonly cacheBytes: number;
  readonly materializationLagCheckpoints: number;
  /** Milliseconds of the last second busy / waiting for downstream / waiting for input. */
  readonly busyMsPerSecond: number;
  readonly backpressuredMsPerSecond: number;
  readonly idleMsPerSecond: number;
  /**
   * What the actor's read loop awaits now, e.g. `waiting for a commit of held sink output`: where
   * a backpressured actor's time goes. Null from workers before it.
   */
  readonly step: string | null;
}

/** The longest step a reply may name (the worker's own are far shorter). */
export const MAX_STEP_CHARS = 200;

/** A worker's answer to a stats request. */
export interface WorkerStatsReply {
  readonly worker: string;
  /** When the worker sampled (its clock, epoch ms). */
  readonly at: number;
  readonly actors: readonly LiveActorStats[];
}

const COUNTERS = ["recordsIn", "recordsOut", "deadLettered", "lag", "applied", "heldBytes", "cacheHits", "cacheMisses", "cacheBytes", "materializationLagCheckpoints", "busyMsPerSecond", "backpressuredMsPerSecond", "idleMsPerSecond"] as const;

/** The figures of a stats reply from what an actor keeps (`ActorStats` has these fields and more). */
export function liveActorStats(s: { readonly fn: string; readonly partition: number; readonly watermark: number } & Record<(typeof COUNTERS)[number], number>, step: string | null): LiveActorStats {
  const out: Record<string, unknown> = { fn: s.fn, partition: s.partition, watermark: Number.isFinite(s.watermark) ? s.watermark : s.watermark > 0 ? "end" : null, step };
  for (const k of COUNTERS) out[k] = s[k];
  return out as unknown as LiveActorStats;
}

/** A reply that is not a worker's stats; the message says what is wrong. */
export class BadStatsReplyError extends InputError {
  override readonly name = "BadStatsReplyError";
}

const isCount = (x: unknown): x is number => typeof x === "number" && Number.isFinite(x) && x >= 0;

/** Decodes and checks a reply body (JSON). Throws `BadStatsReplyError`. */
export function decodeStatsReply(body: string): WorkerStatsReply {
  let v: unknown;
  try {
    v = JSON.parse(body);
  } catch {
    throw new BadStatsReplyError("not JSON");
  }
  if (v === null || typeof v !== "object") throw new BadStatsReplyError("not an object");
  const r = v as Record<string, unknown>;
  if (typeof r.worker !== "string" || r.worker.length === 0 || r.worker.length > 200) throw new BadStatsReplyError("worker: not a name");
  if (!isCount(r.at)) throw new BadStatsReplyError("at: not a time");
  if (!Array.isArray(r.actors) || r.actors.length > 100_000) throw new BadStatsReplyError("actors: not a list");
  const actors = r.actors.map((a, i) => {
    if (a === null || typeof a !== "object") throw new BadStatsReplyError(`actors[${i}]: not an object`);
    const x = a as Record<string, unknown>;
    if (typeof x.fn !== "string" || x.fn.length === 0 || x.fn.length > 200) throw new BadStatsReplyError(`actors[${i}].fn: not a function name`);
    if (!Number.isSafeInteger(x.partition) || (x.partition as number) < 0) throw new BadStatsReplyError(`actors[${i}].partition: not a partition`);
    if (!(x.watermark === null || x.watermark === "end" || (typeof x.watermark === "number" && Number.isFinite(x.watermark)))) throw new BadStatsReplyError(`actors[${i}].watermark: not a watermark`);
    for (const k of COUNTERS) if (!isCount(x[k])) throw new BadStatsReplyError(`actors[${i}].${k}: not a count`);
    const step = x.step ?? null;
    if (step !== null && (typeof step !== "string" || step.length === 0 || step.length > MAX_STEP_CHARS)) throw new BadStatsReplyError(`actors[${i}].step: not a step`);
    return liveActorStats(x as never, step);
  });
  return { worker: r.worker, at: r.at, actors };
}

/** Per-second rates of an actor between two samples, and its activity split now. */
export interface ActorRates {
  readonly recordsInPerSecond: number;
  readonly recordsOutPerSecond: number;
  /** Cache hits over lookups since the previous sample; null without lookups. */
  readonly cacheHitRate: number | null;
}

/**
 * Rates between `before` and `after` of the same actor over `ms`. A counter that went down means
 * the actor restarted: the rate counts from zero then, as Prometheus' `rate()` does.
 */
export function actorRates(before: LiveActorStats | undefined, after: LiveActorStats, ms: number): ActorRates {
  const delta = (k: "recordsIn" | "recordsOut" | "cacheHits" | "cacheMisses") => {
    const b = before?.[k] ?? 0;
    return after[k] >= b ? after[k] - b : after[k];
  };
  const perSecond = (n: number) => (ms > 0 ? Math.round((n * 1000) / ms) : 0);
  const lookups = delta("cacheHits") + delta("cacheMisses");
  return {
    recordsInPerSecond: before === undefined ? 0 : perSecond(delta("recordsIn")),
    recordsOutPerSecond: before === undefined ? 0 : perSecond(delta("recordsOut")),
    cacheHitRate: lookups === 0 ? null : delta("cacheHits") / lookups,
  };
}

/** How the console colours an actor or a function: Flink's thresholds on the busy and backpressured shares. */
export type Pressure = "idle" | "ok" | "busy" | "backpressured";

/** Backpressured when over half of the last second waited for downstream; busy over half handling input. */
export function pressureOf(s: Pick<LiveActorStats, "busyMsPerSecond" | "backpressuredMsPerSecond">): Pressure {
  if (s.backpressuredMsPerSecond > 500) return "backpressured";
  if (s.busyMsPerSecond > 500) return "busy";
  if (s.busyMsPerSecond + s.backpressuredMsPerSecond < 10) return "idle";
  return "ok";
}
