/**
 * Continuous upload of state changes between barriers (design note bh; Flink's changelog state
 * backend, FLIP-158): when to cut the changes taken since the last upload into a segment, how a
 * segment object is named and referenced by a snapshot's manifest, which segments a restore reads,
 * and which ones the supervisor may delete. The delta log (delta-log.ts) keeps the segments since
 * the last commit; the actor uploads them and writes the manifest at the barrier; these are the
 * decisions around it, pure so they are tested with plain data.
 *
 * Why: a snapshot that encodes and uploads every change since the last commit at the barrier
 * takes time proportional to those changes, and because deltas are cumulative (design note l) a
 * checkpoint that failed for its size makes the next one larger still. With segments a barrier
 * uploads only what changed since the last cut, and a manifest naming the segments since the last
 * commit — the ones a failed attempt uploaded are named again, not uploaded again.
 */

/** When an actor cuts and uploads a segment, and how many uploads may run at once. */
export interface SegmentPolicy {
  /**
   * Cut once this many changed keys wait (state keys changed in memory and changes taken into the
   * log since the last cut). `Infinity` turns continuous upload off: a barrier uploads everything.
   */
  readonly entries: number;
  /** Segment uploads in flight per actor; past it the actor stops reading until one is stored. */
  readonly maxInFlight: number;
}

/**
 * 5 000 changed keys of ~60-byte values make a segment of a few hundred KB: encoded in
 * milliseconds and uploaded in a fraction of a second, and the remainder a barrier encodes while
 * the actor handles nothing else is at most that. Fewer keys per segment would mean more objects
 * and longer acks (a million changed keys over 4 actors are 200 segments at this size).
 */
export const DEFAULT_SEGMENT_POLICY: SegmentPolicy = { entries: 5_000, maxInFlight: 4 };

/** Whether the changes waiting (`changed` keys) make a segment now. */
export function segmentDue(changed: number, policy: SegmentPolicy): boolean {
  return changed > 0 && changed >= policy.entries;
}

/** Whether reading must wait for an upload: `inFlight` uploads run and another would exceed the bound. */
export function uploadsFull(inFlight: number, policy: SegmentPolicy): boolean {
  return inFlight >= Math.max(1, policy.maxInFlight);
}

/** A segment as a manifest references it: object name, size in bytes, epoch. */
export type SegmentRef = readonly [name: string, bytes: number, epoch: number];

/** Who cut a segment: one actor run, so two runs (a zombie and its successor) never share a name. */
export interface SegmentWriter {
  readonly job: string;
  readonly fn: string;
  readonly partition: number;
  /** Unique per actor run (generation, incarnation, random part). */
  readonly run: string;
}

const SEGMENTS = "seg";
const RUN = /^[A-Za-z0-9._-]+$/;

/** Object name of segment `seq` of epoch `epoch`: `<job>/seg/<epoch>/<fn>/<partition>/<run>.<seq>`. */
export function segmentObject(w: SegmentWriter, epoch: number, seq: number): string {
  return `${w.job}/${SEGMENTS}/${epoch}/${w.fn}/${w.partition}/${w.run}.${seq}`;
}

/** Prefix of every segment object of `job` (inside the job's checkpoint object store). */
export const segmentObjectPrefix = (job: string) => `${job}/${SEGMENTS}/`;

/** The epoch and actor of a segment object of `job`, or undefined for any other name. */
export function parseSegmentObject(job: string, name: string): { readonly epoch: number; readonly fn: string; readonly partition: number } | undefined {
  const prefix = segmentObjectPrefix(job);
  if (!name.startsWith(prefix)) return undefined;
  const parts = name.slice(prefix.length).split("/");
  if (parts.length !== 4) return undefined;
  const [e, fn, p, tail] = parts as [string, string, string, string];
  const epoch = Number(e);
  const partition = Number(p);
  if (!/^\d+$/.test(e) || !Number.isSafeInteger(epoch) || epoch < 1) return undefined;
  if (!/^\d+$/.test(p) || !Number.isSafeInteger(partition) || fn === "" || !RUN.test(tail)) return undefined;
  return { epoch, fn, partition };
}

/**
 * Why a manifest's (or an ack's) segment references are not what actor `fn`/`partition` of `job`
 * writes, or undefined if they are: each must name a segment of that actor, with a size, at most
 * once. Acks and manifests are read from the network and the object store: validated like any input.
 */
export function checkSegmentRefs(job: string, fn: string, partition: number, refs: unknown): string | undefined {
  if (!Array.isArray(refs)) return "segments: expected an array";
  const seen = new Set<string>();
  for (let i = 0; i < refs.length; i++) {
    const r: unknown = refs[i];
    if (!Array.isArray(r) || r.length !== 3) return `segments[${i}]: expected [name, bytes, epoch]`;
    const [name, bytes, epoch] = r as unknown[];
    if (typeof name !== "string") return `segments[${i}]: expected a name`;
    const parsed = parseSegmentObject(job, name);
    if (parsed === undefined || parsed.fn !== fn || parsed.partition !== partition) return `segments[${i}]: ${JSON.stringify(name.slice(0, 120))} is no segment of ${fn}/${partition}`;
    if (parsed.epoch !== epoch) return `segments[${i}]: epoch ${String(epoch)} differs from its name's`;
    if (!Number.isSafeInteger(bytes) || (bytes as number) < 1) return `segments[${i}]: expected a positive size`;
    if (seen.has(name)) return `segments[${i}]: ${name} named twice`;
    seen.add(name);
  }
  return undefined;
}

/**
 * The segments a restore reads from a committed manifest when KV has this partition's state as of
 * checkpoint `applied`: those of epochs after it, in order. A segment of an earlier epoch holds
 * changes KV already has (every change up to `applied`, and later ones are in later segments), and
 * the supervisor may have deleted it (`planSegmentCleanup`).
 */
export function segmentsToRead(refs: readonly SegmentRef[], applied: number): SegmentRef[] {
  return refs.filter((r) => r[2] > applied);
}

/**
 * Segment objects the supervisor may delete: those whose epoch every actor of the job has applied
 * (`minApplied`: a restore skips them, `segmentsToRead`) and that are older than every checkpoint
 * kept for inspection (`oldestKept`). Nothing while `minApplied` is unknown. A segment no commit
 * references (cut by a run that failed) goes the same way once KV is past its epoch.
 */
export function planSegmentCleanup(job: string, names: readonly string[], minApplied: number | undefined, oldestKept: number): string[] {
  if (minApplied === undefined) return [];
  return names.filter((n) => {
    const s = parseSegmentObject(job, n);
    return s !== undefined && s.epoch <= minApplied && s.epoch < oldestKept;
  });
}
