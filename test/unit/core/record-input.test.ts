/**
 * How a record enters a function: decoded, keyed and timed, or refused with the reason its dead
 * letter carries. The partition actor, the output router and the test harness all use these.
 */
import { describe, expect, it } from "vitest";
import { decodeRecord, readSourceRecord, Rejection, selectEventTime, selectKey, selectTimestamp } from "../../../runtime/core/record-input.ts";
import { encodeValue } from "../../../runtime/core/wire.ts";

const bytes = (s: string) => new TextEncoder().encode(s);

describe("decodeRecord", () => {
  it("reads a payload in each input format", () => {
    expect(decodeRecord("json", bytes('{"a":1}'))).toEqual({ a: 1 });
    expect(decodeRecord("msgpack", encodeValue({ a: [1, "x"] }))).toEqual({ a: [1, "x"] });
    expect(decodeRecord("string", bytes("héllo"))).toBe("héllo");
    const raw = bytes("raw");
    expect(decodeRecord("bytes", raw)).toBe(raw);
  });

  it("refuses a payload that is not valid in its format, as undecodable", () => {
    const r = decodeRecord("json", bytes("{not json"));
    expect(r).toBeInstanceOf(Rejection);
    expect((r as Rejection).reason).toMatch(/^undecodable: /);
    expect((r as Rejection).cause).toBeInstanceOf(SyntaxError);
  });

  it("never mistakes a decoded record for a rejection", () => {
    expect(decodeRecord("json", bytes('{"reason":"x"}'))).not.toBeInstanceOf(Rejection);
  });
});

describe("selectKey", () => {
  it("gives every record the empty key when there is no key selector", () => {
    expect(selectKey(undefined, { user: "ann" }, 0)).toBe("");
  });

  it("returns what the selector returns for the record and its input", () => {
    expect(selectKey((r: { user: string }, input) => `${r.user}/${input}`, { user: "ann" }, 1)).toBe("ann/1");
  });

  it("refuses a record whose selector throws, with the error's message", () => {
    const r = selectKey(() => {
      throw new Error('missing field "user"');
    }, {}, 0);
    expect(r).toBeInstanceOf(Rejection);
    expect((r as Rejection).reason).toBe('key: key selector failed: missing field "user"');
  });

  it("names the consumer whose selector it is when a producer keys the record", () => {
    const r = selectKey(() => {
      throw "no";
    }, {}, 0, "count");
    expect((r as Rejection).reason).toBe("key: count key selector failed: no");
  });

  it("refuses a key that is not a string", () => {
    expect((selectKey(() => undefined as unknown as string, {}, 0) as Rejection).reason).toBe("key: key selector returned undefined, not a string");
    expect((selectKey(() => 7 as unknown as string, {}, 0, "c") as Rejection).reason).toBe("key: c key selector returned number, not a string");
  });
});

describe("selectTimestamp", () => {
  it("uses the fallback (the message's or producer's time) without a selector", () => {
    expect(selectTimestamp(undefined, {}, 1234)).toBe(1234);
  });

  it("returns the selector's finite number", () => {
    expect(selectTimestamp((r: { ts: number }) => r.ts, { ts: -5.5 }, 0)).toBe(-5.5);
  });

  it("refuses a missing or non-finite time, and a selector that throws", () => {
    const reason = (v: unknown) => (selectTimestamp(() => v as number, {}, 0) as Rejection).reason;
    expect(reason(undefined)).toBe("timestamp: missing is not a finite number");
    expect(reason(NaN)).toBe("timestamp: null is not a finite number");
    expect(reason(Infinity)).toBe("timestamp: null is not a finite number");
    expect(reason("12")).toBe('timestamp: "12" is not a finite number');
    expect(reason(12n)).toBe("timestamp: 12 is not a finite number");
    const thrown = selectTimestamp(() => {
      throw new Error("bad date");
    }, {}, 0) as Rejection;
    expect(thrown.reason).toBe("timestamp: bad date");
  });
});

describe("readSourceRecord", () => {
  it("decodes a payload within the record limit", () => {
    expect(readSourceRecord("json", bytes('{"a":1}'), 7)).toEqual({ a: 1 });
  });

  it("refuses a payload over the limit before decoding it, even if it is not valid in its format", () => {
    const r = readSourceRecord("json", bytes("{not json"), 8);
    expect(r).toBeInstanceOf(Rejection);
    expect((r as Rejection).reason).toBe("too large: 9 bytes, more than the record limit of 8 bytes");
  });

  it("refuses a payload within the limit that does not decode, as undecodable", () => {
    expect((readSourceRecord("json", bytes("{not json"), 100) as Rejection).reason).toMatch(/^undecodable: /);
  });
});

describe("selectEventTime", () => {
  const now = 1_000_000;

  it("takes the fallback (the time the record was stored) without a timestamp selector", () => {
    expect(selectEventTime({}, { at: 5 }, 1234, now)).toBe(1234);
  });

  it("takes the selector's time when it is within maxFutureMs of now", () => {
    expect(selectEventTime({ timestamp: (r: { at: number }) => r.at, maxFutureMs: 10 }, { at: now + 10 }, 0, now)).toBe(now + 10);
  });

  it("refuses a time further ahead than maxFutureMs, or clamps it when the function says so", () => {
    const fn = { timestamp: (r: { at: number }) => r.at, maxFutureMs: 10 };
    expect((selectEventTime(fn, { at: now + 11 }, 0, now) as Rejection).reason).toMatch(/^timestamp: too far in the future \(1000011 is 11 ms ahead/);
    expect(selectEventTime({ ...fn, futureTimestamps: "clamp" as const }, { at: now + 5000 }, 0, now)).toBe(now + 10);
  });

  it("holds the fallback to maxFutureMs too (a source without a selector whose stored time is ahead)", () => {
    expect((selectEventTime({ maxFutureMs: 0 }, {}, now + 1, now) as Rejection).reason).toMatch(/^timestamp: too far in the future/);
  });

  it("gives no time at all to a record whose selector refuses it, whatever the bound", () => {
    expect((selectEventTime({ timestamp: () => NaN, maxFutureMs: 10, futureTimestamps: "clamp" }, {}, 0, now) as Rejection).reason).toBe("timestamp: null is not a finite number");
  });
});
