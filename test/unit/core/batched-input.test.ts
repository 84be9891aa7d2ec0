/**
 * Batched source messages (design note ce): a `json-lines` or `msgpack-batch` message carries
 * many events, each decoded, size-checked and (for a changelog source) mapped on its own, so one
 * bad event is refused alone and the rest of the message is kept.
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { decodeEvents, eventPayload, isBatchFormat, readSourceEvents, Rejection } from "../../../runtime/core/record-input.ts";
import { encodeValue } from "../../../runtime/core/wire.ts";
import { change } from "../../../runtime/sdk/index.ts";

const bytes = (s: string) => new TextEncoder().encode(s);
const text = (b: Uint8Array) => new TextDecoder().decode(b);
const reasons = (events: ReturnType<typeof readSourceEvents>) => (events instanceof Rejection ? events.reason : events.map((e) => (e instanceof Rejection ? e.reason : e)));

describe("decodeEvents", () => {
  it("reads one JSON value per line; blank lines, a trailing newline and CRLF are not events", () => {
    expect(decodeEvents("json-lines", bytes('{"a":1}\n\n  \n[2]\r\n"x"\n'))).toEqual([{ a: 1 }, [2], "x"]);
    expect(decodeEvents("json-lines", bytes(""))).toEqual([]);
  });

  it("refuses a bad line alone", () => {
    const events = decodeEvents("json-lines", bytes('{"a":1}\n{nope\n{"a":3}')) as unknown[];
    expect(events[0]).toEqual({ a: 1 });
    expect(events[1]).toBeInstanceOf(Rejection);
    expect((events[1] as Rejection).reason).toMatch(/^undecodable: /);
    expect(events[2]).toEqual({ a: 3 });
  });

  it("reads each line as if it were decoded alone, whatever the bytes (bad UTF-8, BOMs, CR, blanks)", () => {
    // The reference: split the bytes at \n, drop a trailing \r and blank lines, decode and parse each.
    const decoder = new TextDecoder();
    const reference = (data: Uint8Array) => {
      const out: unknown[] = [];
      const lines: number[][] = [];
      let start = 0;
      while (start <= data.length) {
        let end = data.indexOf(10, start);
        if (end < 0) end = data.length;
        let last = end;
        if (last > start && data[last - 1] === 13) last--;
        const line = data.subarray(start, last);
        if (!line.every((c) => c === 32 || c === 9)) {
          lines.push([...line]);
          try {
            out.push(JSON.parse(decoder.decode(line)));
          } catch {
            out.push("refused");
          }
        }
        start = end + 1;
      }
      return { out, lines };
    };
    // Pieces that make valid and invalid lines: JSON, separators, a BOM, bad and cut UTF-8.
    const piece = fc.constantFrom(...['{"u":"é"}', "[1,2]", '"x"', "7", "{", " ", "\t", "\n", "\r\n", "\r"].map((t) => [...bytes(t)]), [0xef, 0xbb, 0xbf], [0xff], [0xc3], [0xe2, 0x82]);
    const message = fc.array(piece, { maxLength: 40 }).map((pieces) => Uint8Array.from(pieces.flat()));
    fc.assert(
      fc.property(message, (data) => {
        const events = decodeEvents("json-lines", data) as unknown[];
        const expected = reference(data);
        expect(events.map((e) => (e instanceof Rejection ? "refused" : e))).toEqual(expected.out);
        // Event i's dead letter is line i.
        expect(events.map((_, i) => [...eventPayload("json-lines", data, i)])).toEqual(expected.lines);
      }),
      { numRuns: 2_000 },
    );
  });

  it("reads a msgpack array, and refuses anything else whole", () => {
    expect(decodeEvents("msgpack-batch", encodeValue([{ a: 1 }, 2]))).toEqual([{ a: 1 }, 2]);
    expect((decodeEvents("msgpack-batch", encodeValue({ a: 1 })) as Rejection).reason).toBe("undecodable: a msgpack-batch message must be an array of events, not object");
    expect(decodeEvents("msgpack-batch", bytes("\xc1"))).toBeInstanceOf(Rejection);
  });

  it("knows which formats are batched", () => {
    expect(["json", "msgpack", "string", "bytes", "json-lines", "msgpack-batch"].map((f) => isBatchFormat(f as never))).toEqual([false, false, false, false, true, true]);
  });
});

describe("readSourceEvents", () => {
  it("makes each event of a batch one record, or its Changes for a changelog source", () => {
    expect(readSourceEvents("json-lines", bytes("1\n2"), 1000)).toEqual([[1], [2]]);
    const mapper = (raw: unknown) => (raw === 2 ? [change(raw, "-U"), change(raw, "+U")] : change(raw));
    expect(readSourceEvents("msgpack-batch", encodeValue([1, 2]), 1000, mapper)).toEqual([[change(1)], [change(2, "-U"), change(2, "+U")]]);
  });

  it("refuses the events a changelog mapper refuses, keeping the others", () => {
    const mapper = (raw: unknown) => {
      if (raw === 2) throw new Error("bad op");
      return change(raw);
    };
    expect(reasons(readSourceEvents("json-lines", bytes("1\n2\n3"), 1000, mapper))).toEqual([[change(1)], "changelog: bad op", [change(3)]]);
  });

  it("holds each event, not the message, to the record limit", () => {
    const big = "x".repeat(60);
    const events = readSourceEvents("json-lines", bytes(`"a"\n"${big}"\n"b"`), 50);
    expect(reasons(events)).toEqual([["a"], "too large: 62 bytes, more than the record limit of 50 bytes", ["b"]]);
    const packed = readSourceEvents("msgpack-batch", encodeValue(["a", big, "b"]), 50);
    expect(reasons(packed)).toEqual([["a"], "too large: 62 bytes, more than the record limit of 50 bytes", ["b"]]);
  });

  it("keeps one-event formats as before: one record, refused whole", () => {
    expect(readSourceEvents("json", bytes('{"a":1}'), 1000)).toEqual([[{ a: 1 }]]);
    expect(reasons(readSourceEvents("json", bytes("{"), 1000))).toMatch(/^undecodable: /);
    expect(reasons(readSourceEvents("json", bytes('"abcdef"'), 4))).toBe("too large: 8 bytes, more than the record limit of 4 bytes");
  });
});

describe("eventPayload", () => {
  it("is the event's own line or its msgpack encoding, for its dead letter", () => {
    expect(text(eventPayload("json-lines", bytes('1\n\n{bad\n3'), 1))).toBe("{bad");
    expect(eventPayload("msgpack-batch", encodeValue([1, { b: 2 }]), 1)).toEqual(encodeValue({ b: 2 }));
    const whole = bytes("{}");
    expect(eventPayload("json", whole, 0)).toBe(whole);
  });
});
