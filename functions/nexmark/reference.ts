/**
 * Reference models ("oracles") of the Nexmark queries eddy implements: plain batch computations
 * over an array of events in stream order. The streaming implementation's output is compared with
 * these as a multiset, so the order of the rows returned here carries no meaning (it is merely
 * deterministic). The code favours clarity over speed, but every query is linear (or n log n)
 * in the number of events: Maps, no scans over all events per event.
 *
 * Every output row is a plain object with exactly the listed fields, in the listed order (Flink's
 * output column names). Times are epoch milliseconds. Windows are half-open, `[start, end)`, and
 * aligned to multiples of their slide (sliding) or size (tumbling) counted from epoch 0.
 *
 * The definitions:
 *
 * - q0 pass-through: every bid → {auction, bidder, price, dateTime, extra}.
 * - q1 currency conversion: every bid → {auction, bidder, price: 0.908 * price, dateTime, extra}
 *   (plain JavaScript multiplication, no rounding).
 * - q2 selection: every bid with auction % 123 === 0 → {auction, price}.
 * - q3 local item suggestion: inner join of auctions with category === 10 and persons with state
 *   in {"OR", "ID", "CA"} on auction.seller === person.id → {name, city, state, id} (id = the
 *   auction's id). One row per matching (auction event, person event) pair, whatever their order
 *   in the stream (the streaming side keeps both sides forever).
 * - q4 average closing price per category: an auction's winning price is the highest price among
 *   the bids with bid.auction === auction.id and auction.dateTime <= bid.dateTime <=
 *   auction.expires (inclusive at both ends; no reserve check). A bid counts whether it comes
 *   before or after its auction in the stream; only its dateTime matters. Auctions without such a
 *   bid produce nothing. Auctions close in order of (expires, id); every auction of the input
 *   closes (the streaming side closes the rest at end of input). Each closing auction outputs
 *   {category, avg}, avg = the mean (sum / count, a float, not Flink's integer AVG of BIGINT)
 *   of the winning prices of all closed auctions of that category so far, this one included.
 *   Auction ids must be unique (the generator never repeats one): a duplicate throws.
 * - q5 hot items: sliding windows of 10 s every 2 s over bids by dateTime; in each window, count
 *   the bids per auction and output every auction whose count equals the window's maximum count
 *   (ties all output) → {auction, num}. Windows without bids output nothing.
 * - q7 highest bid: tumbling 10 s windows over bids by dateTime; output every bid whose price
 *   equals the maximum price of its own window (ties all output) → {auction, price, bidder,
 *   dateTime, extra}. (Flink's SQL joins on `dateTime BETWEEN window_end - 10 s AND window_end`,
 *   which would also match a bid at exactly window_end against the previous window; here a bid
 *   belongs to exactly one window.)
 * - q8 monitor new users: tumbling 10 s windows; a person (windowed by person.dateTime) and an
 *   auction (windowed by auction.dateTime) in the same window with auction.seller === person.id.
 *   One row per (person, window) with at least one such auction → {id, name, starttime}
 *   (starttime = window start). As in Flink's SQL (GROUP BY id, name, window on the person side),
 *   a person id seen twice in one window (which the generator never does) gives one row per
 *   distinct (id, name), and several matching auctions still give one row.
 * - q11 user sessions: per bidder, session windows over bid dateTimes with a 10 s gap, Flink's
 *   (and eddy's runtime/core/windows.ts `mergeSession`/`intersects`) rule: each bid is a window
 *   [t, t + 10 000) and windows that overlap *or touch* merge, so a bid exactly 10 000 ms after
 *   the previous one of its session extends it. Output per session → {bidder, bid_count,
 *   starttime, endtime}, starttime = first bid time, endtime = last bid time + 10 000.
 *
 * Windowed queries assume the streaming side dropped no late event; `assertNoLateEvents` checks
 * that an input is on time for a bounded-out-of-orderness watermark.
 */
import type { Auction, Bid, NexmarkEvent, Person, QueryName } from "./model.ts";

/** One output row: a plain object with the query's columns in order. */
export type QueryRow = Record<string, unknown>;

const Q3_CATEGORY = 10;
const Q3_STATES: ReadonlySet<string> = new Set(["OR", "ID", "CA"]);
const Q5_SIZE_MS = 10_000;
const Q5_SLIDE_MS = 2_000;
const Q7_SIZE_MS = 10_000;
const Q8_SIZE_MS = 10_000;
const Q11_GAP_MS = 10_000;

// --- helpers ------------------------------------------------------------------------------------

function bidsOf(events: readonly NexmarkEvent[]): Bid[] {
  return events.filter((e): e is Bid => e.type === "bid");
}

function auctionsOf(events: readonly NexmarkEvent[]): Auction[] {
  return events.filter((e): e is Auction => e.type === "auction");
}

function personsOf(events: readonly NexmarkEvent[]): Person[] {
  return events.filter((e): e is Person => e.type === "person");
}

/** Start of the window of width `size` (aligned to multiples of `size` from 0) containing `t`. */
function alignedStart(t: number, size: number): number {
  const r = ((t % size) + size) % size; // floor modulo: negative times go to the cell below
  return t - r;
}

/** Appends `value` to the list under `key`. */
function push<K, V>(map: Map<K, V[]>, key: K, value: V): void {
  const list = map.get(key);
  if (list === undefined) map.set(key, [value]);
  else list.push(value);
}

// --- queries ------------------------------------------------------------------------------------

/** q0: every bid → {auction, bidder, price, dateTime, extra}. */
function q0(events: readonly NexmarkEvent[]): QueryRow[] {
  return bidsOf(events).map((b) => ({ auction: b.auction, bidder: b.bidder, price: b.price, dateTime: b.dateTime, extra: b.extra }));
}

/** q1: every bid with its price times 0.908 → {auction, bidder, price, dateTime, extra}. */
function q1(events: readonly NexmarkEvent[]): QueryRow[] {
  return bidsOf(events).map((b) => ({ auction: b.auction, bidder: b.bidder, price: 0.908 * b.price, dateTime: b.dateTime, extra: b.extra }));
}

/** q2: bids with auction % 123 === 0 → {auction, price}. */
function q2(events: readonly NexmarkEvent[]): QueryRow[] {
  return bidsOf(events)
    .filter((b) => b.auction % 123 === 0)
    .map((b) => ({ auction: b.auction, price: b.price }));
}

/**
 * q3: category-10 auctions joined with OR/ID/CA persons on seller = person id, one row per
 * matching pair regardless of stream order → {name, city, state, id (auction id)}.
 */
function q3(events: readonly NexmarkEvent[]): QueryRow[] {
  const localPersonsById = new Map<number, Person[]>();
  for (const p of personsOf(events)) if (Q3_STATES.has(p.state)) push(localPersonsById, p.id, p);
  const rows: QueryRow[] = [];
  for (const a of auctionsOf(events)) {
    if (a.category !== Q3_CATEGORY) continue;
    for (const p of localPersonsById.get(a.seller) ?? []) rows.push({ name: p.name, city: p.city, state: p.state, id: a.id });
  }
  return rows;
}

/**
 * q4: winning price of an auction = max price of its bids with dateTime in
 * [auction.dateTime, auction.expires] (both inclusive); auctions close in (expires, id) order;
 * each closing auction with a winning price → {category, avg of the category's winning prices so far}.
 */
function q4(events: readonly NexmarkEvent[]): QueryRow[] {
  const bidsByAuction = new Map<number, Bid[]>();
  for (const b of bidsOf(events)) push(bidsByAuction, b.auction, b);

  const seen = new Set<number>();
  const closed: { readonly auction: Auction; readonly winningPrice: number }[] = [];
  for (const a of auctionsOf(events)) {
    if (seen.has(a.id)) throw new Error(`nexmark q4 reference: duplicate auction id ${a.id}`);
    seen.add(a.id);
    let winningPrice: number | undefined;
    for (const b of bidsByAuction.get(a.id) ?? []) {
      const inInterval = a.dateTime <= b.dateTime && b.dateTime <= a.expires;
      if (inInterval && (winningPrice === undefined || b.price > winningPrice)) winningPrice = b.price;
    }
    if (winningPrice !== undefined) closed.push({ auction: a, winningPrice });
  }

  closed.sort((x, y) => x.auction.expires - y.auction.expires || x.auction.id - y.auction.id);

  const totals = new Map<number, { sum: number; count: number }>();
  const rows: QueryRow[] = [];
  for (const { auction, winningPrice } of closed) {
    let t = totals.get(auction.category);
    if (t === undefined) totals.set(auction.category, (t = { sum: 0, count: 0 }));
    t.sum += winningPrice;
    t.count += 1;
    rows.push({ category: auction.category, avg: t.sum / t.count });
  }
  return rows;
}

/**
 * q5: sliding 10 s / 2 s windows over bids; per window, every auction with the window's maximum
 * bid count → {auction, num}.
 */
function q5(events: readonly NexmarkEvent[]): QueryRow[] {
  // window start → auction → number of bids
  const counts = new Map<number, Map<number, number>>();
  for (const b of bidsOf(events)) {
    // The windows containing t are those starting at s (a multiple of the slide) with s <= t < s + size.
    for (let s = alignedStart(b.dateTime, Q5_SLIDE_MS); s > b.dateTime - Q5_SIZE_MS; s -= Q5_SLIDE_MS) {
      let perAuction = counts.get(s);
      if (perAuction === undefined) counts.set(s, (perAuction = new Map()));
      perAuction.set(b.auction, (perAuction.get(b.auction) ?? 0) + 1);
    }
  }
  const rows: QueryRow[] = [];
  for (const start of [...counts.keys()].sort((x, y) => x - y)) {
    const perAuction = counts.get(start)!;
    let max = 0;
    for (const num of perAuction.values()) if (num > max) max = num;
    for (const [auction, num] of perAuction) if (num === max) rows.push({ auction, num });
  }
  return rows;
}

/** q7: tumbling 10 s windows over bids; every bid with its window's maximum price. */
function q7(events: readonly NexmarkEvent[]): QueryRow[] {
  const bidsByWindow = new Map<number, Bid[]>();
  for (const b of bidsOf(events)) push(bidsByWindow, alignedStart(b.dateTime, Q7_SIZE_MS), b);
  const rows: QueryRow[] = [];
  for (const start of [...bidsByWindow.keys()].sort((x, y) => x - y)) {
    const windowBids = bidsByWindow.get(start)!;
    let max = -Infinity;
    for (const b of windowBids) if (b.price > max) max = b.price;
    for (const b of windowBids) {
      if (b.price === max) rows.push({ auction: b.auction, price: b.price, bidder: b.bidder, dateTime: b.dateTime, extra: b.extra });
    }
  }
  return rows;
}

/**
 * q8: tumbling 10 s windows; one row per distinct (person id, name, window) for which an auction
 * of that window has seller = person id → {id, name, starttime}.
 */
function q8(events: readonly NexmarkEvent[]): QueryRow[] {
  // window start → sellers with an auction in that window
  const sellersByWindow = new Map<number, Set<number>>();
  for (const a of auctionsOf(events)) {
    const start = alignedStart(a.dateTime, Q8_SIZE_MS);
    let sellers = sellersByWindow.get(start);
    if (sellers === undefined) sellersByWindow.set(start, (sellers = new Set()));
    sellers.add(a.seller);
  }
  // window start → person id → distinct names (one entry per person when ids are unique)
  const personsByWindow = new Map<number, Map<number, Set<string>>>();
  for (const p of personsOf(events)) {
    const start = alignedStart(p.dateTime, Q8_SIZE_MS);
    let byId = personsByWindow.get(start);
    if (byId === undefined) personsByWindow.set(start, (byId = new Map()));
    let names = byId.get(p.id);
    if (names === undefined) byId.set(p.id, (names = new Set()));
    names.add(p.name);
  }
  const rows: QueryRow[] = [];
  for (const start of [...personsByWindow.keys()].sort((x, y) => x - y)) {
    const sellers = sellersByWindow.get(start);
    if (sellers === undefined) continue;
    for (const [id, names] of personsByWindow.get(start)!) {
      if (!sellers.has(id)) continue;
      for (const name of names) rows.push({ id, name, starttime: start });
    }
  }
  return rows;
}

/**
 * q11: per bidder, session windows with a 10 s gap where touching windows merge (a bid at exactly
 * last + 10 000 extends the session) → {bidder, bid_count, starttime, endtime = last + 10 000}.
 */
function q11(events: readonly NexmarkEvent[]): QueryRow[] {
  const timesByBidder = new Map<number, number[]>();
  for (const b of bidsOf(events)) push(timesByBidder, b.bidder, b.dateTime);
  const rows: QueryRow[] = [];
  for (const [bidder, times] of timesByBidder) {
    times.sort((x, y) => x - y);
    let start = times[0]!;
    let last = start;
    let count = 0;
    for (const t of times) {
      // The session so far is [start, last + gap); the bid's window [t, t + gap) intersects it in
      // Flink's sense (closed bounds) iff t <= last + gap, given t >= start.
      if (t > last + Q11_GAP_MS) {
        rows.push({ bidder, bid_count: count, starttime: start, endtime: last + Q11_GAP_MS });
        start = t;
        count = 0;
      }
      last = t;
      count++;
    }
    rows.push({ bidder, bid_count: count, starttime: start, endtime: last + Q11_GAP_MS });
  }
  return rows;
}

// --- API ------------------------------------------------------------------------------------

/** The reference model of every query: events in stream order → output rows (a multiset). */
export const referenceModels: Record<QueryName, (events: readonly NexmarkEvent[]) => QueryRow[]> = {
  q0,
  q1,
  q2,
  q3,
  q4,
  q5,
  q7,
  q8,
  q11,
};

/** The expected output rows of `query` over `events` (in stream order); compare as multisets. */
export function referenceResults(query: QueryName, events: readonly NexmarkEvent[]): QueryRow[] {
  const model = Object.hasOwn(referenceModels, query) ? referenceModels[query] : undefined;
  if (model === undefined) throw new RangeError(`nexmark: unknown query ${String(query)}`);
  return model(events);
}

/**
 * Throws unless every event is on time for a bounded-out-of-orderness watermark of `boundMs`
 * (W = max dateTime seen − boundMs − 1; late = dateTime <= W), i.e. if some event's dateTime is
 * more than `boundMs` behind the maximum dateTime of the events before it. The reference models
 * count every event; the streaming side would drop (or side-output) late ones.
 */
export function assertNoLateEvents(events: readonly NexmarkEvent[], boundMs: number): void {
  if (!(boundMs >= 0)) throw new RangeError(`nexmark: boundMs must be >= 0, got ${boundMs}`);
  let maxSoFar = -Infinity;
  for (let i = 0; i < events.length; i++) {
    const t = events[i]!.dateTime;
    if (maxSoFar - t > boundMs) {
      throw new Error(`nexmark: event ${i} (${events[i]!.type}, dateTime ${t}) is ${maxSoFar - t} ms behind the maximum ${maxSoFar} seen before it, more than the bound ${boundMs} ms`);
    }
    if (t > maxSoFar) maxSoFar = t;
  }
}
