/**
 * Held exactly-once sink output, part in memory and part spilled (runtime/core/held-sink.ts):
 * what a spill takes, what a commit publishes and in which order, what a snapshot records, and
 * which spilled messages may be purged once a checkpoint is applied — on plain data.
 */
import { describe, expect, it } from "vitest";
import { decodeSpillBatch, encodeSpillBatch, HeldSinkOutput, loadRanges, storeRanges, type HeldOutput } from "../../../runtime/core/held-sink.ts";
import { encodeValue, MalformedMessageError } from "../../../runtime/core/wire.ts";

const out = (epoch: number, i: number, bytes = 10): HeldOutput => ({ subject: "out", data: new Uint8Array(bytes).fill(i), msgId: `j/f/0/1/${epoch}/${i}`, epoch });
const ids = (xs: readonly HeldOutput[]) => xs.map((o) => o.msgId);

describe("HeldSinkOutput", () => {
  it("counts what it holds in memory until a spill is stored, then only as spilled", () => {
    const h = new HeldSinkOutput();
    h.add(out(1, 0));
    h.add(out(1, 1));
    expect(h.inMemoryBytes).toBe(20);
    const batches = h.beginSpill(1 << 20);
    expect(batches.map((b) => ids(b.items))).toEqual([["j/f/0/1/1/0", "j/f/0/1/1/1"]]);
    expect(h.inMemoryBytes).toBe(20);
    expect(h.isSpilling).toBe(true);
    h.endSpill("r", [7]);
    expect(h.inMemoryBytes).toBe(0);
    expect(h.spilledBytes).toBe(20);
    expect(h.view()).toEqual({ spilled: [{ run: "r", epoch: 1, first: 7, last: 7, count: 2, bytes: 20 }], inMemory: [] });
  });

  it("spills one epoch per message, and cuts messages at the batch size (a larger output goes alone)", () => {
    const h = new HeldSinkOutput();
    h.add(out(1, 0, 100));
    h.add(out(1, 1, 100));
    h.add(out(1, 2, 500));
    h.add(out(2, 3, 10));
    const batches = h.beginSpill(300);
    expect(batches.map((b) => [b.epoch, ids(b.items).length, b.bytes])).toEqual([
      [1, 2, 200],
      [1, 1, 500],
      [2, 1, 10],
    ]);
  });

  it("keeps one range per epoch, merging the spills of one run into it", () => {
    const h = new HeldSinkOutput();
    h.add(out(1, 0));
    h.beginSpill(1 << 20);
    h.endSpill("r", [3]);
    h.add(out(1, 1));
    h.add(out(2, 2));
    h.beginSpill(1 << 20);
    h.endSpill("r", [9, 10]);
    expect(h.view().spilled).toEqual([
      { run: "r", epoch: 1, first: 3, last: 9, count: 2, bytes: 20 },
      { run: "r", epoch: 2, first: 10, last: 10, count: 1, bytes: 10 },
    ]);
  });

  it("does not start a second spill while one is being written, nor an empty one", () => {
    const h = new HeldSinkOutput();
    expect(h.beginSpill(100)).toEqual([]);
    h.add(out(1, 0));
    h.beginSpill(100);
    h.add(out(1, 1));
    expect(h.beginSpill(100)).toEqual([]);
    expect(h.inMemoryBytes).toBe(20);
  });

  it("commits the epochs up to the checkpoint in emission order: spilled ranges, then memory; later epochs stay", () => {
    const h = new HeldSinkOutput();
    h.add(out(1, 0));
    h.beginSpill(1 << 20);
    h.endSpill("r", [5]);
    h.add(out(1, 1));
    h.add(out(2, 2));
    const c = h.commit(1);
    expect(c.spilled.map((r) => [r.epoch, r.first])).toEqual([[1, 5]]);
    expect(ids(c.inMemory)).toEqual(["j/f/0/1/1/1"]);
    expect(ids(h.view().inMemory)).toEqual(["j/f/0/1/2/2"]);
    expect(h.inMemoryBytes).toBe(10);
    expect(h.spilledBytes).toBe(0);
    // A commit seen twice, or an older one late, publishes nothing again.
    expect(h.commit(1)).toEqual({ spilled: [], inMemory: [] });
  });

  it("publishes from memory what a commit takes while its spill is in flight, and leaves the stored copy to purge", () => {
    const h = new HeldSinkOutput();
    h.add(out(1, 0));
    h.add(out(2, 1));
    h.beginSpill(1 << 20);
    const c = h.commit(1);
    expect(c.spilled).toEqual([]);
    expect(ids(c.inMemory)).toEqual(["j/f/0/1/1/0"]);
    // A snapshot now records the rest as messages: their sequences are not known yet.
    expect(ids(h.view().inMemory)).toEqual(["j/f/0/1/2/1"]);
    h.endSpill("r", [20, 21]);
    expect(h.view()).toEqual({ spilled: [{ run: "r", epoch: 2, first: 21, last: 21, count: 1, bytes: 10 }], inMemory: [] });
    // The copy of epoch 1 (sequence 20) may go once checkpoint 1 is applied.
    expect(h.purgeBelow(0)).toBeUndefined();
    expect(h.purgeBelow(1)).toBe(21);
    expect(h.purgeBelow(1)).toBeUndefined();
  });

  it("releases a commit's spilled messages for purging only once that checkpoint is applied", () => {
    const h = new HeldSinkOutput();
    h.add(out(1, 0));
    h.beginSpill(1 << 20);
    h.endSpill("r", [4]);
    h.add(out(2, 1));
    h.beginSpill(1 << 20);
    h.endSpill("r", [8]);
    h.commit(1);
    h.commit(2);
    expect(h.purgeBelow(1)).toBe(5);
    expect(h.purgeBelow(2)).toBe(9);
  });

  it("stores ranges in a snapshot without their byte counts and loads them back", () => {
    const h = new HeldSinkOutput();
    h.add(out(3, 0));
    h.beginSpill(1 << 20);
    h.endSpill("g2.0.ab", [12]);
    const stored = storeRanges(h.view().spilled);
    expect(stored).toEqual([["g2.0.ab", 3, 12, 12, 1]]);
    expect(loadRanges(stored)).toEqual([{ run: "g2.0.ab", epoch: 3, first: 12, last: 12, count: 1, bytes: 0 }]);
    // Deltas written before spilling existed have none.
    expect(loadRanges(undefined)).toEqual([]);
  });

  it("refuses stored ranges that are not what eddy writes", () => {
    for (const bad of [{}, [["r", 1, 0, 1, 1]], [["r", 1, 5, 4, 1]], [["r", 1, 1, 2, 0]], [["r", 1, 1, 2]], [[1, 1, 1, 2, 1]], [["r", 1.5, 1, 2, 1]], [["r", 1, 1, Infinity, 1]]]) {
      expect(typeof loadRanges(bad)).toBe("string");
    }
  });
});

describe("spill messages", () => {
  it("carry their held messages with subjects and message ids", () => {
    const items = [out(4, 0), { ...out(4, 1), subject: "out.other" }];
    const decoded = decodeSpillBatch(encodeSpillBatch({ epoch: 4, items, bytes: 20 }), 4);
    expect(decoded.map((o) => [o.subject, o.msgId, o.epoch, [...o.data]])).toEqual(items.map((o) => [o.subject, o.msgId, 4, [...o.data]]));
  });

  it("carry the headers of held messages that have them (row kinds, KV deletes)", () => {
    const items = [out(4, 0), { ...out(4, 1), headers: { "KV-Operation": "DEL" } }];
    const decoded = decodeSpillBatch(encodeSpillBatch({ epoch: 4, items, bytes: 20 }), 4);
    expect(decoded.map((o) => o.headers)).toEqual([undefined, { "KV-Operation": "DEL" }]);
  });

  it("reject a body that is not a list of [subject, message id, payload] or [subject, message id, payload, headers]", () => {
    const payload = new Uint8Array(1);
    for (const body of [new Uint8Array([0xc1]), encodeValue({}), encodeValue([["out", "id"]]), encodeValue([["", "id", payload]]), encodeValue([["out", 3, payload]]), encodeValue([["out", "id", "text"]]), encodeValue([["out", "id", payload, { a: 1 }]]), encodeValue([["out", "id", payload, ["x"]]]), encodeValue([["out", "id", payload, {}, 1]])]) {
      expect(() => decodeSpillBatch(body, 1)).toThrow(MalformedMessageError);
    }
  });
});
