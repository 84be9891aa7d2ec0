/**
 * Changing a function's partition count in a savepoint (`eddy state repartition`).
 *
 * Keyed state is spread over partitions by `partitionOf(key, partitions)` — the same function the
 * runtime routes records with — so a new partition count moves every state entry and timer to the
 * partition its key hashes to under the new count. Unkeyed functions have no state or timers (the
 * runtime refuses both without a key selector), so every key here comes from a key selector,
 * the empty key included, and goes where records with that key will be routed.
 *
 * Watermarks cannot be split by key: every new partition gets the most conservative merge of all
 * old partitions' records, the minimum of everything, so that nothing that was on time becomes
 * late. Positions are dropped: a non-source partition's position is in its own input stream,
 * whose partitions change with the count, and the restore sets them. Source functions are refused:
 * their partitions are subjects of a user stream and their positions are per subject.
 * `retargetUpstream` fixes the other side: the watermark tables of the consumers of a
 * repartitioned function, which name its old partitions as producers.
 */
import { producerId } from "./job-graph.ts";
import { partitionOf } from "./hash.ts";
import { mapEntryKey, parseKvKey, stateKey, timerKey, versionsKey, watermarkKey } from "./kv-keys.ts";
import { CorruptSavepointError, type PartitionExport, type SavepointFunction } from "./savepoint.ts";
import type { WatermarkTrackerState } from "./watermarks.ts";
import { decodeValue, encodeValue } from "./wire.ts";
import { InputError, InvalidArgumentError } from "../errors.ts";

/** The function cannot be repartitioned this way; the message says why and what to do instead. */
export class UnsupportedRepartitionError extends InputError {
  override readonly name = "UnsupportedRepartitionError";
}

/** A partition's `_wm` record, as the actor stores it (`-Infinity` is `null`). */
interface StoredWatermark {
  readonly out: number | null;
  readonly op: number | null;
  readonly tracker?: WatermarkTrackerState;
  readonly generator?: unknown;
  readonly idle?: boolean;
  readonly ended?: boolean;
}

type Entry = readonly [string, Uint8Array];

/** The same limit the job graph puts on partition counts. */
const MAX_PARTITIONS = 4096;

/**
 * The exports of `fn` for `newPartitions` partitions (one per partition, entries sorted by key),
 * given the exports of all its `fn.partitions` old partitions: every state entry and timer in the
 * partition `partitionOf` gives its key, with its bytes unchanged; in each, the conservative merge
 * of the old watermarks; no positions. Throws `UnsupportedRepartitionError` for a source,
 * `CorruptSavepointError` for exports that are incomplete or inconsistent.
 */
export function repartition(fn: SavepointFunction, exports: readonly PartitionExport[], newPartitions: number): PartitionExport[] {
  if (fn.isSource) {
    throw new UnsupportedRepartitionError(
      `function "${fn.name}" reads ${fn.stream === undefined ? "a user stream" : `stream "${fn.stream}"`}: its partitions are the stream's subjects and its positions are per subject, so it cannot be repartitioned (change the stream's partitioning and start the source empty instead)`,
    );
  }
  if (!Number.isSafeInteger(newPartitions) || newPartitions < 1 || newPartitions > MAX_PARTITIONS) {
    throw new InvalidArgumentError(`partition count must be an integer in 1..${MAX_PARTITIONS}, got ${newPartitions}`);
  }
  const byPartition = new Map<number, PartitionExport>();
  for (const e of exports) {
    if (e.fn !== fn.name) throw new CorruptSavepointError(`export of function "${e.fn}" given to repartition "${fn.name}"`);
    if (!Number.isSafeInteger(e.partition) || e.partition < 0 || e.partition >= fn.partitions) {
      throw new CorruptSavepointError(`function "${fn.name}" has ${fn.partitions} partitions; got an export of partition ${e.partition}`);
    }
    if (byPartition.has(e.partition)) throw new CorruptSavepointError(`two exports of ${fn.name}/${e.partition}`);
    byPartition.set(e.partition, e);
  }
  // A missing partition would lose its keys silently.
  for (let p = 0; p < fn.partitions; p++) if (!byPartition.has(p)) throw new CorruptSavepointError(`the export of ${fn.name}/${p} is missing`);

  const out: Entry[][] = Array.from({ length: newPartitions }, () => []);
  const watermarks: Array<StoredWatermark | undefined> = [];
  const seen = new Set<string>();
  let versions: Uint8Array | undefined;
  for (let p = 0; p < fn.partitions; p++) {
    let wm: StoredWatermark | undefined;
    for (const [key, value] of byPartition.get(p)!.entries) {
      const parsed = parseKvKey(key);
      if (parsed === undefined || parsed.partition !== p) throw new CorruptSavepointError(`${fn.name}/${p}: unexpected key ${JSON.stringify(key)}`);
      let moved: string;
      let to: number;
      switch (parsed.kind) {
        case "state":
          to = partitionOf(parsed.key, newPartitions);
          moved = parsed.subkey === undefined ? stateKey(to, parsed.state, parsed.key) : mapEntryKey(to, parsed.state, parsed.key, parsed.subkey);
          break;
        case "timer":
          to = partitionOf(parsed.timer.key, newPartitions);
          moved = timerKey(to, parsed.timer);
          break;
        case "watermark":
          wm = decodeWatermark(value, `${fn.name}/${p}`);
          continue;
        case "versions":
          // The same declarations wrote every partition: one copy serves all new partitions.
          versions ??= value;
          continue;
        case "position":
        case "write-position":
        case "applied":
        case "published":
        // Bucket markers and their index name this partition's buckets; a restore finds the moved timers without them.
        case "timer-bucket":
        case "timer-layout":
        case "timer-index":
        case "timer-index-day":
        // A filter of stored keys belongs to its partition's keys: the restored partitions start without one.
        case "key-filter":
        case "key-filter-block":
          continue;
      }
      // Within one old partition keys are unique; across partitions the same key means the same
      // state lived twice, and one copy would silently overwrite the other.
      if (seen.has(moved)) throw new CorruptSavepointError(`${fn.name}: the state of ${JSON.stringify(key.slice(key.indexOf(".") + 1))} is in more than one partition`);
      seen.add(moved);
      out[to].push([moved, value]);
    }
    watermarks.push(wm);
  }

  const merged = mergeWatermarks(watermarks);
  const wmBytes = merged === undefined ? undefined : encodeValue(merged);
  return out.map((entries, p) => {
    if (wmBytes !== undefined) entries.push([watermarkKey(p), wmBytes]);
    if (versions !== undefined) entries.push([versionsKey(p), versions]);
    entries.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
    // Broadcast state is the function's, not a partition's: it stays with partition 0 (design note bq).
    const broadcast = p === 0 ? byPartition.get(0)!.broadcast : undefined;
    return { fn: fn.name, partition: p, entries, ...(broadcast === undefined ? {} : { broadcast }) };
  });
}

/**
 * A consumer partition's export after its upstream function `upstream` was repartitioned to
 * `newPartitions`: in its watermark table the old producers `upstream/<p>` are replaced by the new
 * ones, each at the minimum of the old ones' watermarks and idle only if all of them were — what
 * each new upstream partition's own merged watermark is. Without this, a producer that no longer
 * exists would hold the consumer's watermark back forever. Other entries are returned as they are.
 */
export function retargetUpstream(exp: PartitionExport, upstream: string, newPartitions: number): PartitionExport {
  if (!Number.isSafeInteger(newPartitions) || newPartitions < 1 || newPartitions > MAX_PARTITIONS) {
    throw new InvalidArgumentError(`partition count must be an integer in 1..${MAX_PARTITIONS}, got ${newPartitions}`);
  }
  const prefix = producerId(upstream, 0).slice(0, -1);
  const isUpstream = (id: string) => id.startsWith(prefix) && /^(0|[1-9][0-9]*)$/.test(id.slice(prefix.length));
  const entries = exp.entries.map((entry): Entry => {
    const parsed = parseKvKey(entry[0]);
    if (parsed?.kind !== "watermark") return entry;
    const wm = decodeWatermark(entry[1], `${exp.fn}/${exp.partition}`);
    if (wm.tracker === undefined) return entry;
    const old = wm.tracker.producers.filter((p) => isUpstream(p.id));
    if (old.length === 0) return entry;
    const watermark = minWm(old.map((p) => p.watermark));
    const idle = old.every((p) => p.idle);
    const producers = [
      ...wm.tracker.producers.filter((p) => !isUpstream(p.id)),
      ...Array.from({ length: newPartitions }, (_, q) => ({ id: producerId(upstream, q), watermark, idle })),
    ];
    return [entry[0], encodeValue({ ...wm, tracker: { combined: wm.tracker.combined, producers } })];
  });
  return { fn: exp.fn, partition: exp.partition, entries, ...(exp.broadcast === undefined ? {} : { broadcast: exp.broadcast }) };
}

/**
 * The most conservative watermark record that is true of every one of `records`: minimum
 * watermarks, per producer the minimum (a producer missing from a table counts as never heard
 * from), idle or ended only if all were. An old partition without a record had no watermark at
 * all, so neither does the merge. Generator state is dropped: only sources have one.
 */
function mergeWatermarks(records: ReadonlyArray<StoredWatermark | undefined>): StoredWatermark | undefined {
  if (records.length === 0 || records.some((r) => r === undefined)) return undefined;
  const all = records as readonly StoredWatermark[];
  let tracker: WatermarkTrackerState | undefined;
  const trackers = all.map((r) => r.tracker);
  if (trackers.every((t) => t !== undefined)) {
    const ids = [...new Set(trackers.flatMap((t) => t.producers.map((p) => p.id)))].sort();
    const producers = ids.map((id) => {
      const states = trackers.map((t) => t.producers.find((p) => p.id === id));
      return {
        id,
        watermark: states.some((s) => s === undefined) ? null : minWm(states.map((s) => s!.watermark)),
        idle: states.every((s) => s?.idle === true),
      };
    });
    tracker = { combined: minWm(trackers.map((t) => t.combined)), producers };
  }
  // Some partitions with a table and some without cannot be: leaving the table out starts every
  // producer at -Infinity, which is the conservative reading.
  return {
    out: minWm(all.map((r) => r.out)),
    op: minWm(all.map((r) => r.op)),
    ...(tracker === undefined ? {} : { tracker }),
    idle: all.every((r) => r.idle === true),
    ended: all.every((r) => r.ended === true),
  };
}

/** Minimum of stored watermarks, where `null` (or a missing one) is `-Infinity`; `null` for none. */
function minWm(wms: ReadonlyArray<number | null | undefined>): number | null {
  if (wms.length === 0) return null;
  let min = Infinity;
  for (const w of wms) {
    if (w === null || w === undefined) return null;
    if (w < min) min = w;
  }
  return min;
}

function decodeWatermark(value: Uint8Array, where: string): StoredWatermark {
  let w: unknown;
  try {
    w = decodeValue(value);
  } catch (e) {
    throw new CorruptSavepointError(`${where}: undecodable watermark record: ${(e as Error).message}`);
  }
  const r = w as Partial<StoredWatermark> | null;
  // The actor reads a missing watermark as -Infinity, like null.
  const isWm = (x: unknown) => x === null || x === undefined || (typeof x === "number" && !Number.isNaN(x));
  const trackerOk = (t: unknown): boolean => {
    if (t === undefined) return true;
    const tr = t as Partial<WatermarkTrackerState> | null;
    return (
      tr !== null &&
      typeof tr === "object" &&
      isWm(tr.combined) &&
      Array.isArray(tr.producers) &&
      tr.producers.every((p) => p !== null && typeof p === "object" && typeof p.id === "string" && isWm(p.watermark) && typeof p.idle === "boolean")
    );
  };
  if (r === null || typeof r !== "object" || !isWm(r.out) || !isWm(r.op) || !trackerOk(r.tracker)) {
    throw new CorruptSavepointError(`${where}: not a watermark record`);
  }
  return r as StoredWatermark;
}
