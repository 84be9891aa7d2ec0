import { describe, expect, it } from "vitest";
import fc from "fast-check";
import {
  accessStamp,
  currentTime,
  isExpired,
  resolveTtl,
  storedTtlDiffers,
  TTL_FIELD,
  ttlProblem,
  unwrapStored,
  visibleStored,
  wrapStored,
} from "../../../runtime/core/state-ttl.ts";
import { decodeValue, encodeValue } from "../../../runtime/core/wire.ts";
import { InvalidStateDeclarationError, mapState, valueState } from "../../../runtime/sdk/state.ts";

const eventTtl = resolveTtl({ ms: 100, time: "event" });
const clock = (watermark: number, processingTime: number, eventTime = -Infinity) => ({ watermark, processingTime, eventTime });

describe("TTL options", () => {
  it("default to Flink's: updated on create and write, expired values never returned", () => {
    expect(resolveTtl({ ms: 5, time: "processing" })).toEqual({ ms: 5, time: "processing", update: "on-create-and-write", visibility: "never-return-expired" });
  });

  it("are refused at declaration when they cannot work, naming the option", () => {
    expect(ttlProblem({ ms: 1, time: "event" })).toBeUndefined();
    expect(ttlProblem({ ms: 0, time: "event" })).toMatch(/ms must be/);
    expect(ttlProblem({ ms: 1.5, time: "event" })).toMatch(/ms must be/);
    expect(ttlProblem({ ms: 10 })).toMatch(/time must be "event" or "processing"/);
    expect(ttlProblem({ ms: 10, time: "event", update: "on-read" })).toMatch(/update must be/);
    expect(ttlProblem({ ms: 10, time: "event", visibility: "sometimes" })).toMatch(/visibility must be/);
    expect(ttlProblem(7)).toMatch(/must be an object/);
    expect(() => valueState({ ttl: { ms: -1, time: "event" } })).toThrow(InvalidStateDeclarationError);
    expect(() => mapState({ ttl: { ms: 1000, time: "wall" as never } })).toThrow(/state ttl: time must be/);
  });
});

describe("expiry decisions", () => {
  it("expire a value once its clock reaches last access + ms, not before", () => {
    expect(isExpired(1000, 100, 1099)).toBe(false);
    expect(isExpired(1000, 100, 1100)).toBe(true);
  });

  it("never expire a value whose last access is unknown, nor anything while the clock has no time", () => {
    expect(isExpired(NaN, 100, 1e15)).toBe(false);
    expect(isExpired(0, 100, NaN)).toBe(false);
  });

  it("read event time from the watermark and processing time from the processing clock", () => {
    expect(currentTime("event", clock(500, 9000))).toBe(500);
    expect(currentTime("processing", clock(500, 9000))).toBe(9000);
  });

  it("stamp an event-time access with the record's time, or the watermark if that is later", () => {
    expect(accessStamp("event", clock(500, 9000, 700))).toBe(700);
    expect(accessStamp("event", clock(500, 9000, 300))).toBe(500);
    expect(accessStamp("processing", clock(500, 9000, 700))).toBe(9000);
  });

  it("leave an access unstamped when its clock has no time yet", () => {
    expect(accessStamp("event", clock(-Infinity, 0))).toBeNaN();
    expect(accessStamp("processing", clock(5, NaN))).toBeNaN();
  });
});

describe("the stored envelope", () => {
  it("round-trips value, stamps, ms and clock through msgpack, unknown stamps as null", () => {
    const stored = decodeValue(encodeValue(wrapStored({ rule: "r1" }, 1234, eventTtl)));
    expect(stored).toEqual({ [TTL_FIELD]: { at: 1234, ms: 100, time: "event" }, value: { rule: "r1" } });
    expect(unwrapStored(stored)).toEqual({ value: { rule: "r1" }, ttl: { at: 1234, ms: 100, time: "event" } });
    const list = decodeValue(encodeValue(wrapStored(["a", "b"], [5, NaN], eventTtl)));
    expect((list as Record<string, { at: unknown }>)[TTL_FIELD]!.at).toEqual([5, null]);
    expect(unwrapStored(list).ttl!.at).toEqual([5, NaN]);
  });

  it("reads values written without TTL as plain values", () => {
    expect(unwrapStored(42)).toEqual({ value: 42 });
    expect(unwrapStored({ count: 1 })).toEqual({ value: { count: 1 } });
    expect(unwrapStored(null)).toEqual({ value: null });
  });

  it("takes a map that only looks like an envelope for a plain value", () => {
    const lookalikes = [
      { [TTL_FIELD]: { at: 1, ms: 10, time: "event" }, value: 1, extra: true },
      { [TTL_FIELD]: { at: 1, ms: 0, time: "event" }, value: 1 },
      { [TTL_FIELD]: { at: "1", ms: 10, time: "event" }, value: 1 },
      { [TTL_FIELD]: { at: 1, ms: 10, time: "wall" }, value: 1 },
      { [TTL_FIELD]: { at: [1, 2], ms: 10, time: "event" }, value: ["only one"] },
      { [TTL_FIELD]: null, value: 1 },
      { [TTL_FIELD]: { at: 1, ms: 10, time: "event" } },
    ];
    for (const v of lookalikes) expect(unwrapStored(v)).toEqual({ value: v });
  });

  it("never throws on hostile stored data, and gives back a value that is no envelope unchanged", () => {
    fc.assert(
      fc.property(fc.oneof(fc.anything(), fc.record({ [TTL_FIELD]: fc.anything(), value: fc.anything() })), (stored) => {
        const { value, ttl } = unwrapStored(stored);
        if (ttl === undefined) expect(value).toBe(stored);
        expect(() => visibleStored(stored, clock(0, 0))).not.toThrow();
      }),
    );
  });

  it("round-trips any value and stamps through msgpack", () => {
    fc.assert(
      fc.property(fc.jsonValue(), fc.option(fc.integer({ min: -1e12, max: 1e12 }), { nil: NaN }), (value, at) => {
        const back = unwrapStored(decodeValue(encodeValue(wrapStored(value, at, eventTtl))));
        expect(back.value).toEqual(decodeValue(encodeValue(value)));
        expect(back.ttl).toEqual({ at, ms: 100, time: "event" });
      }),
    );
  });

  it("is hidden from readers outside the function once expired, element by element for lists", () => {
    const at = clock(1100, 0);
    expect(visibleStored(wrapStored("x", 1000, eventTtl), at)).toEqual({ found: false });
    expect(visibleStored(wrapStored("x", 1001, eventTtl), at)).toEqual({ found: true, value: "x" });
    expect(visibleStored(wrapStored(["old", "new", "unknown"], [900, 1050, NaN], eventTtl), at)).toEqual({ found: true, value: ["new", "unknown"] });
    expect(visibleStored(wrapStored(["old"], [900], eventTtl), at)).toEqual({ found: false });
    expect(visibleStored("plain", at)).toEqual({ found: true, value: "plain" });
    const processing = resolveTtl({ ms: 100, time: "processing" });
    expect(visibleStored(wrapStored("x", 1000, processing), clock(5000, 1099))).toEqual({ found: true, value: "x" });
    expect(visibleStored(wrapStored("x", 1000, processing), clock(0, 1100))).toEqual({ found: false });
  });

  it("asks for a rewrite when the stored TTL no longer matches the declaration, not for plain values", () => {
    const stored = { at: 1, ms: 100, time: "event" as const };
    expect(storedTtlDiffers(stored, eventTtl)).toBe(false);
    expect(storedTtlDiffers(stored, undefined)).toBe(true);
    expect(storedTtlDiffers(stored, resolveTtl({ ms: 200, time: "event" }))).toBe(true);
    expect(storedTtlDiffers(stored, resolveTtl({ ms: 100, time: "processing" }))).toBe(true);
    expect(storedTtlDiffers(stored, resolveTtl({ ms: 100, time: "event", update: "on-read-and-write" }))).toBe(false);
    expect(storedTtlDiffers(undefined, eventTtl)).toBe(false);
    expect(storedTtlDiffers(undefined, undefined)).toBe(false);
  });
});
