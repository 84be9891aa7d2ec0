/**
 * Which keys of a partition may have stored state: a Bloom filter kept by the actor and persisted
 * with its checkpoints, so that a key the filter has never seen is known to be absent without a
 * KV lookup (design note bk).
 *
 * The state cache (state-cache.ts) must make a key resident before a record of it runs. For a key
 * that is new — most keys while a job loads, every key of a session or window that just started —
 * the answer "absent" cost a KV `get` as soon as the cache had evicted anything, or after any
 * restore of a job with state. Every stored entry reaches KV through a snapshot of the actor, so
 * the actor can add each key it snapshots with a value to a filter, and write the filter's changed
 * blocks into the same delta: the filter a restore reads (KV corrected by the committed deltas KV
 * lacks) then covers every key KV or the delta log can hold. A false positive only costs the
 * lookup the cache did before; "absent" is only answered for a key no snapshot ever stored.
 *
 * Layout: segments of `2^i` blocks of `BLOCK_BYTES` bytes (segment 0 has one block); a key sets
 * `HASHES` bits inside one block of the newest segment, so it changes one stored block; a segment
 * takes `BLOCK_KEYS` keys per block, then a new segment twice its size starts (a scalable Bloom
 * filter). A lookup checks every segment. Blocks never written are zeros and need not be stored.
 *
 * Pure: plain data in, plain data out; the actor stores `takeChanges()` under `<p>._kf` (the
 * header) and `<p>._kf.<segment>.<block>` (kv-keys.ts).
 */

/** Bytes of one stored block (a KV value): 32 768 bits. */
export const BLOCK_BYTES = 4096;
/** Bits set per key. */
export const HASHES = 8;
/** Keys a block takes before its segment counts as full: 12 bits per key, about 0.3 % false positives. */
export const BLOCK_KEYS = Math.floor((BLOCK_BYTES * 8) / 12);
/** The header format this module writes and reads. */
export const FILTER_FORMAT = 1;

const BLOCK_BITS_MASK = BLOCK_BYTES * 8 - 1;

/** The persisted header: format and, per segment, its number of blocks and of keys added. */
export interface StoredKeyFilterHeader {
  readonly v: number;
  readonly segments: ReadonlyArray<readonly [blocks: number, keys: number]>;
}

/** What changed since the last `takeChanges`: the header and blocks (`"<segment>.<block>"`) to store. */
export interface StoredKeyFilterChanges {
  readonly header: StoredKeyFilterHeader | undefined;
  readonly blocks: ReadonlyArray<readonly [id: string, bytes: Uint8Array]>;
}

interface Segment {
  readonly blocks: Array<Uint8Array | undefined>;
  keys: number;
}

function fmix32(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/**
 * A 32-bit hash of the string's UTF-16 code units with a seed. Not the partitioning hash
 * (fnv1a32): keys of one partition share that hash modulo the partition count, which would leave
 * most blocks unused.
 */
function hash(s: string, seed: number): number {
  let h = seed | 0;
  for (let i = 0; i < s.length; i++) {
    h = Math.imul(h ^ s.charCodeAt(i), 0x5bd1e995);
    h ^= h >>> 15;
  }
  return fmix32(h ^ s.length);
}

/**
 * Ids (`"<segment>.<block>"`) of every block a stored header names: what a restore reads with
 * `get`s (a listing of `<p>._kf.>` would make the server scan every subject of the bucket). None
 * for a header this module did not write.
 */
export function filterBlockIds(header: unknown): string[] {
  if (!validHeader(header)) return [];
  return header.segments.flatMap(([blocks], s) => Array.from({ length: blocks }, (_, b) => `${s}.${b}`));
}

function validHeader(header: unknown): header is StoredKeyFilterHeader {
  if (typeof header !== "object" || header === null) return false;
  const h = header as Partial<StoredKeyFilterHeader>;
  if (h.v !== FILTER_FORMAT || !Array.isArray(h.segments) || h.segments.length === 0 || h.segments.length > MAX_SEGMENTS) return false;
  return h.segments.every((s: unknown, i) => Array.isArray(s) && s.length === 2 && s[0] === 2 ** i && Number.isSafeInteger(s[1]) && s[1] >= 0);
}

/** Segments a header may name: 2^30 blocks of the last would be far more keys than a partition holds. */
const MAX_SEGMENTS = 31;

export class StoredKeyFilter {
  private readonly segments: Segment[];
  private readonly dirty = new Set<string>();
  private headerDirty: boolean;

  private constructor(segments: Segment[], headerDirty: boolean) {
    this.segments = segments;
    this.headerDirty = headerDirty;
  }

  /** A filter of a partition with nothing stored: every key is absent. Its header is a change to store. */
  static empty(): StoredKeyFilter {
    return new StoredKeyFilter([{ blocks: [undefined], keys: 0 }], true);
  }

  /**
   * The filter stored as `header` and `blocks` (id `"<segment>.<block>"` → bytes), or undefined
   * when they are not one this module wrote (then nothing can be answered without a lookup).
   * A block absent from `blocks` is all zeros.
   */
  static restore(header: unknown, blocks: ReadonlyMap<string, unknown>): StoredKeyFilter | undefined {
    if (!validHeader(header)) return undefined;
    const segments: Segment[] = header.segments.map(([blocks, keys]) => ({ blocks: new Array<Uint8Array | undefined>(blocks).fill(undefined), keys }));
    for (const [id, bytes] of blocks) {
      const m = /^(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)$/.exec(id);
      const segment = m === null ? undefined : segments[Number(m[1])];
      const b = m === null ? NaN : Number(m[2]);
      if (segment === undefined || !(b < segment.blocks.length) || !(bytes instanceof Uint8Array) || bytes.length !== BLOCK_BYTES) return undefined;
      segment.blocks[b] = Uint8Array.from(bytes);
    }
    return new StoredKeyFilter(segments, false);
  }

  /** False only for a key never added: it has nothing stored. */
  mightContain(key: string): boolean {
    const h1 = hash(key, 0x9747b28c);
    const h2 = hash(key, 0x2f5d1a3b);
    const step = fmix32(h2 ^ 0x9e3779b9) | 1;
    for (const s of this.segments) {
      const block = s.blocks[h1 % s.blocks.length];
      if (block !== undefined && allSet(block, h2, step)) return true;
    }
    return false;
  }

  /** Records that `key` may have stored state from now on. */
  add(key: string): void {
    if (this.mightContain(key)) return;
    let last = this.segments[this.segments.length - 1]!;
    if (last.keys >= last.blocks.length * BLOCK_KEYS) {
      last = { blocks: new Array<Uint8Array | undefined>(last.blocks.length * 2).fill(undefined), keys: 0 };
      this.segments.push(last);
    }
    const h1 = hash(key, 0x9747b28c);
    const h2 = hash(key, 0x2f5d1a3b);
    const step = fmix32(h2 ^ 0x9e3779b9) | 1;
    const b = h1 % last.blocks.length;
    const block = (last.blocks[b] ??= new Uint8Array(BLOCK_BYTES));
    for (let j = 0; j < HASHES; j++) {
      const bit = (h2 + Math.imul(j, step)) & BLOCK_BITS_MASK;
      block[bit >>> 3]! |= 1 << (bit & 7);
    }
    last.keys++;
    this.dirty.add(`${this.segments.length - 1}.${b}`);
    this.headerDirty = true;
  }

  /** The header and the blocks changed since the last call (copies), to store with a snapshot. */
  takeChanges(): StoredKeyFilterChanges {
    const blocks: Array<readonly [string, Uint8Array]> = [];
    for (const id of this.dirty) {
      const [s, b] = id.split(".").map(Number) as [number, number];
      blocks.push([id, this.segments[s]!.blocks[b]!.slice()]);
    }
    this.dirty.clear();
    const header = this.headerDirty ? this.header() : undefined;
    this.headerDirty = false;
    return { header, blocks };
  }

  header(): StoredKeyFilterHeader {
    return { v: FILTER_FORMAT, segments: this.segments.map((s) => [s.blocks.length, s.keys] as const) };
  }

  /** Keys added (false positives on `add` not counted). */
  get keyCount(): number {
    return this.segments.reduce((n, s) => n + s.keys, 0);
  }

  /** Bytes of blocks in memory. */
  get bytes(): number {
    return this.segments.reduce((n, s) => n + s.blocks.filter((b) => b !== undefined).length * BLOCK_BYTES, 0);
  }
}

function allSet(block: Uint8Array, h2: number, step: number): boolean {
  for (let j = 0; j < HASHES; j++) {
    const bit = (h2 + Math.imul(j, step)) & BLOCK_BITS_MASK;
    if ((block[bit >>> 3]! & (1 << (bit & 7))) === 0) return false;
  }
  return true;
}
