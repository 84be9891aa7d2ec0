/**
 * Key hashing for partitioning.
 *
 * eddy routes a record to partition `fnv1a32(utf8(key)) % P`. This is the same function
 * nats-server uses for the `{{partition(n,i)}}` subject mapping (Go's `hash/fnv` New32a over the
 * token's bytes, `Sum32() % n`), so an external publisher can let the server partition its
 * messages and land on exactly the partition an eddy actor would have chosen. When a mapping
 * names several tokens (`{{partition(n,1,2)}}`) the server hashes their concatenation with no
 * separator; hash the concatenated string here to match.
 *
 * This runs once per record, so it hashes the string's UTF-8 encoding inline instead of
 * allocating a Buffer per call.
 */
import { InvalidArgumentError } from "../errors.ts";

const FNV_OFFSET_BASIS = 0x811c9dc5;
const FNV_PRIME = 0x01000193;

/**
 * FNV-1a 32-bit hash of the UTF-8 bytes of `s`, as an unsigned integer.
 *
 * A lone (unpaired) surrogate is hashed as U+FFFD, which is what `Buffer.from(s, "utf8")` and
 * `TextEncoder` write for it, so the hash always equals the hash of the bytes on the wire.
 */
export function fnv1a32(s: string): number {
  // Math.imul keeps the multiplication in 32-bit integer arithmetic (mod 2^32), which is all
  // FNV needs; the state is a signed int32 until the final unsigned conversion.
  let h = FNV_OFFSET_BASIS | 0;
  const n = s.length;
  for (let i = 0; i < n; i++) {
    let c = s.charCodeAt(i);
    if (c < 0x80) {
      h = Math.imul(h ^ c, FNV_PRIME);
      continue;
    }
    if (c < 0x800) {
      h = Math.imul(h ^ (0xc0 | (c >> 6)), FNV_PRIME);
      h = Math.imul(h ^ (0x80 | (c & 0x3f)), FNV_PRIME);
      continue;
    }
    if (c >= 0xd800 && c <= 0xdfff) {
      if (c <= 0xdbff && i + 1 < n) {
        const d = s.charCodeAt(i + 1);
        if (d >= 0xdc00 && d <= 0xdfff) {
          const cp = ((c - 0xd800) << 10) + (d - 0xdc00) + 0x10000;
          i++;
          h = Math.imul(h ^ (0xf0 | (cp >> 18)), FNV_PRIME);
          h = Math.imul(h ^ (0x80 | ((cp >> 12) & 0x3f)), FNV_PRIME);
          h = Math.imul(h ^ (0x80 | ((cp >> 6) & 0x3f)), FNV_PRIME);
          h = Math.imul(h ^ (0x80 | (cp & 0x3f)), FNV_PRIME);
          continue;
        }
      }
      c = 0xfffd;
    }
    h = Math.imul(h ^ (0xe0 | (c >> 12)), FNV_PRIME);
    h = Math.imul(h ^ (0x80 | ((c >> 6) & 0x3f)), FNV_PRIME);
    h = Math.imul(h ^ (0x80 | (c & 0x3f)), FNV_PRIME);
  }
  return h >>> 0;
}

/**
 * The partition (0 ≤ result < `partitions`) that `key` belongs to; equal to what nats-server's
 * `{{partition(partitions, …)}}` mapping yields for a subject token equal to `key`.
 */
export function partitionOf(key: string, partitions: number): number {
  if (!Number.isInteger(partitions) || partitions < 1 || partitions > 0xffffffff) {
    throw new InvalidArgumentError(`partition count must be an integer in [1, 2^32-1], got ${partitions}`);
  }
  return fnv1a32(key) % partitions;
}
