/**
 * A deterministic, seedable Nexmark event generator with the event model and distributions of
 * Apache Beam's Nexmark generator (sdks/java/testing/nexmark, sources/generator/...) and, for bid
 * channels and urls, of the nexmark/nexmark repository's Flink generator. The facts (constants,
 * formulas, distributions) are re-implemented here; see generator-config.ts for the arithmetic
 * on ids and times.
 *
 * Every event is a pure function of (config, event id): its kind, the ids it carries and its
 * timestamp follow from the id, and its random choices come from a small PRNG (sfc32) seeded
 * from the config's seed and the event id. Generation can therefore be split across processes by
 * event-id ranges and still produce the same stream.
 *
 * Where this deviates from Beam:
 * - randomness comes from sfc32 seeded per (seed, event id), not java.util.Random(eventId): the
 *   distributions are Beam's, the concrete values are not;
 * - `extra` is sized against the event's JSON length by default (`sizeAccounting: "json"`),
 *   Beam's idealized size with `sizeAccounting: "beam"`;
 * - bid channel urls are derived from the seed (Flink's generator draws them from an unseeded
 *   random per process), and a bid's bidder gets FIRST_PERSON_ID added once (Flink's generator
 *   adds it twice, pointing bidders 1000 ids past the people that exist);
 * - only a constant event rate on a single timeline (Beam's rate shapes, several generators and
 *   wallclock delays are not modelled);
 * - an outOfOrderGroupSize that is a multiple of 953 is rejected (Beam would emit duplicates).
 */
import type { Auction, Bid, NexmarkEvent, Person } from "./model.ts";
import {
  AUCTION_PROPORTION,
  CHANNELS_NUMBER,
  FIRST_AUCTION_ID,
  FIRST_CATEGORY_ID,
  FIRST_PERSON_ID,
  HOT_BLOCK,
  HOT_CHANNELS,
  HOT_CHANNELS_RATIO,
  NUM_CATEGORIES,
  PERSON_PROPORTION,
  PROPORTION_DENOMINATOR,
  eventIdAt,
  eventTimestamp,
  lastBase0AuctionId,
  lastBase0PersonId,
  resolveConfig,
  type NexmarkConfig,
  type ResolvedNexmarkConfig,
} from "./generator-config.ts";

export {
  DEFAULT_BASE_TIME,
  FIRST_AUCTION_ID,
  FIRST_CATEGORY_ID,
  FIRST_PERSON_ID,
  NexmarkConfigError,
  eventIdAt,
  eventKind,
  eventTimestamp,
  lastAuctionId,
  lastPersonId,
  resolveConfig,
  type NexmarkConfig,
  type ResolvedNexmarkConfig,
} from "./generator-config.ts";

// --- Word lists (Beam's PersonGenerator; identical in nexmark/nexmark) ---------------------------

export const US_STATES: readonly string[] = ["AZ", "CA", "ID", "OR", "WA", "WY"];
export const US_CITIES: readonly string[] = [
  "Phoenix", "Los Angeles", "San Francisco", "Boise", "Portland", "Bend", "Redmond", "Seattle", "Kent", "Cheyenne",
];
export const FIRST_NAMES: readonly string[] = ["Peter", "Paul", "Luke", "John", "Saul", "Vicky", "Kate", "Julie", "Sarah", "Deiter", "Walter"];
export const LAST_NAMES: readonly string[] = ["Shultz", "Abrams", "Spencer", "White", "Bartels", "Walton", "Smith", "Jones", "Noris"];

/** Prices are 100 × 10^(6u) rounded, u uniform in [0, 1): log-uniform in [MIN_PRICE, MAX_PRICE]. */
export const MIN_PRICE = 100;
export const MAX_PRICE = 100_000_000;

// --- PRNG: sfc32, one shared state (generation is synchronous, reseeded for every event) -------

const S = new Int32Array(4);

function fmix32(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  return h ^ (h >>> 16);
}

function nextU32(): number {
  const a = S[0]!;
  const b = S[1]!;
  const c = S[2]!;
  const d = (S[3]! + 1) | 0;
  const t = (((a + b) | 0) + d) | 0;
  S[0] = b ^ (b >>> 9);
  S[1] = (c + (c << 3)) | 0;
  S[2] = (((c << 21) | (c >>> 11)) + t) | 0;
  S[3] = d;
  return t >>> 0;
}

/** Seeds the state from four 32-bit words; distinct words give distinct states (fmix32 is a bijection). */
function reseed(a: number, b: number, c: number, d: number): void {
  S[0] = fmix32(a ^ 0x9e3779b9);
  S[1] = fmix32(b ^ 0x7f4a7c15);
  S[2] = fmix32(c ^ 0x632be5ab);
  S[3] = fmix32(d ^ 0x2545f491);
  for (let i = 0; i < 12; i++) nextU32();
}

function seedForEvent(c: ResolvedNexmarkConfig, eventId: number): void {
  const hi = Math.floor(eventId / 0x1_0000_0000);
  reseed(c.seedLo, c.seedHi, (eventId - hi * 0x1_0000_0000) | 0, hi);
}

/** Uniform integer in [0, n), n <= 2^32. */
function nextInt(n: number): number {
  return Math.floor((nextU32() * n) / 0x1_0000_0000);
}

/** Uniform double in [0, 1) with 53 random bits. */
function nextDouble(): number {
  return ((nextU32() >>> 5) * 0x400_0000 + (nextU32() >>> 6)) / 0x20_0000_0000_0000;
}

/** Uniform integer in [0, n) for any n up to 2^53. */
function nextLong(n: number): number {
  return n <= 0x1_0000_0000 ? nextInt(n) : Math.floor(nextDouble() * n);
}

// --- Strings (Beam's StringsGenerator) ----------------------------------------------------------

const MIN_STRING_LENGTH = 3;
const scratch = Buffer.allocUnsafe(1024);

/**
 * A string of 3..maxLength-1 characters, each a space (or `special`) with probability 1/13, else
 * a random lower-case letter; spaces at either end are trimmed away (as Java's trim does).
 */
function nextString(maxLength: number, special = 0x20): string {
  const len = MIN_STRING_LENGTH + nextInt(maxLength - MIN_STRING_LENGTH);
  for (let i = 0; i < len; i++) scratch[i] = nextInt(13) === 0 ? special : 0x61 + nextInt(26);
  let start = 0;
  let end = len;
  while (start < end && scratch[start] === 0x20) start++;
  while (end > start && scratch[end - 1] === 0x20) end--;
  return scratch.toString("latin1", start, end);
}

/**
 * A pool of random letters that `extra` strings are cut from, as Flink's generator does (Beam
 * draws every character). Built once from a fixed seed; which slice an event gets is random.
 */
const POOL_SIZE = 1 << 20;
let pool: string | undefined;

function letterPool(): string {
  if (pool === undefined) {
    const saved = S.slice();
    reseed(0x6e65786d, 0x61726b21, -1, -1); // not reachable from (seed, event id) pairs: those have hi < 2^21
    const buf = Buffer.allocUnsafe(POOL_SIZE);
    for (let i = 0; i < POOL_SIZE; i++) buf[i] = 0x61 + nextInt(26);
    pool = buf.toString("latin1");
    S.set(saved);
  }
  return pool;
}

/** A string of exactly `length` random lower-case letters. */
function nextExactString(length: number): string {
  if (length <= 0) return "";
  const p = letterPool();
  if (length < POOL_SIZE / 2) {
    const offset = nextInt(POOL_SIZE - length);
    return p.slice(offset, offset + length);
  }
  const buf = Buffer.allocUnsafe(length);
  for (let i = 0; i < length; i++) buf[i] = 0x61 + nextInt(26);
  return buf.toString("latin1");
}

/**
 * Padding that brings an event of `currentSize` to `desiredAverageSize` on average: its length is
 * uniform in [d - round(0.2 d), d + round(0.2 d)) for d = desired - current, or empty when the
 * event is already larger than the desired average (Beam's nextExtra).
 */
function nextExtra(currentSize: number, desiredAverageSize: number): string {
  if (currentSize > desiredAverageSize) return "";
  const d = desiredAverageSize - currentSize;
  const delta = Math.round(d * 0.2);
  return nextExactString(d - delta + (delta === 0 ? 0 : nextInt(2 * delta)));
}

/** Beam's PriceGenerator: round(10^(6u) × 100). */
function nextPrice(): number {
  return Math.round(Math.pow(10, nextDouble() * 6) * 100);
}

// --- Per-seed tables: bid urls (nexmark/nexmark's BidGenerator) --------------------------------

interface Tables {
  readonly hotUrls: readonly string[];
  readonly channelUrls: (string | undefined)[];
}

const tablesCache = new WeakMap<ResolvedNexmarkConfig, Tables>();
const TABLE_STREAM = 0x4000_0000; // hi word of the PRNG seed for tables; event ids use hi < 2^21

/** "https://www.nexmark.com/<a>/<b>/<c>/item.htm?query=1" with 3..4-character parts ('_' for spaces). */
function nextBaseUrl(): string {
  const a = nextString(5, 0x5f);
  const b = nextString(5, 0x5f);
  const c = nextString(5, 0x5f);
  return `https://www.nexmark.com/${a}/${b}/${c}/item.htm?query=1`;
}

function tablesFor(c: ResolvedNexmarkConfig): Tables {
  let t = tablesCache.get(c);
  if (t === undefined) {
    const saved = S.slice();
    const hotUrls = HOT_CHANNELS.map((_, i) => {
      reseed(c.seedLo, c.seedHi, i, TABLE_STREAM);
      return nextBaseUrl();
    });
    S.set(saved);
    t = { hotUrls, channelUrls: new Array<string | undefined>(CHANNELS_NUMBER) };
    tablesCache.set(c, t);
  }
  return t;
}

/** Java's Math.abs(Integer.reverse(i)) (which leaves Integer.MIN_VALUE negative). */
function reversedChannelId(i: number): number {
  let x = i >>> 0;
  let r = 0;
  for (let k = 0; k < 32; k++) {
    r = (r << 1) | (x & 1);
    x >>>= 1;
  }
  r |= 0;
  return r === -0x8000_0000 ? r : Math.abs(r);
}

/** The url of generated channel `i`: a base url, with "&channel_id=…" 9 times in 10. Fixed per (seed, i). */
function channelUrl(c: ResolvedNexmarkConfig, t: Tables, i: number): string {
  let url = t.channelUrls[i];
  if (url === undefined) {
    const saved = S.slice();
    reseed(c.seedLo, c.seedHi, i, TABLE_STREAM + 1);
    url = nextBaseUrl();
    if (nextInt(10) > 0) url += `&channel_id=${reversedChannelId(i)}`;
    S.set(saved);
    t.channelUrls[i] = url;
  }
  return url;
}

const channelNames: string[] = [];
const channelName = (i: number): string => (channelNames[i] ??= `channel-${i}`);

const creditCardGroups: string[] = [];
const cardGroup = (i: number): string => (creditCardGroups[i] ??= String(i).padStart(4, "0"));

// --- JSON sizes -------------------------------------------------------------------------------

/** Length of the decimal representation of an integer. */
function numLen(n: number): number {
  if (n < 0) return 1 + numLen(-n);
  if (n < 1e4) return n < 10 ? 1 : n < 100 ? 2 : n < 1000 ? 3 : 4;
  if (n < 1e8) return n < 1e5 ? 5 : n < 1e6 ? 6 : n < 1e7 ? 7 : 8;
  if (n < 1e12) return n < 1e9 ? 9 : n < 1e10 ? 10 : n < 1e11 ? 11 : 12;
  return String(n).length;
}

// --- Events -------------------------------------------------------------------------------------

/**
 * A random person id (base 0) among the active people, possibly up to `personIdLead` past the
 * last person generated so far (Beam's nextBase0PersonId).
 */
function nextBase0PersonId(c: ResolvedNexmarkConfig, eventId: number): number {
  const numPeople = lastBase0PersonId(eventId) + 1;
  const active = Math.min(numPeople, c.numActivePeople);
  return numPeople - active + nextLong(active + c.personIdLead);
}

/**
 * A random auction id (base 0) among the last numInFlightAuctions ones, possibly up to
 * `auctionIdLead` past the last auction generated so far (Beam's nextBase0AuctionId).
 */
function nextBase0AuctionId(c: ResolvedNexmarkConfig, eventId: number): number {
  const max = lastBase0AuctionId(eventId);
  const min = Math.max(max - c.numInFlightAuctions, 0);
  return min + nextLong(max - min + 1 + c.auctionIdLead);
}

function nextPerson(c: ResolvedNexmarkConfig, eventId: number, dateTime: number): Person {
  const id = lastBase0PersonId(eventId) + FIRST_PERSON_ID;
  const name = `${FIRST_NAMES[nextInt(FIRST_NAMES.length)]} ${LAST_NAMES[nextInt(LAST_NAMES.length)]}`;
  const emailAddress = `${nextString(7)}@${nextString(5)}.com`;
  const creditCard = `${cardGroup(nextInt(10000))} ${cardGroup(nextInt(10000))} ${cardGroup(nextInt(10000))} ${cardGroup(nextInt(10000))}`;
  const city = US_CITIES[nextInt(US_CITIES.length)]!;
  const state = US_STATES[nextInt(US_STATES.length)]!;
  const size =
    c.sizeAccounting === "beam"
      ? 8 + name.length + emailAddress.length + creditCard.length + city.length + state.length
      : PERSON_JSON_OVERHEAD + numLen(id) + name.length + emailAddress.length + creditCard.length + city.length + state.length + numLen(dateTime);
  const extra = nextExtra(size, c.avgPersonBytes);
  return { type: "person", id, name, emailAddress, creditCard, city, state, dateTime, extra };
}

/**
 * How long an auction runs: uniform in [1, 2 × horizon], where the horizon is the time until
 * numInFlightAuctions more auctions will have been generated (Beam's nextAuctionLengthMs).
 */
function nextAuctionLengthMs(c: ResolvedNexmarkConfig, eventId: number, dateTime: number): number {
  const horizonMs = eventTimestamp(c, eventId + c.eventsForInFlightAuctions) - dateTime;
  return 1 + nextLong(Math.max(horizonMs * 2, 1));
}

function nextAuction(c: ResolvedNexmarkConfig, eventId: number, dateTime: number): Auction {
  const id = lastBase0AuctionId(eventId) + FIRST_AUCTION_ID;
  // Hot seller with probability 1 - 1/hotSellersRatio: the first of the last block of 100 people.
  const seller =
    FIRST_PERSON_ID +
    (nextInt(c.hotSellersRatio) > 0 ? Math.floor(lastBase0PersonId(eventId) / HOT_BLOCK) * HOT_BLOCK : nextBase0PersonId(c, eventId));
  const category = FIRST_CATEGORY_ID + nextInt(NUM_CATEGORIES);
  const initialBid = nextPrice();
  const expires = dateTime + nextAuctionLengthMs(c, eventId, dateTime);
  const itemName = nextString(20);
  const description = nextString(100);
  const reserve = initialBid + nextPrice();
  const size =
    c.sizeAccounting === "beam"
      ? 8 + itemName.length + description.length + 8 + 8 + 8 + 8 + 8
      : AUCTION_JSON_OVERHEAD +
        numLen(id) +
        itemName.length +
        description.length +
        numLen(initialBid) +
        numLen(reserve) +
        numLen(dateTime) +
        numLen(expires) +
        numLen(seller) +
        numLen(category);
  const extra = nextExtra(size, c.avgAuctionBytes);
  return { type: "auction", id, itemName, description, initialBid, reserve, dateTime, expires, seller, category, extra };
}

function nextBid(c: ResolvedNexmarkConfig, t: Tables, eventId: number, dateTime: number): Bid {
  // Hot auction with probability 1 - 1/hotAuctionRatio: the first of the last block of 100 auctions.
  const auction =
    FIRST_AUCTION_ID +
    (nextInt(c.hotAuctionRatio) > 0 ? Math.floor(lastBase0AuctionId(eventId) / HOT_BLOCK) * HOT_BLOCK : nextBase0AuctionId(c, eventId));
  // Hot bidder with probability 1 - 1/hotBiddersRatio: the second of the last block of 100 people
  // (so that hot bidders and hot sellers differ).
  const bidder =
    FIRST_PERSON_ID +
    (nextInt(c.hotBiddersRatio) > 0 ? Math.floor(lastBase0PersonId(eventId) / HOT_BLOCK) * HOT_BLOCK + 1 : nextBase0PersonId(c, eventId));
  const price = nextPrice();
  let channel: string;
  let url: string;
  if (nextInt(HOT_CHANNELS_RATIO) > 0) {
    const i = nextInt(HOT_CHANNELS.length);
    channel = HOT_CHANNELS[i]!;
    url = t.hotUrls[i]!;
  } else {
    const i = nextInt(CHANNELS_NUMBER);
    channel = channelName(i);
    url = channelUrl(c, t, i);
  }
  const size =
    c.sizeAccounting === "beam"
      ? 8 + 8 + 8 + 8
      : BID_JSON_OVERHEAD + numLen(auction) + numLen(bidder) + numLen(price) + channel.length + url.length + numLen(dateTime);
  const extra = nextExtra(size, c.avgBidBytes);
  return { type: "bid", auction, bidder, price, channel, url, dateTime, extra };
}

function generate(c: ResolvedNexmarkConfig, t: Tables, eventId: number): NexmarkEvent {
  seedForEvent(c, eventId);
  const dateTime = eventTimestamp(c, eventId);
  const offset = eventId % PROPORTION_DENOMINATOR;
  if (offset < PERSON_PROPORTION) return nextPerson(c, eventId, dateTime);
  if (offset < PERSON_PROPORTION + AUCTION_PROPORTION) return nextAuction(c, eventId, dateTime);
  return nextBid(c, t, eventId, dateTime);
}

function checkEventId(eventId: number): void {
  if (!Number.isSafeInteger(eventId) || eventId < 0) throw new RangeError(`nexmark: event id must be a non-negative safe integer, got ${eventId}`);
}

/**
 * The event with this id: a pure function of (config, eventId). Its kind is fixed by the id's
 * offset in its epoch of 50 (1 person, 3 auctions, 46 bids), its timestamp is
 * baseTime + eventId × inter-event delay.
 */
export function generateEvent(config: NexmarkConfig, eventId: number): NexmarkEvent {
  checkEventId(eventId);
  const c = resolveConfig(config);
  return generate(c, tablesFor(c), eventId);
}

/**
 * `count` events in stream order from position `firstEventId` (the event number; the event id
 * itself when outOfOrderGroupSize is 1). With a larger group size, the event emitted at position
 * p is eventIdAt(p): Beam's permutation within each group, so events (and their timestamps) come
 * out of order inside a group. Generating [0, n) equals generating [0, k) then [k, n).
 */
export function* generateEvents(config: NexmarkConfig, count: number, firstEventId = 0): Generator<NexmarkEvent> {
  checkEventId(firstEventId);
  if (!Number.isSafeInteger(count) || count < 0) throw new RangeError(`nexmark: count must be a non-negative safe integer, got ${count}`);
  const c = resolveConfig(config);
  const t = tablesFor(c);
  const end = firstEventId + count;
  for (let p = firstEventId; p < end; p++) yield generate(c, t, eventIdAt(c, p));
}

// --- JSON ----------------------------------------------------------------------------------------

/**
 * One event as a JSON object with exactly model.ts's fields in model.ts's order (`type` first),
 * whatever the order or extra properties of the object passed. (V8's JSON.stringify of a fresh
 * literal is some three times faster than concatenating the text by hand.)
 */
export function eventToJson(e: NexmarkEvent): string {
  switch (e.type) {
    case "person":
      return JSON.stringify({
        type: e.type,
        id: e.id,
        name: e.name,
        emailAddress: e.emailAddress,
        creditCard: e.creditCard,
        city: e.city,
        state: e.state,
        dateTime: e.dateTime,
        extra: e.extra,
      });
    case "auction":
      return JSON.stringify({
        type: e.type,
        id: e.id,
        itemName: e.itemName,
        description: e.description,
        initialBid: e.initialBid,
        reserve: e.reserve,
        dateTime: e.dateTime,
        expires: e.expires,
        seller: e.seller,
        category: e.category,
        extra: e.extra,
      });
    case "bid":
      return JSON.stringify({
        type: e.type,
        auction: e.auction,
        bidder: e.bidder,
        price: e.price,
        channel: e.channel,
        url: e.url,
        dateTime: e.dateTime,
        extra: e.extra,
      });
  }
}

/** JSON length of each kind with empty strings and one-digit numbers, minus those digits. */
const PERSON_JSON_OVERHEAD =
  eventToJson({ type: "person", id: 0, name: "", emailAddress: "", creditCard: "", city: "", state: "", dateTime: 0, extra: "" }).length - 2;
const AUCTION_JSON_OVERHEAD =
  eventToJson({
    type: "auction",
    id: 0,
    itemName: "",
    description: "",
    initialBid: 0,
    reserve: 0,
    dateTime: 0,
    expires: 0,
    seller: 0,
    category: 0,
    extra: "",
  }).length - 7;
const BID_JSON_OVERHEAD = eventToJson({ type: "bid", auction: 0, bidder: 0, price: 0, channel: "", url: "", dateTime: 0, extra: "" }).length - 4;
