/**
 * The filter of stored keys (runtime/core/stored-keys.ts): a key it has never seen is absent, a
 * key added is never answered absent — also after the filter went through its stored form, one
 * checkpoint's changes at a time, as a restore reads it — and false positives stay rare.
 */
import { describe, expect, it } from "vitest";
import { BLOCK_BYTES, BLOCK_KEYS, filterBlockIds, StoredKeyFilter, type StoredKeyFilterHeader } from "../../../runtime/core/stored-keys.ts";
import { decodeValue, encodeValue } from "../../../runtime/core/wire.ts";

/** What KV holds of a filter: the last header and block values stored, encoded as the actor stores them. */
class StoredFilter {
  header: Uint8Array | undefined;
  readonly blocks = new Map<string, Uint8Array>();

  store(filter: StoredKeyFilter): void {
    const { header, blocks } = filter.takeChanges();
    if (header !== undefined) this.header = encodeValue(header);
    for (const [id, bytes] of blocks) this.blocks.set(id, encodeValue(bytes));
  }

  restore(): StoredKeyFilter | undefined {
    return StoredKeyFilter.restore(this.header === undefined ? undefined : decodeValue(this.header), new Map([...this.blocks].map(([id, v]) => [id, decodeValue(v)])));
  }
}

describe("StoredKeyFilter", () => {
  it("answers absent for every key of an empty partition", () => {
    const f = StoredKeyFilter.empty();
    for (let i = 0; i < 1000; i++) expect(f.mightContain(`key-${i}`)).toBe(false);
  });

  it("never answers absent for a key added, across many segments", () => {
    const f = StoredKeyFilter.empty();
    const n = 40 * BLOCK_KEYS;
    for (let i = 0; i < n; i++) f.add(`key-${i}`);
    for (let i = 0; i < n; i++) if (!f.mightContain(`key-${i}`)) throw new Error(`key-${i} answered absent`);
    expect(f.header().segments.length).toBeGreaterThan(4);
    expect(f.header().segments.map(([blocks]) => blocks)).toEqual(f.header().segments.map((_, i) => 2 ** i));
  });

  it("has few false positives: under 2 % of keys never added", () => {
    const f = StoredKeyFilter.empty();
    for (let i = 0; i < 100_000; i++) f.add(`user-${i}`);
    let positives = 0;
    for (let i = 0; i < 100_000; i++) if (f.mightContain(`other-${i}`)) positives++;
    expect(positives / 100_000).toBeLessThan(0.02);
  });

  it("changes one block per new key, and reports each change once", () => {
    const f = StoredKeyFilter.empty();
    f.takeChanges();
    f.add("a");
    const first = f.takeChanges();
    expect(first.blocks).toHaveLength(1);
    expect(first.blocks[0]![1]).toHaveLength(BLOCK_BYTES);
    expect(first.header).toEqual({ v: 1, segments: [[1, 1]] });
    expect(f.takeChanges()).toEqual({ header: undefined, blocks: [] });
    f.add("a");
    expect(f.takeChanges()).toEqual({ header: undefined, blocks: [] });
  });

  it("restored from the changes stored at each checkpoint, answers present for every key added before", () => {
    const f = StoredKeyFilter.empty();
    const kv = new StoredFilter();
    const added: string[] = [];
    for (let checkpoint = 0; checkpoint < 30; checkpoint++) {
      for (let i = 0; i < 700; i++) {
        const key = `c${checkpoint}-k${i}`;
        f.add(key);
        added.push(key);
      }
      kv.store(f);
      const restored = kv.restore()!;
      expect(restored).toBeDefined();
      for (const key of added) if (!restored.mightContain(key)) throw new Error(`${key} answered absent after a restore at checkpoint ${checkpoint}`);
    }
    // And a restored filter goes on: keys added after the restore are kept too.
    const again = kv.restore()!;
    for (let i = 0; i < 5000; i++) again.add(`late-${i}`);
    kv.store(again);
    const last = kv.restore()!;
    for (const key of [...added, ...Array.from({ length: 5000 }, (_, i) => `late-${i}`)]) if (!last.mightContain(key)) throw new Error(`${key} answered absent`);
    expect(last.keyCount).toBe(again.keyCount);
  });

  it("refuses a stored form it did not write", () => {
    const good: StoredKeyFilterHeader = { v: 1, segments: [[1, 3], [2, 0]] };
    expect(StoredKeyFilter.restore(good, new Map())).toBeDefined();
    expect(StoredKeyFilter.restore(undefined, new Map())).toBeUndefined();
    expect(StoredKeyFilter.restore({ ...good, v: 2 }, new Map())).toBeUndefined();
    expect(StoredKeyFilter.restore({ v: 1, segments: [] }, new Map())).toBeUndefined();
    expect(StoredKeyFilter.restore({ v: 1, segments: [[2, 0]] }, new Map())).toBeUndefined();
    expect(StoredKeyFilter.restore({ v: 1, segments: [[1, -1]] }, new Map())).toBeUndefined();
    expect(StoredKeyFilter.restore(good, new Map([["0.0", new Uint8Array(10)]]))).toBeUndefined();
    expect(StoredKeyFilter.restore(good, new Map([["2.0", new Uint8Array(BLOCK_BYTES)]]))).toBeUndefined();
    expect(StoredKeyFilter.restore(good, new Map([["1.2", new Uint8Array(BLOCK_BYTES)]]))).toBeUndefined();
    expect(StoredKeyFilter.restore(good, new Map([["0.0", "x"]]))).toBeUndefined();
    expect(StoredKeyFilter.restore(good, new Map([["1.1", new Uint8Array(BLOCK_BYTES)]]))).toBeDefined();
  });

  it("names every block of its segments for a restore to read, and none for a header it did not write", () => {
    expect(filterBlockIds({ v: 1, segments: [[1, 2730], [2, 10]] })).toEqual(["0.0", "1.0", "1.1"]);
    expect(filterBlockIds({ v: 1, segments: [[1, 0], [3, 0]] })).toEqual([]);
    expect(filterBlockIds("garbage")).toEqual([]);
    const f = StoredKeyFilter.empty();
    for (let i = 0; i < 4 * BLOCK_KEYS; i++) f.add(`k${i}`);
    const { blocks } = f.takeChanges();
    expect(new Set(filterBlockIds(f.header()))).toEqual(new Set([...blocks.map(([id]) => id), ...filterBlockIds(f.header())]));
    expect(blocks.every(([id]) => filterBlockIds(f.header()).includes(id))).toBe(true);
  });
});
