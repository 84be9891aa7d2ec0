import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { generateEvents } from "../../../functions/nexmark/generator.ts";
import type { Auction, Bid, NexmarkEvent, Person } from "../../../functions/nexmark/model.ts";
import { QUERIES } from "../../../functions/nexmark/model.ts";
import { assertNoLateEvents, referenceModels, referenceResults, type QueryRow } from "../../../functions/nexmark/reference.ts";
import { mergeSession, type TimeWindow } from "../../../runtime/core/windows.ts";

/** A base time that is a multiple of every window size and slide (2026-01-01T00:00:00Z). */
const T0 = Date.UTC(2026, 0, 1);

const person = (id: number, at: number, o: Partial<Pick<Person, "name" | "city" | "state">> = {}): Person => ({
  type: "person",
  id,
  name: o.name ?? `name-${id}`,
  emailAddress: `p${id}@x.com`,
  creditCard: "0000 0000 0000 0000",
  city: o.city ?? `city-${id}`,
  state: o.state ?? "OR",
  dateTime: T0 + at,
  extra: "",
});

const auction = (id: number, at: number, o: Partial<Pick<Auction, "seller" | "category">> & { expiresAt?: number } = {}): Auction => ({
  type: "auction",
  id,
  itemName: `item-${id}`,
  description: "",
  initialBid: 1,
  reserve: 2,
  dateTime: T0 + at,
  expires: T0 + (o.expiresAt ?? at + 60_000),
  seller: o.seller ?? 1,
  category: o.category ?? 10,
  extra: "",
});

const bid = (auctionId: number, at: number, price: number, bidder = 1, extra = ""): Bid => ({
  type: "bid",
  auction: auctionId,
  bidder,
  price,
  channel: "Google",
  url: "https://www.nexmark.com/a/b/c/item.htm?query=1",
  dateTime: T0 + at,
  extra,
});

/** Rows as a sorted list of their JSON texts: equal iff equal multisets with equal field order. */
const multiset = (rows: readonly QueryRow[]): string[] => rows.map((r) => JSON.stringify(r)).sort();

const expectMultiset = (actual: readonly QueryRow[], expected: readonly QueryRow[]): void => {
  expect(multiset(actual)).toEqual(multiset(expected));
};

describe("q0 / q1 / q2: per-bid queries", () => {
  const events: NexmarkEvent[] = [
    person(1, 0),
    bid(1107, 1, 1000, 7, "x"), // 1107 = 9 × 123
    auction(1000, 2),
    bid(1000, 3, 250, 8, "y"),
    bid(0, 4, 5, 9), // 0 % 123 === 0
  ];

  it("q0 passes every bid through with Flink's columns", () => {
    const rows = referenceResults("q0", events);
    expect(rows).toEqual([
      { auction: 1107, bidder: 7, price: 1000, dateTime: T0 + 1, extra: "x" },
      { auction: 1000, bidder: 8, price: 250, dateTime: T0 + 3, extra: "y" },
      { auction: 0, bidder: 9, price: 5, dateTime: T0 + 4, extra: "" },
    ]);
    for (const r of rows) expect(Object.keys(r)).toEqual(["auction", "bidder", "price", "dateTime", "extra"]);
  });

  it("q1 multiplies the price by 0.908 (plain JS multiplication)", () => {
    const rows = referenceResults("q1", events);
    expect(rows.map((r) => r["price"])).toEqual([0.908 * 1000, 0.908 * 250, 0.908 * 5]);
    expect(rows[0]).toEqual({ auction: 1107, bidder: 7, price: 908, dateTime: T0 + 1, extra: "x" });
    for (const r of rows) expect(Object.keys(r)).toEqual(["auction", "bidder", "price", "dateTime", "extra"]);
  });

  it("q2 keeps the bids with auction % 123 === 0", () => {
    const rows = referenceResults("q2", events);
    expect(rows).toEqual([
      { auction: 1107, price: 1000 },
      { auction: 0, price: 5 },
    ]);
    for (const r of rows) expect(Object.keys(r)).toEqual(["auction", "price"]);
  });
});

describe("q3: local item suggestion", () => {
  it("joins category-10 auctions with OR/ID/CA sellers whatever the arrival order", () => {
    const events: NexmarkEvent[] = [
      auction(11, 0, { seller: 2, category: 10 }), // before its person (2, CA): matches
      person(1, 1, { name: "Ann", city: "Portland", state: "OR" }),
      auction(10, 2, { seller: 1, category: 10 }), // after its person (1, OR): matches
      auction(12, 3, { seller: 1, category: 11 }), // wrong category: no
      person(2, 4, { name: "Bob", city: "Los Angeles", state: "CA" }),
      person(3, 5, { name: "Cat", city: "Seattle", state: "WA" }),
      auction(13, 6, { seller: 3, category: 10 }), // seller in WA: no
      auction(14, 7, { seller: 4, category: 10 }), // no such person: no
      auction(15, 8, { seller: 1, category: 10 }), // second matching auction of person 1
      person(5, 9, { name: "Dan", city: "Boise", state: "ID" }),
      auction(16, 10_000_000, { seller: 5, category: 10 }), // much later: still joined (both sides kept forever)
    ];
    const rows = referenceResults("q3", events);
    expectMultiset(rows, [
      { name: "Bob", city: "Los Angeles", state: "CA", id: 11 },
      { name: "Ann", city: "Portland", state: "OR", id: 10 },
      { name: "Ann", city: "Portland", state: "OR", id: 15 },
      { name: "Dan", city: "Boise", state: "ID", id: 16 },
    ]);
    for (const r of rows) expect(Object.keys(r)).toEqual(["name", "city", "state", "id"]);
  });
});

describe("q4: average closing price per category", () => {
  it("takes the max bid inside [dateTime, expires], closes in (expires, id) order, averages per category", () => {
    const events: NexmarkEvent[] = [
      bid(3, 4_000, 200), // arrives before auction 3; inside [0, 5000]
      auction(1, 0, { category: 10, expiresAt: 10_000 }),
      auction(6, 0, { category: 10, expiresAt: 5_000 }),
      auction(3, 0, { category: 11, expiresAt: 5_000 }),
      auction(5, 0, { category: 11, expiresAt: 3_000 }),
      bid(1, 0, 100), // auction 1: at its start (inclusive)
      bid(2, 999, 5_000), // auction 2 (not yet seen): before its start 1000, ignored
      auction(2, 1_000, { category: 10, expiresAt: 5_000 }),
      auction(4, 1_000, { category: 11, expiresAt: 20_000 }),
      bid(2, 2_000, 50), // auction 2: tie for the max ...
      bid(2, 3_000, 50), // ... one winning price of 50
      bid(5, 3_001, 1), // auction 5: 1 ms after its expiry, ignored -> auction 5 closes without a winner
      bid(6, 5_000, 150), // auction 6: at its expiry (inclusive)
      bid(2, 5_001, 9_999), // auction 2: after its expiry, ignored
      bid(1, 10_000, 300), // auction 1: at its expiry
      bid(1, 10_001, 10_000), // auction 1: after its expiry, ignored
      bid(99, 11_000, 7), // no such auction
      bid(4, 15_000, 400), // auction 4
    ];
    // Winning prices: 1 -> 300, 2 -> 50, 3 -> 200, 4 -> 400, 5 -> none, 6 -> 150.
    // Closing order by (expires, id): 5 (3000, no row), 2 (5000), 3 (5000), 6 (5000), 1 (10000), 4 (20000).
    //   auction 2, cat 10: avg(50) = 50
    //   auction 3, cat 11: avg(200) = 200
    //   auction 6, cat 10: avg(50, 150) = 100   (were 6 closed before 2, the rows would be 150 then 100)
    //   auction 1, cat 10: avg(50, 150, 300) = 500 / 3
    //   auction 4, cat 11: avg(200, 400) = 300
    const rows = referenceResults("q4", events);
    expect(rows).toEqual([
      { category: 10, avg: 50 },
      { category: 11, avg: 200 },
      { category: 10, avg: 100 },
      { category: 10, avg: 500 / 3 },
      { category: 11, avg: 300 },
    ]);
    for (const r of rows) expect(Object.keys(r)).toEqual(["category", "avg"]);
  });

  it("produces nothing without bids and rejects duplicate auction ids", () => {
    expect(referenceResults("q4", [auction(1, 0), auction(2, 0)])).toEqual([]);
    expect(() => referenceResults("q4", [auction(1, 0), auction(1, 5)])).toThrow(/duplicate auction id 1/);
  });
});

describe("q5: hot items", () => {
  it("outputs every auction tied for the max count of each 10 s / 2 s window", () => {
    const events: NexmarkEvent[] = [
      bid(1, 1_000, 1), // windows starting -8000, -6000, -4000, -2000, 0
      bid(2, 1_999, 1), // windows starting -8000, -6000, -4000, -2000, 0
      bid(2, 2_000, 1), // windows starting -6000, -4000, -2000, 0, 2000 (not -8000: [-8000, 2000) excludes 2000)
      bid(3, 11_999, 1), // windows starting 2000, 4000, 6000, 8000, 10000 (not 0: [0, 10000) excludes it)
    ];
    // Relative window starts and counts:
    //   -8000: {1: 1, 2: 1}  -> tie: (1, 1), (2, 1)
    //   -6000, -4000, -2000, 0: {1: 1, 2: 2} -> (2, 2) four times
    //   2000: {2: 1, 3: 1}   -> tie: (2, 1), (3, 1)
    //   4000, 6000, 8000, 10000: {3: 1} -> (3, 1) four times
    //   windows from 12000 on hold no bids: nothing
    const rows = referenceResults("q5", events);
    expectMultiset(rows, [
      { auction: 1, num: 1 },
      { auction: 2, num: 1 },
      ...Array.from({ length: 4 }, () => ({ auction: 2, num: 2 })),
      { auction: 2, num: 1 },
      { auction: 3, num: 1 },
      ...Array.from({ length: 4 }, () => ({ auction: 3, num: 1 })),
    ]);
    for (const r of rows) expect(Object.keys(r)).toEqual(["auction", "num"]);
  });

  it("aligns windows to epoch 0", () => {
    // One bid at 1 ms after the epoch: windows starting -8000 ... 0 -> five rows.
    const b: Bid = { ...bid(4, 0, 1), dateTime: 1 };
    expect(referenceResults("q5", [b])).toEqual(Array.from({ length: 5 }, () => ({ auction: 4, num: 1 })));
  });
});

describe("q7: highest bid", () => {
  it("outputs every bid tied for the max price of its own tumbling 10 s window", () => {
    const events: NexmarkEvent[] = [
      bid(1, 0, 100, 11, "a"), // window 0
      bid(2, 5_000, 500, 12, "b"), // window 0, max (tie)
      bid(3, 9_999, 500, 13, "c"), // window 0, max (tie)
      bid(4, 10_000, 500, 14, "d"), // window 10000 (not window 0), its max
      bid(5, 15_000, 20, 15, "e"), // window 10000
      // window 20000: no bids, nothing
      bid(6, 30_000, 7, 16, "f"), // window 30000, alone
    ];
    const rows = referenceResults("q7", events);
    expectMultiset(rows, [
      { auction: 2, price: 500, bidder: 12, dateTime: T0 + 5_000, extra: "b" },
      { auction: 3, price: 500, bidder: 13, dateTime: T0 + 9_999, extra: "c" },
      { auction: 4, price: 500, bidder: 14, dateTime: T0 + 10_000, extra: "d" },
      { auction: 6, price: 7, bidder: 16, dateTime: T0 + 30_000, extra: "f" },
    ]);
    for (const r of rows) expect(Object.keys(r)).toEqual(["auction", "price", "bidder", "dateTime", "extra"]);
  });
});

describe("q8: monitor new users", () => {
  it("matches a person and their auctions in the same tumbling 10 s window only", () => {
    const events: NexmarkEvent[] = [
      person(1, 1_000, { name: "Ann" }), // window 0
      auction(100, 5_000, { seller: 1 }), // window 0: match
      auction(101, 9_999, { seller: 1 }), // window 0: a second match, still one row
      person(2, 9_000, { name: "Bob" }), // window 0
      auction(102, 10_000, { seller: 2 }), // window 10000: adjacent, no match
      auction(103, 8_000, { seller: 3 }), // window 0
      person(3, 12_000, { name: "Cat" }), // window 10000: adjacent, no match
      person(4, 21_000, { name: "Dan" }), // window 20000
      auction(104, 29_999, { seller: 4 }), // window 20000: match
      auction(105, 25_000, { seller: 7 }), // no such person
    ];
    const rows = referenceResults("q8", events);
    expectMultiset(rows, [
      { id: 1, name: "Ann", starttime: T0 },
      { id: 4, name: "Dan", starttime: T0 + 20_000 },
    ]);
    for (const r of rows) expect(Object.keys(r)).toEqual(["id", "name", "starttime"]);
  });

  it("gives one row per distinct (id, name) if a person id repeats in a window (should not happen)", () => {
    const events: NexmarkEvent[] = [
      person(5, 31_000, { name: "X" }),
      person(5, 32_000, { name: "X" }),
      person(5, 33_000, { name: "Y" }),
      auction(106, 35_000, { seller: 5 }),
    ];
    expectMultiset(referenceResults("q8", events), [
      { id: 5, name: "X", starttime: T0 + 30_000 },
      { id: 5, name: "Y", starttime: T0 + 30_000 },
    ]);
  });
});

describe("q11: user sessions", () => {
  it("merges bids up to exactly 10 s apart (touching windows merge, as in mergeSession) per bidder", () => {
    const events: NexmarkEvent[] = [
      bid(1, 0, 1, 1),
      bid(1, 5_000, 1, 2),
      bid(1, 5_000, 1, 2), // same time twice: both counted
      bid(1, 10_000, 1, 1), // exactly 10 s after 0: [0, 10000) and [10000, 20000) touch -> merged
      bid(1, 14_999, 1, 2), // 9 999 ms after 5000: merged
      bid(1, 20_000, 1, 1), // exactly 10 s after 10000: merged
      bid(1, 30_001, 1, 1), // 10 001 ms after 20000: new session
      bid(1, 100_000, 1, 2), // new session for bidder 2
      bid(1, 95_000, 1, 2), // out of stream order: same session as 100000
    ];
    // Bidder 1: {0, 10000, 20000} -> [0, 30000), 3 bids; {30001} -> [30001, 40001), 1 bid.
    // Bidder 2: {5000, 5000, 14999} -> [5000, 24999), 3 bids; {95000, 100000} -> [95000, 110000), 2 bids.
    const rows = referenceResults("q11", events);
    expectMultiset(rows, [
      { bidder: 1, bid_count: 3, starttime: T0, endtime: T0 + 30_000 },
      { bidder: 1, bid_count: 1, starttime: T0 + 30_001, endtime: T0 + 40_001 },
      { bidder: 2, bid_count: 3, starttime: T0 + 5_000, endtime: T0 + 24_999 },
      { bidder: 2, bid_count: 2, starttime: T0 + 95_000, endtime: T0 + 110_000 },
    ]);
    for (const r of rows) expect(Object.keys(r)).toEqual(["bidder", "bid_count", "starttime", "endtime"]);
  });

  it("agrees with folding runtime/core/windows.ts mergeSession over the bids in stream order", () => {
    const bidArb = fc.record({ bidder: fc.integer({ min: 1, max: 3 }), step: fc.integer({ min: 0, max: 30 }) });
    fc.assert(
      fc.property(fc.array(bidArb, { maxLength: 40 }), (spec) => {
        // Times on a 1 s grid (random order), so bids exactly 10 s apart are common.
        const bids = spec.map(({ bidder, step }) => bid(1, step * 1_000, 1, bidder));
        const sessions = new Map<number, TimeWindow[]>();
        for (const b of bids) {
          const existing = sessions.get(b.bidder) ?? [];
          const { merged, absorbed } = mergeSession(existing, { start: b.dateTime, end: b.dateTime + 10_000 });
          const rest = existing.filter((w) => !absorbed.includes(w) && !(w.start === merged.start && w.end === merged.end));
          sessions.set(b.bidder, [...rest, merged]);
        }
        const expected: QueryRow[] = [];
        for (const [bidder, windows] of sessions) {
          for (const w of windows) {
            const inside = bids.filter((b) => b.bidder === bidder && w.start <= b.dateTime && b.dateTime < w.end);
            const last = Math.max(...inside.map((b) => b.dateTime));
            expect(w.end).toBe(last + 10_000);
            expected.push({ bidder, bid_count: inside.length, starttime: w.start, endtime: w.end });
          }
        }
        expectMultiset(referenceResults("q11", bids), expected);
      }),
      { numRuns: 300 },
    );
  });
});

describe("assertNoLateEvents", () => {
  it("accepts events up to the bound behind the maximum and rejects one more", () => {
    const events = [bid(1, 5_000, 1), bid(1, 2_000, 1), bid(1, 6_000, 1), bid(1, 3_000, 1)];
    expect(() => assertNoLateEvents(events, 3_000)).not.toThrow(); // 2000 and 3000 are 3000 behind
    expect(() => assertNoLateEvents(events, 2_999)).toThrow(/event 1 .*3000 ms behind/);
    expect(() => assertNoLateEvents([], 0)).not.toThrow();
  });

  it("accepts the generator's default in-order stream with a bound of 0", () => {
    expect(() => assertNoLateEvents([...generateEvents({ seed: 1 }, 5_000)], 0)).not.toThrow();
  });
});

describe("smoke test on generated events", () => {
  const events = [...generateEvents({ seed: 1 }, 20_000)];
  const bids = events.filter((e): e is Bid => e.type === "bid");
  const auctions = events.filter((e): e is Auction => e.type === "auction");
  const persons = events.filter((e): e is Person => e.type === "person");
  const results = Object.fromEntries(QUERIES.map((q) => [q, referenceResults(q, events)])) as Record<(typeof QUERIES)[number], QueryRow[]>;

  it("runs every query and returns plausible counts", () => {
    expect(Object.keys(referenceModels).sort()).toEqual([...QUERIES].sort());
    expect(bids.length).toBe(20_000 * (46 / 50));

    expect(results.q0.length).toBe(bids.length);
    expect(results.q1.length).toBe(bids.length);
    results.q1.forEach((r, i) => expect(r["price"]).toBe(0.908 * bids[i]!.price));

    // q2 ⊂ q0 (as {auction, price}), and nonempty on 18 400 bids.
    const q0Pairs = new Set(results.q0.map((r) => `${r["auction"]}/${r["price"]}`));
    expect(results.q2.length).toBeGreaterThan(0);
    expect(results.q2.length).toBeLessThan(results.q0.length);
    for (const r of results.q2) {
      expect((r["auction"] as number) % 123).toBe(0);
      expect(q0Pairs.has(`${r["auction"]}/${r["price"]}`)).toBe(true);
    }

    // q3: each row names a category-10 auction of a person in OR/ID/CA.
    const auctionById = new Map(auctions.map((a) => [a.id, a]));
    expect(results.q3.length).toBeGreaterThan(0);
    for (const r of results.q3) {
      expect(auctionById.get(r["id"] as number)?.category).toBe(10);
      expect(["OR", "ID", "CA"]).toContain(r["state"]);
    }

    // q4: at most one row per auction; every average within the price range.
    expect(results.q4.length).toBeGreaterThan(0);
    expect(results.q4.length).toBeLessThanOrEqual(auctions.length);
    for (const r of results.q4) expect(r["avg"]).toBeGreaterThanOrEqual(100);

    // q5: at least one row per window with bids; counts positive.
    expect(results.q5.length).toBeGreaterThan(0);
    for (const r of results.q5) expect(r["num"]).toBeGreaterThan(0);

    // q7: at least one row per tumbling window with bids, each a real bid.
    const windows7 = new Set(bids.map((b) => Math.floor(b.dateTime / 10_000)));
    expect(results.q7.length).toBeGreaterThanOrEqual(windows7.size);

    // q8: at most one row per person; hot sellers make some match.
    expect(results.q8.length).toBeGreaterThan(0);
    expect(results.q8.length).toBeLessThanOrEqual(persons.length);

    // q11: every bid is in exactly one session.
    expect(results.q11.reduce((n, r) => n + (r["bid_count"] as number), 0)).toBe(bids.length);
  });
});

describe("referenceResults", () => {
  it("rejects an unknown query name", () => {
    expect(() => referenceResults("q6" as never, [])).toThrow(/unknown query q6/);
  });
});
