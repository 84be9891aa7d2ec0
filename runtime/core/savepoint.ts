/**
 * The savepoint format: a job's committed state at one checkpoint, exported so that it can
 * outlive the job's buckets — to restore it into another deployment, after a schema migration or
 * into a different partition count.
 *
 * A savepoint is self-describing: a manifest (JSON, so people can read it with `nats obj get`)
 * says which job and checkpoint it comes from and, per function, its partitions and the kind and
 * schema version of every state; next to it, one object per (function, partition) holds that
 * partition's entries in the KV layout of `kv-keys.ts` (state, timers, `_wm`, `_pos`; never
 * `_applied`, which is bookkeeping of one bucket), values as stored (msgpack). Keeping the KV
 * layout means restoring is writing the entries back, and tools that read state read savepoints.
 * Decoding checks everything it relies on, because a savepoint may be old, foreign or damaged,
 * and a half-understood one must never be restored.
 */
import { parseBroadcastKey, parseKvKey } from "./kv-keys.ts";
import { decodeValue, encodeValue } from "./wire.ts";
import { FatalError, InvalidArgumentError } from "../errors.ts";

/** One function as it was when the savepoint was taken. */
export interface SavepointFunction {
  readonly name: string;
  readonly partitions: number;
  /** True when the function read a user stream (its `_pos` are sequences of that stream). */
  readonly isSource: boolean;
  /** The user stream a source read. */
  readonly stream?: string;
  /** Declared state, by name: kind and schema version of the stored values. */
  readonly state: Readonly<Record<string, { readonly kind: string; readonly version: number }>>;
}

/** What a savepoint holds and where it comes from. */
export interface SavepointManifest {
  readonly format: 1;
  readonly id: string;
  readonly job: string;
  /** The committed checkpoint whose state the savepoint holds. */
  readonly checkpoint: number;
  readonly generation: number;
  /** Milliseconds since the epoch. */
  readonly createdAt: number;
  /** Deployment version that was running, when the job was deployed. */
  readonly codeVersion?: number;
  readonly functions: readonly SavepointFunction[];
}

/** All KV-layout entries of one (function, partition) as of the checkpoint: state, timers, _wm, _pos (never _applied). */
export interface PartitionExport {
  readonly fn: string;
  readonly partition: number;
  readonly entries: ReadonlyArray<readonly [key: string, value: Uint8Array]>;
  /**
   * Partition 0 of a function with broadcast state only: that state, once for the function, as
   * `_bc.<state>.<b64url(subkey)>` entries (core/broadcast.ts, design note bq).
   */
  readonly broadcast?: ReadonlyArray<readonly [key: string, value: Uint8Array]>;
}

/** The savepoint (or a part of it) cannot be used: it is damaged, of another format or inconsistent. */
export class CorruptSavepointError extends FatalError {
  override readonly name = "CorruptSavepointError";
}

/** Job, function and savepoint names: one NATS subject token, one object-name segment. */
const TOKEN = /^[A-Za-z0-9_-]+$/;
const STATE_KINDS: ReadonlySet<string> = new Set(["value", "map", "list", "reducing"]);

const isNat = (x: unknown): x is number => typeof x === "number" && Number.isSafeInteger(x) && x >= 0;

function requireToken(what: string, s: string): void {
  if (typeof s !== "string" || !TOKEN.test(s)) throw new InvalidArgumentError(`${what} ${JSON.stringify(s)} must match [A-Za-z0-9_-]+`);
}

/** Whether `id` can name a savepoint (letters, digits, `_` and `-`: a subject token and object-name segment). */
export function isValidSavepointId(id: string): boolean {
  return typeof id === "string" && TOKEN.test(id);
}

/**
 * A new savepoint id, e.g. `sp-20250601T120000123Z-42` for checkpoint 42: the UTC creation time
 * in fixed width first, so ids sort by creation as strings (checkpoint numbers restart in a job
 * restored from a savepoint, times do not), then the checkpoint for people.
 */
export function newSavepointId(checkpoint: number, now: number): string {
  if (!isNat(checkpoint)) throw new InvalidArgumentError(`checkpoint must be a whole number >= 0, got ${checkpoint}`);
  if (!Number.isFinite(now) || now < 0 || now >= Date.UTC(10000, 0, 1)) throw new InvalidArgumentError(`time ${now} is not a date between years 1970 and 9999`);
  const t = new Date(Math.floor(now)).toISOString(); // 2025-06-01T12:00:00.123Z
  return `sp-${t.slice(0, 10).replaceAll("-", "")}T${t.slice(11, 19).replaceAll(":", "")}${t.slice(20, 23)}Z-${checkpoint}`;
}

/** Object-name prefix of every object of savepoint `id` of `job` (for listing and deleting it). */
export function savepointPrefix(job: string, id: string): string {
  requireToken("job", job);
  requireToken("savepoint id", id);
  return `${job}/${id}/`;
}

/** Object name of a savepoint's manifest. */
export function savepointManifestName(job: string, id: string): string {
  // Three segments, where partition objects have four: no function name can collide with it.
  return `${savepointPrefix(job, id)}manifest`;
}

/** Object name of the export of partition `p` of function `fn` in savepoint `id` of `job`. */
export function savepointObjectName(job: string, id: string, fn: string, p: number): string {
  requireToken("function", fn);
  if (!isNat(p)) throw new InvalidArgumentError(`partition must be a whole number >= 0, got ${p}`);
  return `${savepointPrefix(job, id)}${fn}/${p}`;
}

// --- manifest -------------------------------------------------------------------------------------

const encoder = new TextEncoder();
const decoder = new TextDecoder("utf-8", { fatal: true });

/** The manifest as stored: JSON. */
export function encodeManifest(m: SavepointManifest): Uint8Array {
  const problem = manifestProblem(m);
  if (problem !== undefined) throw new InvalidArgumentError(`refusing to write an invalid savepoint manifest: ${problem}`);
  return encoder.encode(JSON.stringify(m, null, 2));
}

/** Reads a stored manifest; throws `CorruptSavepointError` unless it is a valid format-1 manifest. */
export function decodeManifest(data: Uint8Array): SavepointManifest {
  let m: unknown;
  try {
    m = JSON.parse(decoder.decode(data));
  } catch (e) {
    throw new CorruptSavepointError(`savepoint manifest is not JSON: ${(e as Error).message}`);
  }
  const problem = manifestProblem(m);
  if (problem !== undefined) throw new CorruptSavepointError(`invalid savepoint manifest: ${problem}`);
  return m as SavepointManifest;
}

function manifestProblem(m: unknown): string | undefined {
  if (m === null || typeof m !== "object") return "not an object";
  const r = m as Record<string, unknown>;
  if (r.format !== 1) return `unknown format ${JSON.stringify(r.format)} (this eddy reads format 1)`;
  if (typeof r.id !== "string" || !TOKEN.test(r.id)) return "bad id";
  if (typeof r.job !== "string" || !TOKEN.test(r.job)) return "bad job name";
  if (!isNat(r.checkpoint) || !isNat(r.generation)) return "bad checkpoint or generation";
  if (typeof r.createdAt !== "number" || !Number.isFinite(r.createdAt)) return "bad createdAt";
  if (r.codeVersion !== undefined && !isNat(r.codeVersion)) return "bad codeVersion";
  if (!Array.isArray(r.functions)) return "no functions";
  const names = new Set<string>();
  for (const f of r.functions as unknown[]) {
    if (f === null || typeof f !== "object") return "a function that is not an object";
    const fr = f as Record<string, unknown>;
    if (typeof fr.name !== "string" || !TOKEN.test(fr.name)) return `bad function name ${JSON.stringify(fr.name)}`;
    if (names.has(fr.name)) return `function "${fr.name}" listed twice`;
    names.add(fr.name);
    if (!isNat(fr.partitions) || fr.partitions < 1) return `function "${fr.name}": bad partition count`;
    if (typeof fr.isSource !== "boolean") return `function "${fr.name}": bad isSource`;
    if (fr.stream !== undefined && typeof fr.stream !== "string") return `function "${fr.name}": bad stream`;
    if (fr.state === null || typeof fr.state !== "object" || Array.isArray(fr.state)) return `function "${fr.name}": bad state`;
    for (const [state, s] of Object.entries(fr.state as Record<string, unknown>)) {
      const sr = s as { kind?: unknown; version?: unknown } | null;
      if (sr === null || typeof sr !== "object" || typeof sr.kind !== "string" || !STATE_KINDS.has(sr.kind) || !isNat(sr.version) || sr.version < 1) {
        return `function "${fr.name}": bad state "${state}"`;
      }
    }
  }
  return undefined;
}

// --- partition exports ----------------------------------------------------------------------------

/** A partition export as stored: msgpack `{ format, fn, partition, entries: [[key, value], ...] }`. */
export function encodePartitionExport(e: PartitionExport): Uint8Array {
  const problem = exportProblem(e);
  if (problem !== undefined) throw new InvalidArgumentError(`refusing to write an invalid partition export: ${problem}`);
  return encodeValue({ format: 1, fn: e.fn, partition: e.partition, entries: e.entries, ...(e.broadcast === undefined ? {} : { broadcast: e.broadcast }) });
}

/**
 * Reads a stored partition export; throws `CorruptSavepointError` unless every entry is a key of
 * the KV layout in the export's own partition (no `_applied`, no duplicates) with a byte value.
 * Values are views into `data`, not copies.
 */
export function decodePartitionExport(data: Uint8Array): PartitionExport {
  let body: unknown;
  try {
    body = decodeValue(data);
  } catch (e) {
    throw new CorruptSavepointError(`undecodable partition export: ${(e as Error).message}`);
  }
  if (body === null || typeof body !== "object") throw new CorruptSavepointError("not a partition export");
  const r = body as Record<string, unknown>;
  if (r.format !== 1) throw new CorruptSavepointError(`partition export of unknown format ${JSON.stringify(r.format)}`);
  if (!Array.isArray(r.entries)) throw new CorruptSavepointError("partition export without entries");
  // msgpack gives Buffers; plain Uint8Array views keep the type callers compare against.
  const view = (entry: unknown) =>
    Array.isArray(entry) && entry.length === 2 && entry[1] instanceof Uint8Array
      ? ([entry[0], new Uint8Array(entry[1].buffer, entry[1].byteOffset, entry[1].byteLength)] as [string, Uint8Array])
      : entry;
  const entries = (r.entries as unknown[]).map(view);
  if (r.broadcast !== undefined && !Array.isArray(r.broadcast)) throw new CorruptSavepointError("partition export whose broadcast state is not a list");
  const broadcast = r.broadcast === undefined ? undefined : (r.broadcast as unknown[]).map(view);
  const e = { fn: r.fn, partition: r.partition, entries, ...(broadcast === undefined ? {} : { broadcast }) } as PartitionExport;
  const problem = exportProblem(e);
  if (problem !== undefined) throw new CorruptSavepointError(`invalid partition export: ${problem}`);
  return e;
}

function exportProblem(e: PartitionExport): string | undefined {
  if (typeof e.fn !== "string" || !TOKEN.test(e.fn)) return `bad function name ${JSON.stringify(e.fn)}`;
  if (!isNat(e.partition)) return `bad partition ${JSON.stringify(e.partition)}`;
  if (!Array.isArray(e.entries)) return "entries are not an array";
  const seen = new Set<string>();
  for (const entry of e.entries as unknown[]) {
    if (!Array.isArray(entry) || entry.length !== 2 || typeof entry[0] !== "string" || !(entry[1] instanceof Uint8Array)) {
      return `${e.fn}/${e.partition}: an entry is not a [key, bytes] pair`;
    }
    const key = entry[0];
    const parsed = parseKvKey(key);
    if (parsed === undefined) return `${e.fn}/${e.partition}: ${JSON.stringify(key)} is not a state, timer, watermark or position key`;
    if (parsed.partition !== e.partition) return `${e.fn}/${e.partition}: key ${JSON.stringify(key)} belongs to partition ${parsed.partition}`;
    if (parsed.kind === "applied" || parsed.kind === "published") return `${e.fn}/${e.partition}: holds ${key}, which a savepoint never does`;
    if (seen.has(key)) return `${e.fn}/${e.partition}: key ${JSON.stringify(key)} appears twice`;
    seen.add(key);
  }
  if (e.broadcast === undefined) return undefined;
  if (e.partition !== 0) return `${e.fn}/${e.partition}: holds broadcast state, which only partition 0's export does`;
  if (!Array.isArray(e.broadcast)) return `${e.fn}/${e.partition}: broadcast state is not an array`;
  for (const entry of e.broadcast as unknown[]) {
    if (!Array.isArray(entry) || entry.length !== 2 || typeof entry[0] !== "string" || !(entry[1] instanceof Uint8Array)) return `${e.fn}/${e.partition}: a broadcast entry is not a [key, bytes] pair`;
    if (parseBroadcastKey(entry[0]) === undefined) return `${e.fn}/${e.partition}: ${JSON.stringify(entry[0])} is not a broadcast state key`;
    if (seen.has(entry[0])) return `${e.fn}/${e.partition}: key ${JSON.stringify(entry[0])} appears twice`;
    seen.add(entry[0]);
  }
  return undefined;
}
