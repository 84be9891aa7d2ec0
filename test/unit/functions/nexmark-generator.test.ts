import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import fc from "fast-check";
import {
  DEFAULT_BASE_TIME,
  FIRST_AUCTION_ID,
  FIRST_NAMES,
  FIRST_PERSON_ID,
  LAST_NAMES,
  MAX_PRICE,
  MIN_PRICE,
  NexmarkConfigError,
  US_CITIES,
  US_STATES,
  eventIdAt,
  eventKind,
  eventTimestamp,
  eventToJson,
  generateEvent,
  generateEvents,
  lastAuctionId,
  lastPersonId,
  resolveConfig,
  type NexmarkConfig,
} from "../../../functions/nexmark/generator.ts";
import type { Auction, Bid, NexmarkEvent, Person } from "../../../functions/nexmark/model.ts";
import { runNexmarkGenerate } from "../../../runtime/cli/nexmark-generate.ts";

const all = (config: NexmarkConfig, count: number, first = 0): NexmarkEvent[] => [...generateEvents(config, count, first)];
const lines = (config: NexmarkConfig, count: number, first = 0): string => all(config, count, first).map(eventToJson).join("\n");
const bids = (events: NexmarkEvent[]) => events.filter((e): e is Bid => e.type === "bid");
const auctions = (events: NexmarkEvent[]) => events.filter((e): e is Auction => e.type === "auction");
const people = (events: NexmarkEvent[]) => events.filter((e): e is Person => e.type === "person");

/** Event ids of events generated in order (outOfOrderGroupSize 1): position = id. */
const withIds = (events: NexmarkEvent[]) => events.map((e, id) => ({ e, id }));

describe("determinism", () => {
  it("gives byte-identical output for the same seed and count", () => {
    expect(lines({ seed: 7 }, 5_000)).toBe(lines({ seed: 7 }, 5_000));
    // A fresh but equal config object, too.
    expect(lines({ seed: 7, firstEventRate: 10_000 }, 2_000)).toBe(lines({ seed: 7 }, 2_000));
  });

  it("gives different output for different seeds (not merely shifted)", () => {
    const a = all({ seed: 1 }, 1_000).map(eventToJson);
    const b = all({ seed: 2 }, 1_000).map(eventToJson);
    expect(a.filter((line, i) => line === b[i]).length).toBeLessThan(10);
    expect(new Set(b).size).toBe(1_000);
  });

  it("handles large and negative seeds", () => {
    for (const seed of [0, -1, 2 ** 40 + 3, -(2 ** 52), Number.MAX_SAFE_INTEGER]) {
      expect(lines({ seed }, 200)).toBe(lines({ seed }, 200));
    }
    expect(lines({ seed: 2 ** 40 })).not.toBe(lines({ seed: 2 ** 40 + 2 ** 32 }));
    function lines(config: NexmarkConfig, n = 100) {
      return all(config, n).map(eventToJson).join("\n");
    }
  });

  it("generateEvent is pure: any order of calls, interleaved seeds, same events", () => {
    const config: NexmarkConfig = { seed: 99 };
    const expected = all(config, 600);
    const other: NexmarkConfig = { seed: 100 };
    const ids = fc.sample(fc.integer({ min: 0, max: 599 }), 400);
    for (const id of ids) {
      generateEvent(other, id * 7 + 3);
      expect(generateEvent(config, id)).toEqual(expected[id]);
    }
  });

  it("interleaving two generators does not change either", () => {
    const a = generateEvents({ seed: 1 }, 500);
    const b = generateEvents({ seed: 2 }, 500);
    const got: [string[], string[]] = [[], []];
    for (let i = 0; i < 500; i++) {
      got[0].push(eventToJson(a.next().value as NexmarkEvent));
      got[1].push(eventToJson(b.next().value as NexmarkEvent));
    }
    expect(got[0].join("\n")).toBe(lines({ seed: 1 }, 500));
    expect(got[1].join("\n")).toBe(lines({ seed: 2 }, 500));
  });

  it("splitting generation equals generating all at once", () => {
    const n = 2_000;
    for (const outOfOrderGroupSize of [1, 10, 100]) {
      const config: NexmarkConfig = { seed: 5, outOfOrderGroupSize };
      const whole = lines(config, n);
      expect(`${lines(config, n / 2)}\n${lines(config, n / 2, n / 2)}`).toBe(whole);
    }
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 599 }), fc.integer({ min: 1, max: 30 }), (k, outOfOrderGroupSize) => {
        const config: NexmarkConfig = { seed: 11, outOfOrderGroupSize };
        expect(`${lines(config, k)}\n${lines(config, 600 - k, k)}`).toBe(lines(config, 600));
      }),
      { numRuns: 25 },
    );
  });

  it("generateEvents(…, first) with group size 1 yields generateEvent(config, id) for each id", () => {
    const config: NexmarkConfig = { seed: 3 };
    const events = all(config, 100, 123_456);
    events.forEach((e, i) => expect(e).toEqual(generateEvent(config, 123_456 + i)));
  });
});

describe("kinds and ids", () => {
  const events = all({ seed: 17 }, 10_000);

  it("has exactly 1 person, 3 auctions and 46 bids in every epoch of 50 events, in that order", () => {
    for (let epoch = 0; epoch < events.length / 50; epoch++) {
      const kinds = events.slice(epoch * 50, epoch * 50 + 50).map((e) => e.type);
      expect(kinds).toEqual(["person", "auction", "auction", "auction", ...Array<string>(46).fill("bid")]);
    }
    expect(withIds(events).every(({ e, id }) => eventKind(id) === e.type)).toBe(true);
  });

  it("numbers people and auctions consecutively from 1000, as lastPersonId/lastAuctionId say", () => {
    expect(people(events).map((p) => p.id)).toEqual(Array.from({ length: 200 }, (_, i) => FIRST_PERSON_ID + i));
    expect(auctions(events).map((a) => a.id)).toEqual(Array.from({ length: 600 }, (_, i) => FIRST_AUCTION_ID + i));
    for (const { e, id } of withIds(events)) {
      if (e.type === "person") expect(e.id).toBe(lastPersonId(id));
      if (e.type === "auction") expect(e.id).toBe(lastAuctionId(id));
    }
    expect([lastPersonId(0), lastPersonId(49), lastPersonId(50), lastPersonId(51)]).toEqual([1000, 1000, 1001, 1001]);
    expect([lastAuctionId(0), lastAuctionId(1), lastAuctionId(3), lastAuctionId(49), lastAuctionId(50), lastAuctionId(53)]).toEqual([
      999, 1000, 1002, 1002, 1002, 1005,
    ]);
  });

  it("references people and auctions that exist, up to Beam's lead of 10 ids", () => {
    for (const { e, id } of withIds(events)) {
      if (e.type === "auction") {
        expect(e.seller).toBeGreaterThanOrEqual(FIRST_PERSON_ID);
        expect(e.seller).toBeLessThanOrEqual(lastPersonId(id) + 10);
      } else if (e.type === "bid") {
        expect(e.bidder).toBeGreaterThanOrEqual(FIRST_PERSON_ID);
        expect(e.bidder).toBeLessThanOrEqual(lastPersonId(id) + 10);
        expect(e.auction).toBeGreaterThanOrEqual(FIRST_AUCTION_ID);
        expect(e.auction).toBeLessThanOrEqual(lastAuctionId(id) + 10);
        // Random auctions come from the last numInFlightAuctions (100) ones.
        expect(e.auction).toBeGreaterThanOrEqual(Math.max(lastAuctionId(id) - 100, FIRST_AUCTION_ID));
      }
    }
  });

  it("with leads 0 references only existing people and auctions (but Beam's hot bidder)", () => {
    const strict = withIds(all({ seed: 17, personIdLead: 0, auctionIdLead: 0 }, 20_000));
    for (const { e, id } of strict) {
      if (e.type === "auction") expect(e.seller).toBeLessThanOrEqual(lastPersonId(id));
      if (e.type === "bid") {
        expect(e.auction).toBeLessThanOrEqual(lastAuctionId(id));
        // The hot bidder is the second person of the last block of 100: it does not exist yet
        // while the block's first person is the last one generated.
        const hotBidderAhead = (lastPersonId(id) - FIRST_PERSON_ID) % 100 === 0 && e.bidder === lastPersonId(id) + 1;
        if (!hotBidderAhead) expect(e.bidder).toBeLessThanOrEqual(lastPersonId(id));
      }
    }
  });

  it("keeps random people among the last numActivePeople", () => {
    const late = all({ seed: 4 }, 2_000, 200_000); // 4000 people by then
    for (const [i, e] of late.entries()) {
      const last = lastPersonId(200_000 + i);
      if (e.type === "bid") expect(e.bidder).toBeGreaterThan(last - 1000);
      if (e.type === "auction") expect(e.seller).toBeGreaterThan(last - 1000);
    }
  });
});

describe("distributions", () => {
  const events = all({ seed: 23 }, 50_000);

  it("draws prices from Beam's range [100, 10^8] log-uniformly", () => {
    const prices = [...bids(events).map((b) => b.price), ...auctions(events).map((a) => a.initialBid)];
    expect(prices.every((p) => Number.isInteger(p) && p >= MIN_PRICE && p <= MAX_PRICE)).toBe(true);
    // log10(price / 100) is uniform in [0, 6]: each of the 6 decades holds about a sixth.
    const decades = [0, 0, 0, 0, 0, 0];
    for (const p of prices) decades[Math.min(5, Math.floor(Math.log10(p / 100)))]!++;
    for (const d of decades) expect(d / prices.length).toBeCloseTo(1 / 6, 1);
    for (const a of auctions(events)) {
      expect(a.reserve).toBeGreaterThanOrEqual(a.initialBid + MIN_PRICE);
      expect(a.reserve).toBeLessThanOrEqual(a.initialBid + MAX_PRICE);
    }
  });

  it("makes a bid's auction hot with probability 1 - 1/hotAuctionRatio, its bidder with 1 - 1/hotBiddersRatio", () => {
    const measure = (config: NexmarkConfig) => {
      const evs = withIds(all(config, 50_000)).filter(({ e }) => e.type === "bid") as { e: Bid; id: number }[];
      const hotAuction = evs.filter(({ e, id }) => e.auction === FIRST_AUCTION_ID + Math.floor((lastAuctionId(id) - FIRST_AUCTION_ID) / 100) * 100);
      const hotBidder = evs.filter(({ e, id }) => e.bidder === FIRST_PERSON_ID + Math.floor((lastPersonId(id) - FIRST_PERSON_ID) / 100) * 100 + 1);
      return { auction: hotAuction.length / evs.length, bidder: hotBidder.length / evs.length };
    };
    // A random pick may hit the hot one too (about 1 in 100), hence the upper margins.
    const dflt = measure({ seed: 23 });
    expect(dflt.auction).toBeGreaterThan(0.48);
    expect(dflt.auction).toBeLessThan(0.54);
    expect(dflt.bidder).toBeGreaterThan(0.73);
    expect(dflt.bidder).toBeLessThan(0.78);
    const other = measure({ seed: 23, hotAuctionRatio: 4, hotBiddersRatio: 1 });
    expect(other.auction).toBeGreaterThan(0.73);
    expect(other.auction).toBeLessThan(0.78);
    expect(other.bidder).toBeLessThan(0.05);
  });

  it("makes an auction's seller hot with probability 1 - 1/hotSellersRatio", () => {
    const evs = withIds(all({ seed: 29 }, 100_000)).filter(({ e }) => e.type === "auction") as { e: Auction; id: number }[];
    const hot = evs.filter(({ e, id }) => e.seller === FIRST_PERSON_ID + Math.floor((lastPersonId(id) - FIRST_PERSON_ID) / 100) * 100);
    expect(hot.length / evs.length).toBeGreaterThan(0.72);
    expect(hot.length / evs.length).toBeLessThan(0.79);
  });

  it("uses 5 categories from 10", () => {
    const categories = new Set(auctions(events).map((a) => a.category));
    expect([...categories].sort()).toEqual([10, 11, 12, 13, 14]);
  });

  it("draws people's fields from Beam's lists and formats", () => {
    for (const p of people(events)) {
      const [first, last] = p.name.split(" ");
      expect(FIRST_NAMES).toContain(first);
      expect(LAST_NAMES).toContain(last);
      expect(US_CITIES).toContain(p.city);
      expect(US_STATES).toContain(p.state);
      expect(p.emailAddress).toMatch(/^[a-z](?:[a-z ]*[a-z])?@[a-z](?:[a-z ]*[a-z])?\.com$/);
      expect(p.creditCard).toMatch(/^\d{4} \d{4} \d{4} \d{4}$/);
    }
    for (const a of auctions(events)) {
      expect(a.itemName.length).toBeLessThan(20);
      expect(a.description.length).toBeLessThan(100);
      expect(a.itemName).toMatch(/^[a-z ]*$/);
    }
  });

  it("gives bids Flink's channels and urls: half one of 4 hot channels, else one of 10 000 generated ones", () => {
    const bs = bids(events);
    const hot = bs.filter((b) => ["Google", "Facebook", "Baidu", "Apple"].includes(b.channel));
    expect(hot.length / bs.length).toBeGreaterThan(0.48);
    expect(hot.length / bs.length).toBeLessThan(0.52);
    const urlOf = new Map<string, string>();
    for (const b of bs) {
      expect(b.channel).toMatch(/^(Google|Facebook|Baidu|Apple|channel-\d{1,4})$/);
      expect(b.url).toMatch(/^https:\/\/www\.nexmark\.com\/[a-z_]{3,4}\/[a-z_]{3,4}\/[a-z_]{3,4}\/item\.htm\?query=1(&channel_id=-?\d+)?$/);
      if (b.channel.startsWith("channel-")) expect(Number(b.channel.slice(8))).toBeLessThan(10_000);
      else expect(b.url).not.toContain("channel_id");
      // A channel always comes with the same url.
      expect(urlOf.get(b.channel) ?? b.url).toBe(b.url);
      urlOf.set(b.channel, b.url);
    }
    const generated = [...urlOf].filter(([c]) => c.startsWith("channel-"));
    const withId = generated.filter(([, u]) => u.includes("&channel_id="));
    expect(withId.length / generated.length).toBeGreaterThan(0.85);
    expect(withId.length / generated.length).toBeLessThan(0.95);
    // channel_id is Java's Math.abs(Integer.reverse(n)).
    const id1 = generated.find(([c, u]) => c === "channel-2" && u.includes("&channel_id="));
    if (id1 !== undefined) expect(id1[1]).toMatch(/&channel_id=1073741824$/);
  });
});

describe("sizes", () => {
  const average = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
  const jsonSizes = (events: NexmarkEvent[], type: NexmarkEvent["type"]) =>
    average(events.filter((e) => e.type === type).map((e) => Buffer.byteLength(eventToJson(e))));

  it("pads person and auction JSON to the default averages (200, 500 bytes) within 15%", () => {
    // 10 000 events hold only 200 people; take the sizes from 10 000 events of each kind.
    const config: NexmarkConfig = { seed: 31 };
    const ps = Array.from({ length: 10_000 }, (_, k) => generateEvent(config, 50 * k));
    const as = Array.from({ length: 10_000 }, (_, k) => generateEvent(config, 50 * Math.floor(k / 3) + 1 + (k % 3)));
    expect(ps.every((e) => e.type === "person") && as.every((e) => e.type === "auction")).toBe(true);
    expect(Math.abs(jsonSizes(ps, "person") / 200 - 1)).toBeLessThan(0.15);
    expect(Math.abs(jsonSizes(as, "auction") / 500 - 1)).toBeLessThan(0.15);
  });

  it("pads all kinds to configured averages within 15% over 10 000 events", () => {
    const config: NexmarkConfig = { seed: 37, avgPersonBytes: 400, avgAuctionBytes: 1000, avgBidBytes: 300 };
    const events = all(config, 10_000);
    expect(Math.abs(jsonSizes(events, "person") / 400 - 1)).toBeLessThan(0.15);
    expect(Math.abs(jsonSizes(events, "auction") / 1000 - 1)).toBeLessThan(0.15);
    expect(Math.abs(jsonSizes(events, "bid") / 300 - 1)).toBeLessThan(0.15);
    // Much closer than that, in fact: extra averages d - 0.5 for a shortfall of d.
    expect(Math.abs(jsonSizes(events, "bid") / 300 - 1)).toBeLessThan(0.01);
  });

  it("leaves `extra` empty when an event's JSON is already above the average (default bids: 100 bytes)", () => {
    const bs = bids(all({ seed: 41 }, 5_000));
    expect(bs.every((b) => b.extra === "")).toBe(true);
    expect(Math.min(...bs.map((b) => eventToJson(b).length))).toBeGreaterThan(100);
  });

  it("sizes `extra` as Beam does with sizeAccounting 'beam'", () => {
    const events = all({ seed: 43, sizeAccounting: "beam" }, 20_000);
    // Beam counts 32 bytes for a bid's numbers, so extra averages 100 - 32 - 0.5 characters...
    expect(average(bids(events).map((b) => b.extra.length))).toBeCloseTo(67.5, 0);
    // ...with lengths uniform in [68 - 14, 68 + 14).
    expect(Math.min(...bids(events).map((b) => b.extra.length))).toBe(54);
    expect(Math.max(...bids(events).map((b) => b.extra.length))).toBe(81);
    for (const a of auctions(events)) {
      const d = 500 - (8 + a.itemName.length + a.description.length + 40);
      expect(Math.abs(a.extra.length - d)).toBeLessThanOrEqual(Math.round(d * 0.2));
    }
    for (const e of events) expect(e.extra).toMatch(/^[a-z]*$/);
  });
});

describe("time", () => {
  it("stamps event id n with baseTime + n × 1/firstEventRate", () => {
    const events = all({ seed: 47 }, 5_000);
    events.forEach((e, id) => expect(e.dateTime).toBe(DEFAULT_BASE_TIME + Math.floor(id / 10)));
    expect(DEFAULT_BASE_TIME).toBe(Date.parse("2026-01-01T00:00:00Z"));
    const slow = all({ seed: 47, firstEventRate: 3, baseTime: 0 }, 10);
    expect(slow.map((e) => e.dateTime)).toEqual([0, 333, 666, 1000, 1333, 1666, 2000, 2333, 2666, 3000]);
  });

  it("keeps timestamps non-decreasing with outOfOrderGroupSize 1", () => {
    const ts = all({ seed: 53, firstEventRate: 3_000 }, 20_000).map((e) => e.dateTime);
    for (let i = 1; i < ts.length; i++) expect(ts[i]).toBeGreaterThanOrEqual(ts[i - 1]!);
  });

  it("permutes whole events within each out-of-order group, as Beam does", () => {
    for (const size of [3, 10, 50, 1000]) {
      const config: NexmarkConfig = { seed: 59, outOfOrderGroupSize: size, firstEventRate: 1_000 };
      const inOrder = all({ seed: 59, firstEventRate: 1_000 }, 3 * size);
      const shuffled = all(config, 3 * size);
      for (let g = 0; g < 3; g++) {
        const group = shuffled.slice(g * size, (g + 1) * size).map(eventToJson);
        expect([...group].sort()).toEqual(inOrder.slice(g * size, (g + 1) * size).map(eventToJson).sort());
        const ts = shuffled.slice(g * size, (g + 1) * size).map((e) => e.dateTime);
        expect(Math.min(...ts)).toBe(eventTimestamp(resolveConfig(config), g * size));
      }
      // And actually out of order.
      const ts = shuffled.map((e) => e.dateTime);
      expect(ts.some((t, i) => i > 0 && t < ts[i - 1]!)).toBe(true);
      // The event at position p is event id (base of its group) + p × 953 mod size.
      const c = resolveConfig(config);
      for (let p = 0; p < 3 * size; p++) expect(eventIdAt(c, p)).toBe(p - (p % size) + ((p * 953) % size));
    }
  });

  it("keeps Beam's order for group sizes that divide 952 (953 ≡ 1 mod size: the identity permutation)", () => {
    for (const size of [2, 4, 7, 8, 17, 56]) {
      const c = resolveConfig({ seed: 1, outOfOrderGroupSize: size });
      for (let p = 0; p < 200; p++) expect(eventIdAt(c, p)).toBe(p);
    }
  });

  it("ends every auction after it starts, within 2 × the in-flight horizon", () => {
    for (const config of [{ seed: 61 }, { seed: 61, firstEventRate: 50 }] as NexmarkConfig[]) {
      const c = resolveConfig(config);
      const evs = withIds(all(config, 20_000)).filter(({ e }) => e.type === "auction") as { e: Auction; id: number }[];
      let total = 0;
      for (const { e, id } of evs) {
        // Horizon: the time until numInFlightAuctions (100) more auctions, i.e. 1666 events, have come.
        const horizon = eventTimestamp(c, id + 1666) - e.dateTime;
        expect(e.expires).toBeGreaterThan(e.dateTime);
        expect(e.expires - e.dateTime).toBeLessThanOrEqual(2 * horizon);
        total += (e.expires - e.dateTime) / horizon;
      }
      // Uniform in [1, 2 × horizon]: mean ≈ horizon.
      expect(total / evs.length).toBeGreaterThan(0.9);
      expect(total / evs.length).toBeLessThan(1.1);
    }
  });
});

describe("eventToJson", () => {
  it("writes model.ts's fields in model.ts's order and round-trips", () => {
    const events = all({ seed: 67 }, 100);
    const keys = {
      person: ["type", "id", "name", "emailAddress", "creditCard", "city", "state", "dateTime", "extra"],
      auction: ["type", "id", "itemName", "description", "initialBid", "reserve", "dateTime", "expires", "seller", "category", "extra"],
      bid: ["type", "auction", "bidder", "price", "channel", "url", "dateTime", "extra"],
    };
    for (const e of events) {
      const parsed = JSON.parse(eventToJson(e)) as NexmarkEvent;
      expect(Object.keys(parsed)).toEqual(keys[e.type]);
      expect(parsed).toEqual(e);
    }
  });

  it("orders fields whatever the object's own order, and escapes strings", () => {
    const bid: Bid = { extra: 'a"b\\c\n', dateTime: 5, url: "u", channel: "c\u2028", price: 1, bidder: 2, auction: 3, type: "bid" };
    const json = eventToJson(bid);
    expect(json).toBe('{"type":"bid","auction":3,"bidder":2,"price":1,"channel":"c\u2028","url":"u","dateTime":5,"extra":"a\\"b\\\\c\\n"}');
    expect(JSON.parse(json)).toEqual(bid);
  });
});

describe("configuration", () => {
  it("rejects bad settings and event ids", () => {
    expect(() => generateEvent({ seed: 1, outOfOrderGroupSize: 953 }, 0)).toThrow(NexmarkConfigError);
    expect(() => generateEvent({ seed: 1, outOfOrderGroupSize: 0 }, 0)).toThrow(NexmarkConfigError);
    expect(() => generateEvent({ seed: 1, firstEventRate: 0 }, 0)).toThrow(NexmarkConfigError);
    expect(() => generateEvent({ seed: 1.5 }, 0)).toThrow(NexmarkConfigError);
    expect(() => generateEvent({ seed: 1 }, -1)).toThrow(RangeError);
    expect(() => generateEvent({ seed: 1 }, 0.5)).toThrow(RangeError);
  });
});

describe("runNexmarkGenerate", () => {
  it("writes one JSON event per line to a file, as generateEvents makes them", async () => {
    const dir = mkdtempSync(join(tmpdir(), "nexmark-"));
    try {
      const out = join(dir, "events.jsonl");
      // Enough to span several write buffers.
      expect(await runNexmarkGenerate({ events: 12_000, seed: 71, out })).toBe(0);
      expect(readFileSync(out, "utf8")).toBe(`${lines({ seed: 71 }, 12_000)}\n`);
      expect(await runNexmarkGenerate({ events: 0, seed: 71, out })).toBe(0);
      expect(readFileSync(out, "utf8")).toBe("");
      await expect(runNexmarkGenerate({ events: 10, seed: 71, out: join(dir, "missing", "x.jsonl") })).rejects.toThrow(/ENOENT/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
