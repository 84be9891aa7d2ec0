/**
 * Configuration and id/time arithmetic of the Nexmark event generator (see generator.ts).
 *
 * The constants, defaults and formulas follow Apache Beam's Nexmark suite
 * (sdks/java/testing/nexmark: NexmarkConfiguration, sources/generator/GeneratorConfig and
 * sources/generator/model/{Person,Auction,Bid}Generator) and the nexmark/nexmark repository's
 * Flink port (nexmark-flink/.../generator). This file re-derives them; it copies no code.
 */

/** First ids handed out: queries find matches even on small event counts. */
export const FIRST_PERSON_ID = 1000;
export const FIRST_AUCTION_ID = 1000;
export const FIRST_CATEGORY_ID = 10;
export const NUM_CATEGORIES = 5;

/** Kinds per epoch of PROPORTION_DENOMINATOR consecutive event ids: person, auctions, then bids. */
export const PERSON_PROPORTION = 1;
export const AUCTION_PROPORTION = 3;
export const BID_PROPORTION = 46;
export const PROPORTION_DENOMINATOR = PERSON_PROPORTION + AUCTION_PROPORTION + BID_PROPORTION;

/**
 * Hot sellers/auctions/bidders are the first (bidders: second) member of each block of this many
 * consecutive people/auctions (Beam's HOT_SELLER_RATIO / HOT_AUCTION_RATIO / HOT_BIDDER_RATIO).
 */
export const HOT_BLOCK = 100;

/** Bid channels (nexmark/nexmark's BidGenerator). */
export const HOT_CHANNELS: readonly string[] = ["Google", "Facebook", "Baidu", "Apple"];
/** A bid uses a hot channel unless nextInt(HOT_CHANNELS_RATIO) == 0, i.e. with probability 1/2. */
export const HOT_CHANNELS_RATIO = 2;
/** Number of generated ("channel-<n>") channels. */
export const CHANNELS_NUMBER = 10_000;

/** Default base time: 2026-01-01T00:00:00Z. */
export const DEFAULT_BASE_TIME = Date.UTC(2026, 0, 1);

/**
 * The generator's configuration. Treat it as immutable: resolved settings are cached per object.
 * Every field but `seed` defaults to Beam's NexmarkConfiguration default (for a single generator
 * with a constant rate).
 */
export interface NexmarkConfig {
  /** Seeds all randomness (with the event id). Any safe integer. */
  readonly seed: number;
  /** Events per second of the (single) generator's timeline. Default 10 000. */
  readonly firstEventRate?: number;
  /** Event time of event 0, epoch ms. Default 2026-01-01T00:00:00Z. */
  readonly baseTime?: number;
  /**
   * Events are emitted in pseudo-random order within consecutive groups of this many event
   * numbers (Beam's outOfOrderGroupSize): position p emits event id
   * (p - p mod size) + (p × 953 mod size). 1 (default) = in order. Must not be a multiple of 953
   * (Beam would repeat events). As in Beam, sizes dividing 952 (2, 4, 7, 8, 14, 17, ...) leave the
   * order unchanged, since 953 ≡ 1 modulo them.
   */
  readonly outOfOrderGroupSize?: number;
  /** Target average size of a person event in bytes (default 200). */
  readonly avgPersonBytes?: number;
  /** Target average size of an auction event in bytes (default 500). */
  readonly avgAuctionBytes?: number;
  /** Target average size of a bid event in bytes (default 100). */
  readonly avgBidBytes?: number;
  /**
   * How an event's size is measured when sizing `extra`: "json" (default) = the length of
   * eventToJson's output, so the JSON lines average the configured sizes wherever that is
   * possible; "beam" = Beam's idealized size (8 bytes per number plus the string lengths), which
   * gives `extra` the same lengths as Beam and Flink's generator.
   */
  readonly sizeAccounting?: "json" | "beam";
  /** People considered active for new auctions and bids (default 1000). */
  readonly numActivePeople?: number;
  /** Auctions considered in flight for new bids; also sets the auction length (default 100). */
  readonly numInFlightAuctions?: number;
  /** A bid is for a hot auction with probability 1 - 1/hotAuctionRatio (default 2). */
  readonly hotAuctionRatio?: number;
  /** An auction is by a hot seller with probability 1 - 1/hotSellersRatio (default 4). */
  readonly hotSellersRatio?: number;
  /** A bid is by a hot bidder with probability 1 - 1/hotBiddersRatio (default 4). */
  readonly hotBiddersRatio?: number;
  /** Random person references may point this many people past the last one generated (default 10). */
  readonly personIdLead?: number;
  /** Random auction references may point this many auctions past the last one generated (default 10). */
  readonly auctionIdLead?: number;
}

/** A NexmarkConfig with every default filled in and derived values computed. */
export interface ResolvedNexmarkConfig {
  readonly seed: number;
  readonly seedLo: number;
  readonly seedHi: number;
  readonly firstEventRate: number;
  readonly baseTime: number;
  /** Microseconds between consecutive event numbers. */
  readonly interEventDelayUs: number;
  readonly outOfOrderGroupSize: number;
  readonly avgPersonBytes: number;
  readonly avgAuctionBytes: number;
  readonly avgBidBytes: number;
  readonly sizeAccounting: "json" | "beam";
  readonly numActivePeople: number;
  readonly numInFlightAuctions: number;
  readonly hotAuctionRatio: number;
  readonly hotSellersRatio: number;
  readonly hotBiddersRatio: number;
  readonly personIdLead: number;
  readonly auctionIdLead: number;
  /** Event numbers until numInFlightAuctions more auctions have been generated. */
  readonly eventsForInFlightAuctions: number;
}

export class NexmarkConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "NexmarkConfigError";
  }
}

const cache = new WeakMap<NexmarkConfig, ResolvedNexmarkConfig>();

function int(name: string, value: number | undefined, dflt: number, min: number): number {
  const v = value ?? dflt;
  if (!Number.isSafeInteger(v) || v < min) throw new NexmarkConfigError(`nexmark: ${name} must be an integer >= ${min}, got ${v}`);
  return v;
}

/** Fills in defaults and validates; cached per config object. */
export function resolveConfig(config: NexmarkConfig): ResolvedNexmarkConfig {
  const hit = cache.get(config);
  if (hit !== undefined) return hit;
  const seed = config.seed;
  if (!Number.isSafeInteger(seed)) throw new NexmarkConfigError(`nexmark: seed must be a safe integer, got ${seed}`);
  const firstEventRate = config.firstEventRate ?? 10_000;
  if (!(firstEventRate > 0) || !Number.isFinite(firstEventRate)) {
    throw new NexmarkConfigError(`nexmark: firstEventRate must be a positive number, got ${firstEventRate}`);
  }
  const baseTime = int("baseTime", config.baseTime, DEFAULT_BASE_TIME, Number.MIN_SAFE_INTEGER);
  const outOfOrderGroupSize = int("outOfOrderGroupSize", config.outOfOrderGroupSize, 1, 1);
  if (outOfOrderGroupSize % 953 === 0) {
    // Beam permutes a group with n -> n * 953 mod size: not a permutation for these sizes.
    throw new NexmarkConfigError(`nexmark: outOfOrderGroupSize must not be a multiple of 953, got ${outOfOrderGroupSize}`);
  }
  const sizeAccounting = config.sizeAccounting ?? "json";
  if (sizeAccounting !== "json" && sizeAccounting !== "beam") {
    throw new NexmarkConfigError(`nexmark: sizeAccounting must be "json" or "beam", got ${String(sizeAccounting)}`);
  }
  const numInFlightAuctions = int("numInFlightAuctions", config.numInFlightAuctions, 100, 1);
  const seedHi = Math.floor(seed / 0x1_0000_0000);
  const resolved: ResolvedNexmarkConfig = {
    seed,
    seedLo: (seed - seedHi * 0x1_0000_0000) | 0,
    seedHi: seedHi | 0,
    firstEventRate,
    baseTime,
    // Flink's port keeps the delay fractional (Beam rounds it to whole microseconds; the two agree
    // for rates dividing 1 000 000, such as the default).
    interEventDelayUs: 1_000_000 / firstEventRate,
    outOfOrderGroupSize,
    avgPersonBytes: int("avgPersonBytes", config.avgPersonBytes, 200, 0),
    avgAuctionBytes: int("avgAuctionBytes", config.avgAuctionBytes, 500, 0),
    avgBidBytes: int("avgBidBytes", config.avgBidBytes, 100, 0),
    sizeAccounting,
    numActivePeople: int("numActivePeople", config.numActivePeople, 1000, 1),
    numInFlightAuctions,
    hotAuctionRatio: int("hotAuctionRatio", config.hotAuctionRatio, 2, 1),
    hotSellersRatio: int("hotSellersRatio", config.hotSellersRatio, 4, 1),
    hotBiddersRatio: int("hotBiddersRatio", config.hotBiddersRatio, 4, 1),
    personIdLead: int("personIdLead", config.personIdLead, 10, 0),
    auctionIdLead: int("auctionIdLead", config.auctionIdLead, 10, 0),
    eventsForInFlightAuctions: Math.floor((numInFlightAuctions * PROPORTION_DENOMINATOR) / AUCTION_PROPORTION),
  };
  cache.set(config, resolved);
  return resolved;
}

/** The kind of the event with this id: fixed by its offset in its epoch of 50 ids. */
export function eventKind(eventId: number): "person" | "auction" | "bid" {
  const offset = eventId % PROPORTION_DENOMINATOR;
  return offset < PERSON_PROPORTION ? "person" : offset < PERSON_PROPORTION + AUCTION_PROPORTION ? "auction" : "bid";
}

/**
 * The id (base 0: without FIRST_PERSON_ID) of the last person generated at or before this event
 * id; the new person's own id when the event is a person (Beam's lastBase0PersonId).
 */
export function lastBase0PersonId(eventId: number): number {
  const epoch = Math.floor(eventId / PROPORTION_DENOMINATOR);
  const offset = eventId % PROPORTION_DENOMINATOR;
  return epoch * PERSON_PROPORTION + Math.min(offset, PERSON_PROPORTION - 1);
}

/**
 * The id (base 0) of the last auction generated at or before this event id; the new auction's own
 * id when the event is an auction (Beam's lastBase0AuctionId). -1 before the first auction.
 */
export function lastBase0AuctionId(eventId: number): number {
  const epoch = Math.floor(eventId / PROPORTION_DENOMINATOR);
  const offset = eventId % PROPORTION_DENOMINATOR;
  if (offset < PERSON_PROPORTION) return (epoch - 1) * AUCTION_PROPORTION + AUCTION_PROPORTION - 1;
  if (offset >= PERSON_PROPORTION + AUCTION_PROPORTION) return epoch * AUCTION_PROPORTION + AUCTION_PROPORTION - 1;
  return epoch * AUCTION_PROPORTION + offset - PERSON_PROPORTION;
}

/** The id of the last person that exists at this event (FIRST_PERSON_ID included). */
export const lastPersonId = (eventId: number): number => FIRST_PERSON_ID + lastBase0PersonId(eventId);
/** The id of the last auction that exists at this event (FIRST_AUCTION_ID included). */
export const lastAuctionId = (eventId: number): number => FIRST_AUCTION_ID + lastBase0AuctionId(eventId);

/**
 * The event id emitted at this position (event number) of the stream: the identity with
 * outOfOrderGroupSize 1, otherwise Beam's permutation within each group of that many positions
 * (nextAdjustedEventNumber: base of the group + position * 953 mod size).
 */
export function eventIdAt(config: ResolvedNexmarkConfig, position: number): number {
  const n = config.outOfOrderGroupSize;
  if (n === 1) return position;
  const offset = position % n;
  // (position * 953) mod n, computed from the offset so that it stays exact.
  const permuted = offset * 953 <= Number.MAX_SAFE_INTEGER ? (offset * 953) % n : Number((BigInt(offset) * 953n) % BigInt(n));
  return position - offset + permuted;
}

/** Event time of an event id: base time + id × inter-event delay, in whole milliseconds. */
export function eventTimestamp(config: ResolvedNexmarkConfig, eventId: number): number {
  return config.baseTime + Math.floor(Math.floor(eventId * config.interEventDelayUs) / 1000);
}
