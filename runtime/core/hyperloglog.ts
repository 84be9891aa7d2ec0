/**
 * HyperLogLog sketches for approximate distinct counts (design note cb).
 *
 * An exact distinct count keeps every value, so a window of a hot key with a million users is one
 * state entry of megabytes — more than a NATS message may carry. A HyperLogLog sketch keeps
 * `2^p` one-byte registers instead (16 KiB at the default precision 14, relative standard error
 * 1.04 / √2^p ≈ 0.8 %), and two sketches merge register by register, so partial sketches of
 * partitions, of upstream batches (local-global aggregation) and of windows combine losslessly.
 *
 * No npm package fitted (note cb): this one is small, hashes with a 64-bit hash (two seeded
 * 32-bit MurmurHash3 rounds over the string's UTF-16 code units), and estimates with Ertl's
 * improved estimator (“New cardinality estimation algorithms for HyperLogLog sketches”, 2017; the
 * one Redis uses), which corrects the small-range bias without empirical tables — linear
 * counting is its limit for mostly empty sketches. The hash and the layout below are part of the
 * stored format: sketches written by one version must merge with those of the next.
 *
 * A sketch is a plain `Uint8Array`, so state and record batches store it as msgpack `bin`:
 * - **sparse** (small sets): 3 bytes per non-zero register — index (big-endian 16 bits) and
 *   value — sorted by index, at most `2^p / 12` of them; its length is a multiple of 3 and never
 *   `2^p`;
 * - **dense**: exactly `2^p` bytes, register `i` at byte `i`.
 * A sparse sketch turns dense when it would outgrow a quarter of the dense size. Functions here
 * never mutate a sketch they did not create: a sketch decoded from state or from a batch may
 * share memory with the message it came from.
 */
import { InputError, InvalidArgumentError } from "../errors.ts";

/** Default precision: 2^14 registers, 16 KiB dense, relative standard error ≈ 0.81 %. */
export const HLL_DEFAULT_PRECISION = 14;
export const HLL_MIN_PRECISION = 4;
export const HLL_MAX_PRECISION = 16;

/** A sketch in its stored form (see the module comment for the two layouts). */
export type HllSketch = Uint8Array;

/** A value that is not a sketch of the expected precision (a forged or corrupted partial). */
export class InvalidSketchError extends InputError {
  override readonly name = "InvalidSketchError";
}

/** Relative standard error of an estimate at precision `p` (1.04 / √2^p). */
export function hllStandardError(p: number): number {
  return 1.04 / Math.sqrt(2 ** p);
}

export function checkPrecision(p: number): void {
  if (!Number.isInteger(p) || p < HLL_MIN_PRECISION || p > HLL_MAX_PRECISION) {
    throw new InvalidArgumentError(`HyperLogLog precision must be a whole number from ${HLL_MIN_PRECISION} to ${HLL_MAX_PRECISION}, not ${p}`);
  }
}

/** An empty sketch (sparse, zero bytes). */
export function hllCreate(): HllSketch {
  return new Uint8Array(0);
}

/** MurmurHash3 (x86, 32-bit) over the string's UTF-16 code units, two per block. */
function murmur32(s: string, seed: number): number {
  let h = seed | 0;
  const n = s.length;
  let i = 0;
  for (; i + 1 < n; i += 2) {
    let k = s.charCodeAt(i) | (s.charCodeAt(i + 1) << 16);
    k = Math.imul(k, 0xcc9e2d51);
    k = (k << 15) | (k >>> 17);
    k = Math.imul(k, 0x1b873593);
    h ^= k;
    h = (h << 13) | (h >>> 19);
    h = (Math.imul(h, 5) + 0xe6546b64) | 0;
  }
  if (i < n) {
    let k = s.charCodeAt(i);
    k = Math.imul(k, 0xcc9e2d51);
    k = (k << 15) | (k >>> 17);
    k = Math.imul(k, 0x1b873593);
    h ^= k;
  }
  h ^= n;
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

const SEED_HI = 0x9747b28c;
const SEED_LO = 0x5bd1e995;

/**
 * The register a value updates and the value it offers: the top `p` bits of the 64-bit hash pick
 * the register, and one plus the leading zeros of the other `64 − p` bits is the value (at most
 * `65 − p`).
 */
export function hllPosition(value: string, p: number): { readonly index: number; readonly rank: number } {
  const hi = murmur32(value, SEED_HI);
  const lo = murmur32(value, SEED_LO);
  const index = hi >>> (32 - p);
  const rest = (hi << p) | 0;
  const rank = rest !== 0 ? Math.clz32(rest) + 1 : 32 - p + Math.clz32(lo) + 1;
  return { index, rank };
}

function maxSparseEntries(p: number): number {
  return Math.max(1, Math.floor(2 ** p / 12));
}

/** A copy this module may change in place, as a plain Uint8Array. */
function owned(s: HllSketch, length = s.length): Uint8Array {
  const copy = new Uint8Array(length);
  copy.set(s.subarray(0, Math.min(length, s.length)));
  return copy;
}

/**
 * Buffers of sparse sketches this module made with room to grow: a sketch is a view of the first
 * bytes of one, so adding a register shifts the entries after it in place instead of copying the
 * whole sketch into a new array (a fresh partial of local-global aggregation takes thousands of
 * new registers one by one). Only this module's sketches are in it: a view of a message or of
 * anyone else's buffer is never changed in place.
 */
const roomy = new WeakSet<ArrayBufferLike>();

function isOwned(s: HllSketch): boolean {
  return s.constructor === Uint8Array && s.byteOffset === 0 && (s.buffer.byteLength === s.length || roomy.has(s.buffer));
}

/** A sparse sketch of `length` bytes with room for more, its first `keep` bytes from `from`. */
function roomySparse(from: HllSketch, keep: number, length: number, p: number): Uint8Array {
  const capacity = Math.min(Math.max(length, 2 * from.length, 48), maxSparseEntries(p) * 3);
  const buffer = new ArrayBuffer(capacity);
  if (capacity > length) roomy.add(buffer);
  const out = new Uint8Array(buffer, 0, length);
  out.set(from.subarray(0, keep));
  return out;
}

function toDense(sparse: HllSketch, p: number): Uint8Array {
  const dense = new Uint8Array(2 ** p);
  for (let i = 0; i < sparse.length; i += 3) {
    const index = (sparse[i]! << 8) | sparse[i + 1]!;
    if (sparse[i + 2]! > dense[index]!) dense[index] = sparse[i + 2]!;
  }
  return dense;
}

/** First entry of a sparse sketch whose index is `index` or greater (binary search). */
function sparseSearch(sparse: HllSketch, index: number): number {
  let lo = 0;
  let hi = sparse.length / 3;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    const at = (sparse[mid * 3]! << 8) | sparse[mid * 3 + 1]!;
    if (at < index) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** Offers register `index` the value `rank`; returns the sketch (changed in place when this module owns it). */
function offer(sketch: HllSketch, p: number, index: number, rank: number): HllSketch {
  const m = 2 ** p;
  if (sketch.length === m) {
    if (rank <= sketch[index]!) return sketch;
    const dense = isOwned(sketch) ? sketch : owned(sketch);
    dense[index] = rank;
    return dense;
  }
  const at = sparseSearch(sketch, index);
  const pos = at * 3;
  if (pos < sketch.length && ((sketch[pos]! << 8) | sketch[pos + 1]!) === index) {
    if (rank <= sketch[pos + 2]!) return sketch;
    const copy = isOwned(sketch) ? sketch : owned(sketch);
    copy[pos + 2] = rank;
    return copy;
  }
  if (sketch.length / 3 + 1 > maxSparseEntries(p)) {
    const dense = toDense(sketch, p);
    if (rank > dense[index]!) dense[index] = rank;
    return dense;
  }
  let grown: Uint8Array;
  if (isOwned(sketch) && sketch.buffer.byteLength >= sketch.length + 3) {
    grown = new Uint8Array(sketch.buffer, 0, sketch.length + 3);
    grown.copyWithin(pos + 3, pos, sketch.length);
  } else {
    grown = roomySparse(sketch, pos, sketch.length + 3, p);
    grown.set(sketch.subarray(pos), pos + 3);
  }
  grown[pos] = index >>> 8;
  grown[pos + 1] = index & 0xff;
  grown[pos + 2] = rank;
  return grown;
}

/**
 * Adds a value; returns the sketch, changed in place when it is one this module made — use the
 * returned sketch from then on: the one passed in may share its bytes and no longer be valid.
 */
export function hllAdd(sketch: HllSketch, p: number, value: string): HllSketch {
  const { index, rank } = hllPosition(value, p);
  return offer(sketch, p, index, rank);
}

/**
 * The union of two sketches of the same precision; `a` may be changed and returned when this
 * module made it (use the result, not `a`, from then on; `b` is never changed). Throws
 * `InvalidSketchError` when either is not a sketch of precision `p`.
 */
export function hllMerge(a: HllSketch, b: HllSketch, p: number): HllSketch {
  checkSketch(a, p);
  checkSketch(b, p);
  const m = 2 ** p;
  if (b.length === m) {
    const dense = a.length === m ? (isOwned(a) ? a : owned(a)) : toDense(a, p);
    for (let i = 0; i < m; i++) if (b[i]! > dense[i]!) dense[i] = b[i]!;
    return dense;
  }
  let out = a;
  for (let i = 0; i < b.length; i += 3) out = offer(out, p, (b[i]! << 8) | b[i + 1]!, b[i + 2]!);
  return out;
}

/** Throws `InvalidSketchError` unless `s` is a well-formed sketch of precision `p`. */
export function checkSketch(s: unknown, p: number): asserts s is HllSketch {
  if (!(s instanceof Uint8Array)) throw new InvalidSketchError(`not a HyperLogLog sketch: ${s === null ? "null" : typeof s}`);
  const m = 2 ** p;
  const maxRank = 65 - p;
  if (s.length === m) {
    for (let i = 0; i < m; i++) if (s[i]! > maxRank) throw new InvalidSketchError(`HyperLogLog register ${i} holds ${s[i]}, more than ${maxRank}`);
    return;
  }
  if (s.length % 3 !== 0 || s.length / 3 > maxSparseEntries(p)) throw new InvalidSketchError(`a HyperLogLog sketch of precision ${p} has ${m} bytes or a multiple of 3 up to ${maxSparseEntries(p) * 3}, not ${s.length}`);
  let previous = -1;
  for (let i = 0; i < s.length; i += 3) {
    const index = (s[i]! << 8) | s[i + 1]!;
    const rank = s[i + 2]!;
    if (index <= previous || index >= m || rank === 0 || rank > maxRank) throw new InvalidSketchError(`malformed sparse HyperLogLog entry at byte ${i}`);
    previous = index;
  }
}

/** How many registers hold each value 0..65−p. */
function histogram(s: HllSketch, p: number): number[] {
  const m = 2 ** p;
  const counts = new Array<number>(66 - p).fill(0);
  if (s.length === m) {
    for (let i = 0; i < m; i++) counts[s[i]!]!++;
    return counts;
  }
  counts[0] = m - s.length / 3;
  for (let i = 2; i < s.length; i += 3) counts[s[i]!]!++;
  return counts;
}

function sigma(x: number): number {
  if (x === 1) return Infinity;
  let y = 1;
  let z = x;
  let previous: number;
  do {
    x *= x;
    previous = z;
    z += x * y;
    y += y;
  } while (previous !== z);
  return z;
}

function tau(x: number): number {
  if (x === 0 || x === 1) return 0;
  let y = 1;
  let z = 1 - x;
  let previous: number;
  do {
    x = Math.sqrt(x);
    previous = z;
    y *= 0.5;
    z -= (1 - x) ** 2 * y;
  } while (previous !== z);
  return z / 3;
}

const ALPHA_INF = 0.5 / Math.LN2;

/** The estimated number of distinct values added (Ertl's improved estimator), rounded. */
export function hllEstimate(s: HllSketch, p: number): number {
  const m = 2 ** p;
  const q = 64 - p;
  const c = histogram(s, p);
  let z = m * tau((m - c[q + 1]!) / m);
  for (let k = q; k >= 1; k--) {
    z += c[k]!;
    z *= 0.5;
  }
  z += m * sigma(c[0]! / m);
  return Math.round((ALPHA_INF * m * m) / z);
}
