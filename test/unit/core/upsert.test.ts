/**
 * The upsert sink's pure decisions (runtime/core/upsert.ts, design note bv): how a key becomes a
 * KV key, what a record writes, how a checkpoint's changes of one key collapse, and how a round
 * that applies several checkpoints keeps only each key's newest write.
 */
import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { coalesceUpserts, decodeKvKey, encodeKvKey, kvSubject, LastWrites, UpsertBatch, upsertWrite } from "../../../runtime/core/upsert.ts";
import { Rejection } from "../../../runtime/core/record-input.ts";
import type { HeldOutput } from "../../../runtime/core/held-sink.ts";

/** What NATS KV accepts as a key (nats.js `validKeyRe` and its dot rules). */
const validKvKey = (k: string) => /^[-/=.\w]+$/.test(k) && !k.startsWith(".") && !k.endsWith(".") && !k.includes("..");

describe("encodeKvKey", () => {
  it("keeps letters, digits, '_', '-', '/' and dots between tokens as they are", () => {
    expect(encodeKvKey("order-17/line_2")).toBe("order-17/line_2");
    expect(encodeKvKey("orders.eu.17")).toBe("orders.eu.17");
  });

  it("writes every other character as =XX per UTF-8 byte, '=' included", () => {
    expect(encodeKvKey("ann@example.com")).toBe("ann=40example.com");
    expect(encodeKvKey("a=b")).toBe("a=3Db");
    expect(encodeKvKey("a b*>")).toBe("a=20b=2A=3E");
    expect(encodeKvKey("ü")).toBe("=C3=BC");
    expect(encodeKvKey("😀")).toBe("=F0=9F=98=80");
  });

  it("encodes a dot that would leave a token empty: leading, trailing or doubled", () => {
    expect(encodeKvKey(".a")).toBe("=2Ea");
    expect(encodeKvKey("a.")).toBe("a=2E");
    expect(encodeKvKey("a..b")).toBe("a=2E=2Eb");
    expect(encodeKvKey(".")).toBe("=2E");
  });

  it("always gives a valid KV key, never the same for two keys, and decodes back", () => {
    fc.assert(
      fc.property(fc.string({ minLength: 1, unit: "binary" }).filter((s) => s.isWellFormed()), (key) => {
        const encoded = encodeKvKey(key);
        expect(validKvKey(encoded)).toBe(true);
        expect(decodeKvKey(encoded)).toBe(key);
      }),
      { numRuns: 500 },
    );
    fc.assert(
      fc.property(fc.string({ minLength: 1 }), fc.string({ minLength: 1 }), (a, b) => {
        if (a !== b) expect(encodeKvKey(a)).not.toBe(encodeKvKey(b));
      }),
      { numRuns: 500 },
    );
  });
});

describe("upsertWrite", () => {
  const byId = (r: { id: string }) => r.id;

  it("puts the row of +I, +U and of a plain record, as JSON, under the encoded key", () => {
    expect(upsertWrite({ rowKind: "+I", row: { id: "a b", n: 1 } }, byId)).toEqual({ key: "a=20b", json: '{"id":"a b","n":1}' });
    expect(upsertWrite({ rowKind: "+U", row: { id: "a", n: 2 } }, byId)).toEqual({ key: "a", json: '{"id":"a","n":2}' });
    expect(upsertWrite({ id: "a", n: 3 }, byId)).toEqual({ key: "a", json: '{"id":"a","n":3}' });
  });

  it("deletes the key of -U and -D", () => {
    expect(upsertWrite({ rowKind: "-U", row: { id: "a" } }, byId)).toEqual({ key: "a", json: undefined });
    expect(upsertWrite({ rowKind: "-D", row: { id: "a" } }, byId)).toEqual({ key: "a", json: undefined });
  });

  it("refuses, with the reason a dead letter carries, keys and rows it cannot write", () => {
    const reason = (record: unknown, key: (r: any) => unknown) => {
      const w = upsertWrite(record, key as (r: any) => string);
      return w instanceof Rejection ? w.reason : undefined;
    };
    expect(reason({ id: 1 }, (r) => r.id)).toBe("upsert: key returned number, not a string");
    expect(reason({}, (r) => r.id)).toBe("upsert: key returned undefined, not a string");
    expect(reason({ id: "" }, byId)).toBe("upsert: key returned an empty string");
    expect(reason({ id: "\ud800" }, byId)).toBe("upsert: key returned a string with a lone UTF-16 surrogate");
    expect(reason({ id: "x".repeat(3073) }, byId)).toBe("upsert: key is 3073 characters encoded, more than 3072");
    expect(reason({ rowKind: "+I", row: undefined }, () => "k")).toBe("upsert: row is undefined, which JSON cannot hold");
    expect(reason({ id: "a", big: 1n }, byId)).toMatch(/^upsert: row cannot be written as JSON: /);
    expect(
      reason({ id: "a" }, () => {
        throw new Error("no id");
      }),
    ).toBe("upsert: key failed: no id");
  });
});

describe("UpsertBatch: one checkpoint's writes", () => {
  it("keeps one write per key, the last change winning", () => {
    const b = new UpsertBatch();
    b.add({ key: "a", json: "1" });
    b.add({ key: "b", json: "1" });
    b.add({ key: "a", json: undefined }); // -U …
    b.add({ key: "a", json: "2" }); // … then +U: one put
    b.add({ key: "b", json: undefined }); // -D
    expect(b.size).toBe(2);
    expect(b.take()).toEqual([
      { key: "a", json: "2" },
      { key: "b", json: undefined },
    ]);
    expect(b.size).toBe(0);
    expect(b.take()).toEqual([]);
  });
});

describe("coalesceUpserts: the checkpoints a round applies", () => {
  const held = (subject: string, data: string, epoch: number): HeldOutput => ({ subject, data: new TextEncoder().encode(data), msgId: `j/f/0/1/${epoch}/${subject}`, epoch });

  it("keeps only the last write of each KV key, at its place, and every other message as it is", () => {
    const items = [held(kvSubject("b", "x"), "1", 5), held("results", "r1", 5), held(kvSubject("b", "y"), "1", 5), held(kvSubject("b", "x"), "2", 6), held("results", "r2", 6)];
    const out = coalesceUpserts(items).map((o) => [o.subject, new TextDecoder().decode(o.data)]);
    expect(out).toEqual([
      ["results", "r1"],
      ["$KV.b.y", "1"],
      ["$KV.b.x", "2"],
      ["results", "r2"],
    ]);
  });

  it("leaves output without upserts untouched", () => {
    const items = [held("results", "r1", 5), held("results", "r1", 5)];
    expect(coalesceUpserts(items)).toBe(items);
  });

  it("gives each key its newest value, whatever suffix of checkpoints a replay starts from", () => {
    // Checkpoints 1..n of writes to a few keys; a worker killed after applying some replays the
    // rest in one round. The bucket after the replay must equal applying everything in order.
    fc.assert(
      fc.property(fc.array(fc.array(fc.tuple(fc.constantFrom("a", "b", "c"), fc.option(fc.nat(9), { nil: undefined })), { maxLength: 4 }), { minLength: 1, maxLength: 6 }), fc.nat(), (checkpoints, cut) => {
        const items = checkpoints.flatMap((writes, i) => writes.map(([k, v]) => held(kvSubject("b", k), v === undefined ? "" : String(v), i + 1)));
        const apply = (bucket: Map<string, string>, list: readonly HeldOutput[]) => {
          for (const o of list) {
            const v = new TextDecoder().decode(o.data);
            if (v === "") bucket.delete(o.subject);
            else bucket.set(o.subject, v);
          }
          return bucket;
        };
        const expected = apply(new Map(), items);
        const applied = cut % (checkpoints.length + 1);
        const before = items.filter((o) => o.epoch <= applied);
        const replayed = items.filter((o) => o.epoch > applied);
        // Partly published by the killed worker (any prefix of the rest), then replayed whole.
        const partly = replayed.slice(0, cut % (replayed.length + 1));
        const bucket = apply(apply(apply(new Map(), before), partly), coalesceUpserts(replayed));
        expect(bucket).toEqual(expected);
      }),
      { numRuns: 500 },
    );
  });
});

describe("LastWrites: a round's writes noted first, published second", () => {
  const w = (subject: string, msgId: string) => ({ subject, msgId });

  it("keeps only the last noted write of each KV subject, and everything else", () => {
    const writes = new LastWrites();
    for (const o of [w("$KV.b.x", "j/f/0/1/5/0"), w("out", "j/f/0/1/5/1"), w("$KV.b.x", "j/f/0/1/6/0")]) writes.note(o);
    expect(writes.keep(w("$KV.b.x", "j/f/0/1/5/0"))).toBe(false);
    expect(writes.keep(w("$KV.b.x", "j/f/0/1/6/0"))).toBe(true);
    expect(writes.keep(w("out", "j/f/0/1/5/1"))).toBe(true);
    expect(writes.size).toBe(1);
  });

  it("keeps a write it never noted, and decides the others alike when a second reading misses some", () => {
    const writes = new LastWrites();
    writes.note(w("$KV.b.x", "a"));
    writes.note(w("$KV.b.y", "b"));
    writes.note(w("$KV.b.x", "c"));
    // The second reading misses "a" (purged by another run that published it): "c" is still the one.
    expect([w("$KV.b.y", "b"), w("$KV.b.x", "c")].map((o) => writes.keep(o))).toEqual([true, true]);
    expect(writes.keep(w("$KV.b.z", "d"))).toBe(true);
  });
});
