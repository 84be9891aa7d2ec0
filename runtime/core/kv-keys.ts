/**
 * The layout of keys in a function's KV bucket (`eddy_<job>_<F>`).
 *
 * Every key starts with the partition, so one actor's committed state is the key range
 * `<p>.>`, and user keys are base64url-encoded because KV keys only allow `[-/_=.A-Za-z0-9]`:
 *
 *   `<p>.<state>.<b64url(key)>`                          value/list/reducing state of a key
 *   `<p>.<state>.<b64url(key)>.<b64url(subkey)>`         one entry of a map state
 *   `<p>._tb.<e|p><bucket>.<ts>/<b64url(key)>/<b64url(name)>`  a timer (event / processing time)
 *   `<p>._tk.<e|p><bucket>`                              marker: that time bucket may hold timers
 *   `<p>._tl`                                            the timers use this layout (markers complete)
 *   `<p>._tx`                                            index of the markers: the days that have some
 *   `<p>._tx.<e|p><day>`                                 index of the markers: that day's buckets
 *   `<p>._wm`                                            the partition's watermarks
 *   `<p>._pos`                                           the partition's input position
 *   `<p>._wpos`                                          a source's position in its write log
 *   `<p>._ver`                                           schema versions of the stored state
 *   `<p>._applied`                                       last checkpoint materialized in this bucket
 *   `<p>._published`                                     last checkpoint whose sink output is published
 *   `<p>._kf`, `<p>._kf.<segment>.<block>`               the filter of stored keys (stored-keys.ts)
 *   `_bc.<state>.<b64url(subkey)>`                       one entry of a broadcast state: of the
 *                                                        function, not of a partition (written
 *                                                        by partition 0 alone, read by all;
 *                                                        core/broadcast.ts, design note bq)
 *
 * State names cannot start with `_`, which keeps the `_`-prefixed internal names out of their
 * way. Timer times are stored as `ts + 2^53` in 14 lowercase hex digits, zero-padded: fixed
 * width makes the keys sort by time, the offset admits negative event times (windows before
 * 1970 exist in tests and replays), and 14 digits hold every safe integer from
 * `-(2^53 − 1)` to `2^53 − 1`, which the global window's timer needs. Fractional times are
 * rejected: timers are whole milliseconds.
 *
 * Timers are bucketed by time (design note bi): bucket `floor(ts / TIMER_BUCKET_MS)`, encoded
 * like a time, is a token of its own, so one bucket is the listing `<p>._tb.<d><bucket>.*` and,
 * since a timer's time, key and name are one token joined by `/` (which base64url never
 * produces), the delta log groups a bucket's changes (`groupOf`) and finds them without a scan.
 * A marker per bucket that may hold timers lets a restore find the buckets without listing the
 * timers; `_tl` says the markers are complete. Jobs written before buckets stored timers as
 * `<p>._t.<e|p><ts>.<b64url(key)>.<b64url(name)>` (the legacy layout, still parsed: a restore
 * moves those timers into buckets).
 *
 * A restore reads the markers by name, through an index (design note bs): `<p>._tx` lists the
 * days (`floor(bucket / TIMER_INDEX_DAY_BUCKETS)`, encoded like a time) that have markers, and
 * `<p>._tx.<d><day>` the marked buckets of one day (timer-index.ts). A listing of `<p>._tk.*`
 * would make nats-server 2.9 walk every key of the bucket. The markers themselves are still
 * written, so state stays readable by the eddy before the index.
 */

import type { Timer } from "./timers.ts";
import { InvalidArgumentError } from "../errors.ts";

/**
 * Token standing for the empty string. An empty token would make an invalid key (`a..b`), and
 * `=` can never be produced by unpadded base64url, so it cannot collide with a real encoding.
 */
export const EMPTY_TOKEN = "=";

const B64URL_TOKEN = /^[A-Za-z0-9_-]+$/;

/**
 * base64url (RFC 4648 §5, no padding) of the UTF-8 encoding of `s`; the empty string becomes
 * `EMPTY_TOKEN`. Strings are keys as they travel on the wire, i.e. UTF-8: a lone surrogate is
 * encoded as U+FFFD (as msgpack and `partitionOf` also treat it), so it does not round-trip.
 */
export function b64url(s: string): string {
  if (s.length === 0) return EMPTY_TOKEN;
  // Snapshots encode the same keys (a key's state, its windows, its timers) again at every
  // checkpoint: remembered tokens of short strings save a Buffer each (b64url was ~2 % of the
  // CPU of q5 with 1 s checkpoints).
  if (s.length > MEMO_MAX_CHARS) return Buffer.from(s, "utf8").toString("base64url");
  let token = memo.get(s);
  if (token === undefined) {
    if (memo.size >= MEMO_ENTRIES) memo.clear();
    token = Buffer.from(s, "utf8").toString("base64url");
    memo.set(s, token);
  }
  return token;
}

const MEMO_MAX_CHARS = 64;
const MEMO_ENTRIES = 65_536;
const memo = new Map<string, string>();

/**
 * Inverse of `b64url`. Throws on anything `b64url` cannot have produced (bad characters,
 * non-canonical padding bits or length, invalid UTF-8), so that two different tokens never
 * decode to the same string.
 */
export function unb64url(token: string): string {
  const s = tryUnb64url(token);
  if (s === undefined) throw new InvalidArgumentError(`not a canonical base64url token: ${JSON.stringify(token)}`);
  return s;
}

function tryUnb64url(token: string): string | undefined {
  if (token === EMPTY_TOKEN) return "";
  if (!B64URL_TOKEN.test(token)) return undefined;
  // Non-canonical forms: a length of 1 mod 4, non-zero bits after the last whole byte, and byte
  // sequences that are not UTF-8 (decoded to U+FFFD). The first two are checked on the token;
  // only a decoded U+FFFD needs the re-encoding to tell a real one from a replaced sequence.
  // (Re-encoding every token cost a fifth of a materialization round's CPU at a million keys.)
  const rest = token.length % 4;
  if (rest === 1) return undefined;
  if (rest !== 0 && (B64URL_VALUE.indexOf(token[token.length - 1]!) & (rest === 2 ? 0b1111 : 0b11)) !== 0) return undefined;
  const s = Buffer.from(token, "base64url").toString("utf8");
  if (s.length === 0) return undefined;
  return !s.includes("\uFFFD") || Buffer.from(s, "utf8").toString("base64url") === token ? s : undefined;
}

/** The base64url alphabet: a character's index is its 6-bit value. */
const B64URL_VALUE = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

const STATE_NAME = /^[A-Za-z][A-Za-z0-9-]*$/;

/** Whether `name` is a valid state name: a letter, then letters, digits or `-`. */
export function isValidStateName(name: string): boolean {
  return STATE_NAME.test(name);
}

/** Throws unless `name` is a valid state name (`/^[A-Za-z][A-Za-z0-9-]*$/`). */
export function assertStateName(name: string): void {
  if (!STATE_NAME.test(name)) {
    throw new InvalidArgumentError(
      `invalid state name ${JSON.stringify(name)}: use a letter followed by letters, digits or '-'`,
    );
  }
}

function assertPartition(p: number): void {
  if (!Number.isSafeInteger(p) || p < 0) throw new InvalidArgumentError(`partition must be an integer >= 0, got ${p}`);
}

const TS_HEX_DIGITS = 14;

/** Fixed-width, sortable hex encoding of a timer time (see the module notes). */
const TS_OFFSET = 2n ** 53n;

export function encodeTimerTs(ts: number): string {
  if (!Number.isSafeInteger(ts)) {
    throw new InvalidArgumentError(`timer time must be a safe integer to be stored, got ${ts}`);
  }
  // BigInt: ts + 2^53 is beyond the range where doubles hold every integer.
  return (BigInt(ts) + TS_OFFSET).toString(16).padStart(TS_HEX_DIGITS, "0");
}

const TS_HEX = /^[0-9a-f]{14}$/;

function decodeTimerTs(s: string): number | undefined {
  if (!TS_HEX.test(s)) return undefined;
  const ts = Number(BigInt("0x" + s) - TS_OFFSET);
  return Number.isSafeInteger(ts) ? ts : undefined;
}

/** Key of a key's value in state `state` of partition `p`. */
export function stateKey(p: number, state: string, key: string): string {
  assertPartition(p);
  assertStateName(state);
  return `${p}.${state}.${b64url(key)}`;
}

/** Key of entry `subkey` of map state `state` for `key` in partition `p`. */
export function mapEntryKey(p: number, state: string, key: string, subkey: string): string {
  return `${stateKey(p, state, key)}.${b64url(subkey)}`;
}

/**
 * Width of a timer bucket in milliseconds: part of the stored layout (a timer's KV key names its
 * bucket), so it is a constant, not a setting. A minute keeps the resident timers to about the
 * next minute's while a restore lists one marker per minute that has timers.
 */
export const TIMER_BUCKET_MS = 60_000;

/** The time bucket of a timer at `ts`. */
export function timerBucketOf(ts: number): number {
  return Math.floor(ts / TIMER_BUCKET_MS);
}

function domainLetter(domain: string): string {
  const d = domain === "event" ? "e" : domain === "processing" ? "p" : undefined;
  if (d === undefined) throw new InvalidArgumentError(`unknown time domain ${domain}`);
  return d;
}

/** KV key group (`groupOf` in delta-log.ts) and listing prefix of one timer bucket. */
export function timerBucketGroup(p: number, domain: Timer["domain"], bucket: number): string {
  assertPartition(p);
  return `${p}._tb.${domainLetter(domain)}${encodeTimerTs(bucket)}`;
}

/** KV filter for every timer of one bucket. */
export function timerBucketFilter(p: number, domain: Timer["domain"], bucket: number): string {
  return `${timerBucketGroup(p, domain, bucket)}.*`;
}

/** Key of a timer of partition `p`. */
export function timerKey(p: number, t: Timer): string {
  return `${timerBucketGroup(p, t.domain, timerBucketOf(t.ts))}.${encodeTimerTs(t.ts)}/${b64url(t.key)}/${b64url(t.name)}`;
}

/** Key of a timer in the legacy layout (before buckets): read and deleted by a restore, never written. */
export function legacyTimerKey(p: number, t: Timer): string {
  assertPartition(p);
  return `${p}._t.${domainLetter(t.domain)}${encodeTimerTs(t.ts)}.${b64url(t.key)}.${b64url(t.name)}`;
}

/** Key of the marker saying bucket `bucket` of `domain` may hold timers. */
export function timerMarkerKey(p: number, domain: Timer["domain"], bucket: number): string {
  assertPartition(p);
  return `${p}._tk.${domainLetter(domain)}${encodeTimerTs(bucket)}`;
}

/** KV filter for every timer bucket marker of partition `p`. */
export function timerMarkersFilter(p: number): string {
  assertPartition(p);
  return `${p}._tk.*`;
}

/** Key recording that partition `p`'s timers are bucketed and its markers complete. */
export function timerLayoutKey(p: number): string {
  assertPartition(p);
  return `${p}._tl`;
}

/** Buckets per day of the marker index: a day's value lists at most this many buckets. */
export const TIMER_INDEX_DAY_BUCKETS = 1440;

/** The day of the marker index that bucket `bucket` belongs to. */
export function timerIndexDayOf(bucket: number): number {
  return Math.floor(bucket / TIMER_INDEX_DAY_BUCKETS);
}

/** Key of the head of partition `p`'s marker index: the days with markers, per domain. */
export function timerIndexKey(p: number): string {
  assertPartition(p);
  return `${p}._tx`;
}

/** Key of the marked buckets of day `day` of `domain` in partition `p`'s marker index. */
export function timerIndexDayKey(p: number, domain: Timer["domain"], day: number): string {
  return `${timerIndexKey(p)}.${domainLetter(domain)}${encodeTimerTs(day)}`;
}

/** Key of partition `p`'s watermark record. */
export function watermarkKey(p: number): string {
  assertPartition(p);
  return `${p}._wm`;
}

/** Key of partition `p`'s input position record. */
export function positionKey(p: number): string {
  assertPartition(p);
  return `${p}._pos`;
}

/** Key of a source partition's position in its write log (writes to state, state-writes.ts). */
export function writePositionKey(p: number): string {
  assertPartition(p);
  return `${p}._wpos`;
}

/** Key of the schema versions (state name → version) the partition's stored values have. */
export function versionsKey(p: number): string {
  assertPartition(p);
  return `${p}._ver`;
}

/** Key recording the last checkpoint whose delta partition `p` wrote to the bucket. */
export function appliedKey(p: number): string {
  assertPartition(p);
  return `${p}._applied`;
}

/**
 * Key recording the last checkpoint whose exactly-once sink output partition `p` published,
 * ahead of `_applied` when output goes out before the state's round (design note ck).
 */
export function publishedKey(p: number): string {
  assertPartition(p);
  return `${p}._published`;
}

/** Key of the header of partition `p`'s filter of stored keys (stored-keys.ts). */
export function keyFilterKey(p: number): string {
  assertPartition(p);
  return `${p}._kf`;
}

/** Key of block `id` (`"<segment>.<block>"`) of partition `p`'s filter of stored keys. */
export function keyFilterBlockKey(p: number, id: string): string {
  return `${keyFilterKey(p)}.${id}`;
}

/** KV watch/list filter for every key of partition `p`. */
export function partitionFilter(p: number): string {
  assertPartition(p);
  return `${p}.>`;
}

/** KV filter for every key (and map entry) of state `state` in partition `p`. */
export function stateFilter(p: number, state: string): string {
  assertPartition(p);
  assertStateName(state);
  return `${p}.${state}.>`;
}

/** KV filter for every entry of map state `state` for `key` in partition `p`. */
export function mapEntriesFilter(p: number, state: string, key: string): string {
  return `${stateKey(p, state, key)}.*`;
}

/** KV filter for every timer of partition `p` (bucketed layout). */
export function timerFilter(p: number): string {
  assertPartition(p);
  return `${p}._tb.>`;
}

/** KV filter for every timer of partition `p` in the legacy layout. */
export function legacyTimerFilter(p: number): string {
  assertPartition(p);
  return `${p}._t.>`;
}

/** First token of the function-scoped broadcast state keys: not a partition number, so never in `<p>.>`. */
export const BROADCAST_TOKEN = "_bc";

/** KV filter for every broadcast state entry of the function. */
export const BROADCAST_FILTER = `${BROADCAST_TOKEN}.>`;

/** Key of entry `subkey` of broadcast state `state` (one per function, not per partition). */
export function broadcastKey(state: string, subkey: string): string {
  assertStateName(state);
  return `${BROADCAST_TOKEN}.${state}.${b64url(subkey)}`;
}

/** Decodes a broadcast state key (`broadcastKey`); undefined for anything else. */
export function parseBroadcastKey(k: string): { readonly state: string; readonly subkey: string } | undefined {
  const parts = k.split(".");
  if (parts.length !== 3 || parts[0] !== BROADCAST_TOKEN || !STATE_NAME.test(parts[1]!)) return undefined;
  const subkey = tryUnb64url(parts[2]!);
  return subkey === undefined ? undefined : { state: parts[1]!, subkey };
}

/** A KV key of the eddy layout, decoded. */
export type ParsedKvKey =
  | { readonly kind: "state"; readonly partition: number; readonly state: string; readonly key: string; readonly subkey?: string }
  | { readonly kind: "timer"; readonly partition: number; readonly timer: Timer; readonly legacy?: true }
  | { readonly kind: "timer-bucket"; readonly partition: number; readonly domain: Timer["domain"]; readonly bucket: number }
  | { readonly kind: "timer-layout"; readonly partition: number }
  | { readonly kind: "timer-index"; readonly partition: number }
  | { readonly kind: "timer-index-day"; readonly partition: number; readonly domain: Timer["domain"]; readonly day: number }
  | { readonly kind: "watermark"; readonly partition: number }
  | { readonly kind: "position"; readonly partition: number }
  | { readonly kind: "write-position"; readonly partition: number }
  | { readonly kind: "versions"; readonly partition: number }
  | { readonly kind: "applied"; readonly partition: number }
  | { readonly kind: "published"; readonly partition: number }
  | { readonly kind: "key-filter"; readonly partition: number }
  | { readonly kind: "key-filter-block"; readonly partition: number; readonly id: string };

const PARTITION = /^(0|[1-9][0-9]*)$/;

function parseDomain(letter: string | undefined): Timer["domain"] | undefined {
  return letter === "e" ? "event" : letter === "p" ? "processing" : undefined;
}

/**
 * Decodes a key built by this module; undefined for anything else (including non-canonical
 * spellings of a valid key, so that `build(parse(k)) === k` whenever parse succeeds).
 */
export function parseKvKey(k: string): ParsedKvKey | undefined {
  const parts = k.split(".");
  if (parts.length < 2 || !PARTITION.test(parts[0])) return undefined;
  const partition = Number(parts[0]);
  if (!Number.isSafeInteger(partition)) return undefined;
  const second = parts[1];
  if (second === "_wm") return parts.length === 2 ? { kind: "watermark", partition } : undefined;
  if (second === "_pos") return parts.length === 2 ? { kind: "position", partition } : undefined;
  if (second === "_wpos") return parts.length === 2 ? { kind: "write-position", partition } : undefined;
  if (second === "_ver") return parts.length === 2 ? { kind: "versions", partition } : undefined;
  if (second === "_applied") return parts.length === 2 ? { kind: "applied", partition } : undefined;
  if (second === "_published") return parts.length === 2 ? { kind: "published", partition } : undefined;
  if (second === "_tl") return parts.length === 2 ? { kind: "timer-layout", partition } : undefined;
  if (second === "_tx") {
    if (parts.length === 2) return { kind: "timer-index", partition };
    if (parts.length !== 3) return undefined;
    const domain = parseDomain(parts[2][0]);
    const day = decodeTimerTs(parts[2].slice(1));
    if (domain === undefined || day === undefined) return undefined;
    return { kind: "timer-index-day", partition, domain, day };
  }
  if (second === "_tk") {
    if (parts.length !== 3) return undefined;
    const domain = parseDomain(parts[2][0]);
    const bucket = decodeTimerTs(parts[2].slice(1));
    if (domain === undefined || bucket === undefined) return undefined;
    return { kind: "timer-bucket", partition, domain, bucket };
  }
  if (second === "_tb") {
    if (parts.length !== 4) return undefined;
    const domain = parseDomain(parts[2][0]);
    const bucket = decodeTimerTs(parts[2].slice(1));
    const fields = parts[3].split("/");
    if (domain === undefined || bucket === undefined || fields.length !== 3) return undefined;
    const ts = decodeTimerTs(fields[0]);
    const key = tryUnb64url(fields[1]);
    const name = tryUnb64url(fields[2]);
    if (ts === undefined || key === undefined || name === undefined || timerBucketOf(ts) !== bucket) return undefined;
    return { kind: "timer", partition, timer: { domain, ts, key, name } };
  }
  if (second === "_kf") {
    if (parts.length === 2) return { kind: "key-filter", partition };
    return parts.length === 4 && PARTITION.test(parts[2]) && PARTITION.test(parts[3]) ? { kind: "key-filter-block", partition, id: `${parts[2]}.${parts[3]}` } : undefined;
  }
  if (second === "_t") {
    if (parts.length !== 5) return undefined;
    const head = parts[2];
    const domain = head[0] === "e" ? "event" : head[0] === "p" ? "processing" : undefined;
    const ts = decodeTimerTs(head.slice(1));
    const key = tryUnb64url(parts[3]);
    const name = tryUnb64url(parts[4]);
    if (domain === undefined || ts === undefined || key === undefined || name === undefined) return undefined;
    return { kind: "timer", partition, timer: { domain, ts, key, name }, legacy: true };
  }
  if (!STATE_NAME.test(second) || (parts.length !== 3 && parts.length !== 4)) return undefined;
  const key = tryUnb64url(parts[2]);
  if (key === undefined) return undefined;
  if (parts.length === 3) return { kind: "state", partition, state: second, key };
  const subkey = tryUnb64url(parts[3]);
  if (subkey === undefined) return undefined;
  return { kind: "state", partition, state: second, key, subkey };
}
