/**
 * What the producer decides without I/O (design note ce): the partition of an event (eddy's hash
 * of its key, as a partitioned source reads it), the subject of a partition, and when a buffer
 * becomes a message and what its bytes are.
 */
import { describe, expect, it } from "vitest";
import { Batcher, fieldKey, joinEvents, subjectTemplate, type BatchingOptions } from "../../../runtime/core/producer-batches.ts";
import { partitionOf } from "../../../runtime/core/hash.ts";
import { decodeEvents } from "../../../runtime/core/record-input.ts";
import { encodeValue } from "../../../runtime/core/wire.ts";

const text = (b: Uint8Array) => new TextDecoder().decode(b);
const options = (o: Partial<BatchingOptions> = {}): BatchingOptions => ({ format: "json-lines", maxBatch: 3, maxBatchBytes: 1000, partitions: 1, subjectOf: () => "s", ...o });

describe("Batcher", () => {
  it("sends a partition's buffer when it holds maxBatch events", () => {
    const b = new Batcher(options());
    expect(b.add({ a: 1 }, 0)).toEqual([]);
    expect(b.add({ a: 2 }, 0)).toEqual([]);
    const [ready] = b.add({ a: 3 }, 0);
    expect(ready).toMatchObject({ partition: 0, subject: "s", events: 3 });
    expect(text(ready!.data)).toBe('{"a":1}\n{"a":2}\n{"a":3}');
    expect(b.buffered).toBe(0);
  });

  it("sends a buffer before the event that would make it larger than maxBatchBytes", () => {
    const b = new Batcher(options({ maxBatch: 100, maxBatchBytes: 20 }));
    expect(b.add("aaaaaaa", 0)).toEqual([]); // 9 bytes
    expect(b.add("bbbbbbb", 0)).toEqual([]); // 9 + 1 + 9 = 19
    const ready = b.add("c", 0);
    expect(ready.map((r) => text(r.data))).toEqual(['"aaaaaaa"\n"bbbbbbb"']);
    expect(() => b.add("x".repeat(30), 0)).toThrow(/does not fit in a message of at most 20 bytes/);
  });

  it("partitions by eddy's hash of the key and names each partition's subject", () => {
    const b = new Batcher(options({ partitions: 4, keyOf: fieldKey("user"), subjectOf: subjectTemplate("o.{partition}", 4), maxBatch: 100 }));
    const users = ["ann", "bob", "cy", "dee", "ed", "fay", "gus"];
    for (const user of users) b.add({ user }, 0);
    const ready = b.drain();
    for (const r of ready) {
      expect(r.subject).toBe(`o.${r.partition}`);
      for (const e of decodeEvents("json-lines", r.data) as Array<{ user: string }>) expect(partitionOf(e.user, 4)).toBe(r.partition);
    }
    expect(ready.reduce((n, r) => n + r.events, 0)).toBe(users.length);
  });

  it("sends a buffer once its first event waited lingerMs", () => {
    const b = new Batcher(options({ maxBatch: 100 }));
    b.add(1, 100);
    b.add(2, 140);
    expect(b.oldest()).toBe(100);
    expect(b.due(104, 5)).toEqual([]);
    expect(b.due(105, 5).map((r) => r.events)).toEqual([2]);
    expect(b.oldest()).toBeUndefined();
  });

  it("writes msgpack batches a source decodes, and one event per message in json and msgpack", () => {
    const packed = new Batcher(options({ format: "msgpack-batch", maxBatch: 2 }));
    packed.add({ a: 1 }, 0);
    expect(decodeEvents("msgpack-batch", packed.add("x", 0)[0]!.data)).toEqual([{ a: 1 }, "x"]);
    const single = new Batcher(options({ format: "msgpack" }));
    expect(single.add({ a: 1 }, 0).map((r) => r.data)).toEqual([encodeValue({ a: 1 })]);
    expect(new Batcher(options({ format: "json" })).add([1], 0).map((r) => text(r.data))).toEqual(["[1]"]);
  });

  it("encodes msgpack array headers of every size", () => {
    for (const n of [0, 15, 16, 65535, 65536]) {
      const events = Array.from({ length: n }, () => encodeValue(1));
      expect((decodeEvents("msgpack-batch", joinEvents("msgpack-batch", events, n)) as unknown[]).length).toBe(n);
    }
  });
});

describe("partition keys and subjects", () => {
  it("takes a field's string, number or boolean, and refuses a missing or other field", () => {
    const key = fieldKey("k");
    expect([key({ k: "a" }), key({ k: 7 }), key({ k: true })]).toEqual(["a", "7", "true"]);
    expect(() => key({})).toThrow('field "k" is missing');
    expect(() => key({ k: { x: 1 } })).toThrow('field "k" is {"x":1}');
    expect(() => key(null)).toThrow("missing");
  });

  it("needs {partition} in the subject with more than one partition", () => {
    expect(subjectTemplate("a.{partition}.b", 3)(2)).toBe("a.2.b");
    expect(subjectTemplate("one", 1)(0)).toBe("one");
    expect(() => subjectTemplate("one", 2)).toThrow(/must name each partition/);
    expect(() => subjectTemplate("a b", 1)).toThrow(/whitespace/);
  });
});
