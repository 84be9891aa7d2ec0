/**
 * Unit tests of single Nexmark query functions, each run in a test harness: the parts of q4 and q7
 * whose logic is the query's own (not the SDK's windows or joins), on hand-made events.
 */
import { describe, expect, it } from "vitest";
import type { Auction, Bid } from "../../../functions/nexmark/model.ts";
import { nexmarkQuery } from "../../../functions/nexmark/queries.ts";
import { testHarness } from "eddy/testing";

const auction = (id: number, at: number, expires: number, category = 10): Auction => ({
  type: "auction",
  id,
  itemName: `item-${id}`,
  description: "",
  initialBid: 1,
  reserve: 2,
  dateTime: at,
  expires,
  seller: 1,
  category,
  extra: "",
});

const bid = (auctionId: number, at: number, price: number, bidder = 1): Bid => ({
  type: "bid",
  auction: auctionId,
  bidder,
  price,
  channel: "Google",
  url: "https://www.nexmark.com/a/b/c/item.htm?query=1",
  dateTime: at,
  extra: "",
});

const fn = (q: Parameters<typeof nexmarkQuery>[0], name: string) => nexmarkQuery(q).functions.find((f) => f.name === name)!;

describe("q4 winning-bids", () => {
  // Input 0 carries auctions, input 1 bids; both are keyed by auction id.
  const AUCTIONS = { input: 0 } as const;
  const BIDS = { input: 1 } as const;

  it("closes an auction when the watermark passes its expiry, with the highest bid within its interval", () => {
    const h = testHarness(fn("q4", "winning-bids"));
    h.send(auction(7, 1_000, 5_000, 3), { ...AUCTIONS, timestamp: 1_000 });
    h.send(bid(7, 2_000, 10), { ...BIDS, timestamp: 2_000 });
    h.send(bid(7, 3_000, 30), { ...BIDS, timestamp: 3_000 });
    h.send(bid(7, 6_000, 99), { ...BIDS, timestamp: 6_000 }); // after the expiry: not counted
    expect(h.timers()).toEqual([{ domain: "event", timestamp: 5_000, key: "7", name: "close" }]);
    h.advanceWatermark(4_999);
    expect(h.output()).toEqual([]);
    h.advanceWatermark(5_000);
    expect(h.emitted()).toEqual([{ value: { auction: 7, category: 3, price: 30, expires: 5_000 }, timestamp: 5_000, key: "7" }]);
  });

  it("counts bids that arrive before their auction, if they fall within its interval", () => {
    const h = testHarness(fn("q4", "winning-bids"));
    h.send(bid(7, 500, 80), { ...BIDS, timestamp: 500 }); // before the auction opened
    h.send(bid(7, 2_000, 20), { ...BIDS, timestamp: 2_000 });
    h.send(bid(7, 2_000, 25), { ...BIDS, timestamp: 2_000 }); // the higher of the two at 2000 is kept
    expect(h.state("early", "7")).toEqual(new Map([["500", 80], ["2000", 25]]));
    h.send(auction(7, 1_000, 5_000), { ...AUCTIONS, timestamp: 1_000 });
    expect(h.keys("early")).toEqual([]);
    expect(h.state("best", "7")).toBe(25);
    h.advanceWatermark(Infinity);
    expect(h.output()).toEqual([{ auction: 7, category: 10, price: 25, expires: 5_000 }]);
  });

  it("keeps only a closed marker after closing, and ignores later bids", () => {
    const h = testHarness(fn("q4", "winning-bids"));
    h.send(auction(7, 1_000, 5_000), { ...AUCTIONS, timestamp: 1_000 });
    h.send(bid(7, 2_000, 10), { ...BIDS, timestamp: 2_000 });
    h.advanceWatermark(5_000);
    h.send(bid(7, 4_000, 50), { ...BIDS, timestamp: 4_000 });
    expect([h.keys("auction"), h.keys("best"), h.keys("early")]).toEqual([[], [], []]);
    expect(h.state("closed", "7")).toBe(true);
    expect(h.output()).toHaveLength(1);
  });

  it("emits nothing for an auction without bids", () => {
    const h = testHarness(fn("q4", "winning-bids"));
    h.send(auction(7, 1_000, 5_000), { ...AUCTIONS, timestamp: 1_000 });
    h.advanceWatermark(Infinity);
    expect(h.output()).toEqual([]);
  });
});

describe("q7 highest", () => {
  it("emits every bid with the highest price of its 10 s window when the window ends", () => {
    const h = testHarness(fn("q7", "highest"));
    h.send(bid(1, 1_000, 5), { timestamp: 1_000 });
    h.send(bid(2, 2_000, 9, 1), { timestamp: 2_000 });
    h.send(bid(3, 3_000, 9, 2), { timestamp: 3_000 });
    h.send(bid(4, 12_000, 1), { timestamp: 12_000 });
    // Keyed by window number; one timer per window, at its last millisecond.
    expect(h.timers().map((t) => [t.key, t.timestamp])).toEqual([
      ["0", 9_999],
      ["1", 19_999],
    ]);
    h.advanceWatermark(9_999);
    expect(h.output()).toEqual([
      { auction: 2, price: 9, bidder: 1, dateTime: 2_000, extra: "" },
      { auction: 3, price: 9, bidder: 2, dateTime: 3_000, extra: "" },
    ]);
    expect(h.keys("top")).toEqual(["1"]);
  });
});
