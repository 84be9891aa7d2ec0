import { describe, expect, it } from "vitest";
import fc from "fast-check";
import {
  EMPTY_TOKEN,
  assertStateName,
  b64url,
  encodeTimerTs,
  isValidStateName,
  mapEntriesFilter,
  mapEntryKey,
  parseKvKey,
  partitionFilter,
  positionKey,
  stateFilter,
  stateKey,
  timerFilter,
  timerKey,
  legacyTimerKey,
  legacyTimerFilter,
  timerBucketFilter,
  timerBucketGroup,
  timerMarkerKey,
  timerMarkersFilter,
  timerLayoutKey,
  timerBucketOf,
  unb64url,
  watermarkKey,
} from "../../../runtime/core/kv-keys.ts";
import type { Timer } from "../../../runtime/core/timers.ts";

/** What @nats-io/kv accepts as a key. */
const VALID_KV_KEY = /^[-/=.\w]+$/;
const isValidKvKey = (k: string) => VALID_KV_KEY.test(k) && !k.startsWith(".") && !k.endsWith(".") && !k.includes("..");

const unicode = fc.string({ unit: "grapheme", maxLength: 30 });
const anyUnicode = fc.oneof(unicode, fc.string({ unit: "grapheme-ascii" }), fc.constant(""));
const stateName = fc.stringMatching(/^[A-Za-z][A-Za-z0-9-]{0,15}$/);
const partition = fc.nat(4096);
const timerArb: fc.Arbitrary<Timer> = fc.record({
  domain: fc.constantFrom("event" as const, "processing" as const),
  ts: fc.maxSafeInteger().map((n) => Math.abs(n)),
  key: anyUnicode,
  name: anyUnicode,
});

describe("b64url", () => {
  it("is unpadded base64url of the UTF-8 bytes", () => {
    expect(b64url("a")).toBe("YQ");
    expect(b64url("hello?")).toBe("aGVsbG8_");
    expect(b64url("é")).toBe("w6k");
    expect(b64url("\u{1F389}")).toBe("8J-OiQ");
  });

  it("encodes the empty string as the reserved token '='", () => {
    expect(b64url("")).toBe(EMPTY_TOKEN);
    expect(EMPTY_TOKEN).toBe("=");
    expect(unb64url("=")).toBe("");
  });

  it("round-trips any well-formed unicode string", () => {
    fc.assert(
      fc.property(anyUnicode, (s) => {
        expect(unb64url(b64url(s))).toBe(s);
      }),
    );
  });

  it("only produces characters legal in a KV key token", () => {
    fc.assert(fc.property(anyUnicode, (s) => /^[-_=A-Za-z0-9]+$/.test(b64url(s))));
  });

  it("rejects tokens it cannot have produced", () => {
    // "YR" decodes to "a" too but has non-zero trailing bits; "Y" is too short; "_w" is invalid UTF-8.
    for (const t of ["", "YR", "Y", "YQ=", "a.b", "a+b", "a/b", "_w", "=="]) {
      expect(() => unb64url(t), t).toThrow(RangeError);
    }
  });

  it("accepts a token exactly when it is the encoding of what it decodes to (also for U+FFFD itself)", () => {
    const token = fc.stringMatching(/^[A-Za-z0-9_-]{1,12}$/);
    const bytes = fc.uint8Array({ maxLength: 9 }).map((b) => Buffer.from(b).toString("base64url")).filter((t) => t.length > 0);
    fc.assert(
      fc.property(fc.oneof(token, bytes, fc.constant(b64url("\uFFFD")), fc.constant(b64url("a\uFFFDb"))), (t) => {
        const decoded = Buffer.from(t, "base64url").toString("utf8");
        const canonical = decoded.length > 0 && Buffer.from(decoded, "utf8").toString("base64url") === t;
        if (canonical) expect(unb64url(t)).toBe(decoded);
        else expect(() => unb64url(t), t).toThrow(RangeError);
      }),
      { numRuns: 5000 },
    );
  });
});

describe("state names", () => {
  it("start with a letter followed by letters, digits or '-'", () => {
    for (const ok of ["count", "A", "per-user-2"]) expect(isValidStateName(ok), ok).toBe(true);
    for (const bad of ["", "_t", "_wm", "1st", "-x", "a.b", "a_b", "é", "a b"]) {
      expect(isValidStateName(bad), bad).toBe(false);
      expect(() => assertStateName(bad)).toThrow(RangeError);
    }
  });
});

describe("KV keys", () => {
  it("follow the documented layout", () => {
    expect(stateKey(3, "count", "user-1")).toBe("3.count.dXNlci0x");
    expect(mapEntryKey(3, "seen", "u", "")).toBe("3.seen.dQ.=");
    // Bucket floor(ts / 60 000), then time, key and name in one token (design note bi).
    expect(timerKey(0, { domain: "event", ts: 1000, key: "k", name: "" })).toBe("0._tb.e20000000000000.200000000003e8/aw/=");
    expect(timerKey(7, { domain: "processing", ts: 0, key: "", name: "w" })).toBe("7._tb.p20000000000000.20000000000000/=/dw");
    expect(timerKey(0, { domain: "event", ts: 120_001, key: "k", name: "" })).toBe("0._tb.e20000000000002.2000000001d4c1/aw/=");
    expect(timerKey(0, { domain: "event", ts: -1, key: "k", name: "" })).toBe("0._tb.e1fffffffffffff.1fffffffffffff/aw/=");
    expect(timerMarkerKey(3, "event", 2)).toBe("3._tk.e20000000000002");
    expect(timerLayoutKey(3)).toBe("3._tl");
    // The layout before buckets, still read by a restore.
    expect(legacyTimerKey(0, { domain: "event", ts: 1000, key: "k", name: "" })).toBe("0._t.e200000000003e8.aw.=");
    expect(legacyTimerKey(7, { domain: "processing", ts: 0, key: "", name: "w" })).toBe("7._t.p20000000000000.=.dw");
    expect(watermarkKey(12)).toBe("12._wm");
    expect(positionKey(12)).toBe("12._pos");
  });

  it("provide filters for a partition, a state, a map and the timers", () => {
    expect(partitionFilter(2)).toBe("2.>");
    expect(stateFilter(2, "count")).toBe("2.count.>");
    expect(mapEntriesFilter(2, "seen", "u")).toBe("2.seen.dQ.*");
    expect(timerFilter(2)).toBe("2._tb.>");
    expect(legacyTimerFilter(2)).toBe("2._t.>");
    expect(timerBucketFilter(2, "processing", 5)).toBe("2._tb.p20000000000005.*");
    expect(timerMarkersFilter(2)).toBe("2._tk.*");
  });

  it("encode timer times as fixed-width hex offset by 2^53, so keys sort by time, negative times included", () => {
    expect(encodeTimerTs(0)).toBe("20000000000000");
    expect(encodeTimerTs(Number.MAX_SAFE_INTEGER)).toBe("3fffffffffffff");
    expect(encodeTimerTs(-Number.MAX_SAFE_INTEGER)).toBe("00000000000001");
    fc.assert(
      fc.property(fc.maxSafeInteger(), fc.maxSafeInteger(), (a, b) => {
        const [ea, eb] = [encodeTimerTs(a), encodeTimerTs(b)];
        return ea.length === 14 && Math.sign(a - b) === Math.sign(ea < eb ? -1 : ea > eb ? 1 : 0);
      }),
    );
  });

  it("reject fractional and unsafe timer times", () => {
    for (const ts of [1.5, -0.5, Number.MAX_SAFE_INTEGER + 1, -Number.MAX_SAFE_INTEGER - 1, Infinity]) {
      expect(() => timerKey(0, { domain: "event", ts, key: "k", name: "" }), String(ts)).toThrow(RangeError);
    }
  });

  it("reject invalid partitions and state names", () => {
    expect(() => stateKey(-1, "s", "k")).toThrow(RangeError);
    expect(() => stateKey(1.5, "s", "k")).toThrow(RangeError);
    expect(() => stateKey(0, "_t", "k")).toThrow(RangeError);
    expect(() => watermarkKey(-2)).toThrow(RangeError);
  });

  it("round-trip state keys with arbitrary unicode keys", () => {
    fc.assert(
      fc.property(partition, stateName, anyUnicode, (p, state, key) => {
        const k = stateKey(p, state, key);
        expect(isValidKvKey(k)).toBe(true);
        expect(parseKvKey(k)).toEqual({ kind: "state", partition: p, state, key });
      }),
    );
  });

  it("round-trip map entry keys with arbitrary unicode keys and subkeys", () => {
    fc.assert(
      fc.property(partition, stateName, anyUnicode, anyUnicode, (p, state, key, subkey) => {
        const k = mapEntryKey(p, state, key, subkey);
        expect(isValidKvKey(k)).toBe(true);
        expect(parseKvKey(k)).toEqual({ kind: "state", partition: p, state, key, subkey });
      }),
    );
  });

  it("round-trip timer keys", () => {
    fc.assert(
      fc.property(partition, timerArb, (p, timer) => {
        const k = timerKey(p, timer);
        expect(isValidKvKey(k)).toBe(true);
        expect(parseKvKey(k)).toEqual({ kind: "timer", partition: p, timer });
        const legacy = legacyTimerKey(p, timer);
        expect(isValidKvKey(legacy)).toBe(true);
        expect(parseKvKey(legacy)).toEqual({ kind: "timer", partition: p, timer, legacy: true });
        // A bucket's listing and its group in the delta log hold exactly the timers of the bucket.
        const bucket = timerBucketOf(timer.ts);
        expect(k.startsWith(timerBucketGroup(p, timer.domain, bucket) + ".")).toBe(true);
        expect(k.lastIndexOf(".")).toBe(timerBucketGroup(p, timer.domain, bucket).length);
      }),
    );
  });

  it("round-trip bucket markers and the layout record", () => {
    fc.assert(
      fc.property(partition, fc.constantFrom("event" as const, "processing" as const), fc.integer({ min: -(2 ** 40), max: 2 ** 40 }), (p, domain, bucket) => {
        const k = timerMarkerKey(p, domain, bucket);
        expect(isValidKvKey(k)).toBe(true);
        expect(parseKvKey(k)).toEqual({ kind: "timer-bucket", partition: p, domain, bucket });
        expect(parseKvKey(timerLayoutKey(p))).toEqual({ kind: "timer-layout", partition: p });
      }),
    );
  });

  it("round-trip watermark and position keys", () => {
    fc.assert(
      fc.property(partition, (p) => {
        expect(parseKvKey(watermarkKey(p))).toEqual({ kind: "watermark", partition: p });
        expect(parseKvKey(positionKey(p))).toEqual({ kind: "position", partition: p });
      }),
    );
  });

  it("never collide across kinds, keys or partitions", () => {
    const built = fc.oneof(
      fc.tuple(partition, stateName, anyUnicode).map(([p, s, k]) => stateKey(p, s, k)),
      fc.tuple(partition, stateName, anyUnicode, anyUnicode).map(([p, s, k, sk]) => mapEntryKey(p, s, k, sk)),
      fc.tuple(partition, timerArb).map(([p, t]) => timerKey(p, t)),
      fc.tuple(partition, timerArb).map(([p, t]) => legacyTimerKey(p, t)),
      fc.tuple(partition, timerArb).map(([p, t]) => timerMarkerKey(p, t.domain, timerBucketOf(t.ts))),
      partition.map(timerLayoutKey),
      partition.map(watermarkKey),
      partition.map(positionKey),
    );
    fc.assert(
      fc.property(built, built, (a, b) => (a === b) === (JSON.stringify(parseKvKey(a)) === JSON.stringify(parseKvKey(b)))),
    );
  });

  it("reject every key outside the layout", () => {
    const bad = [
      "",
      "0",
      "x.count.YQ",
      "01.count.YQ",
      "-1.count.YQ",
      "0.count",
      "0.count.YQ.YQ.YQ",
      "0._x.YQ",
      "0._wm.x",
      "0._pos.x",
      "0.1st.YQ",
      "0.count.YR",
      "0.count.",
      "0._t.e000000000003e8.aw",
      "0._t.x000000000003e8.aw.=",
      "0._t.e3e8.aw.=",
      "0._t.e000000000003E8.aw.=",
      "0._t.e00000000000-01.aw.=",
      "0._t.e40000000000000.aw.=",
      "0._t.e00000000000000.aw.=",
      "0._t.effffffffffffff.aw.=",
      "0.count.YQ.",
      // A timer in the wrong bucket, or not one token.
      "0._tb.e20000000000001.200000000003e8/aw/=",
      "0._tb.e20000000000000.200000000003e8/aw",
      "0._tb.e20000000000000.200000000003e8.aw.=",
      "0._tb.x20000000000000.200000000003e8/aw/=",
      "0._tk.e20000000000000.x",
      "0._tk.e3e8",
      "0._tl.x",
    ];
    for (const k of bad) expect(parseKvKey(k), k).toBeUndefined();
  });
});
