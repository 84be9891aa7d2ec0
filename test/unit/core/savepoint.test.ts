/**
 * The savepoint format: ids and object names, the JSON manifest and the msgpack partition
 * exports, which round-trip and are refused when damaged or inconsistent.
 */
import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { broadcastKey, mapEntryKey, positionKey, stateKey, timerKey, watermarkKey } from "../../../runtime/core/kv-keys.ts";
import {
  CorruptSavepointError,
  decodeManifest,
  decodePartitionExport,
  encodeManifest,
  encodePartitionExport,
  isValidSavepointId,
  newSavepointId,
  savepointManifestName,
  savepointObjectName,
  savepointPrefix,
  type PartitionExport,
  type SavepointManifest,
} from "../../../runtime/core/savepoint.ts";
import { encodeValue } from "../../../runtime/core/wire.ts";

const manifest: SavepointManifest = {
  format: 1,
  id: "sp-20250601T120000123Z-42",
  job: "pageviews",
  checkpoint: 42,
  generation: 3,
  createdAt: Date.UTC(2025, 5, 1, 12, 0, 0, 123),
  codeVersion: 7,
  functions: [
    { name: "parse", partitions: 2, isSource: true, stream: "PAGEVIEWS", state: {} },
    { name: "counts", partitions: 4, isSource: false, state: { n: { kind: "value", version: 2 }, windows: { kind: "map", version: 1 } } },
  ],
};

const bytes = (...b: number[]) => new Uint8Array(b);

/** Any entry a partition export can hold, in partition `p`. */
const entryArb = (p: number): fc.Arbitrary<[string, Uint8Array]> => {
  const text = fc.string({ maxLength: 12 });
  const state = fc.constantFrom("n", "windows", "seen-2");
  const key = fc.oneof(
    fc.tuple(state, text).map(([s, k]) => stateKey(p, s, k)),
    fc.tuple(state, text, text).map(([s, k, sub]) => mapEntryKey(p, s, k, sub)),
    fc.record({ domain: fc.constantFrom("event" as const, "processing" as const), ts: fc.integer(), key: text, name: text }).map((t) => timerKey(p, t)),
    fc.constant(watermarkKey(p)),
    fc.constant(positionKey(p)),
  );
  return fc.tuple(key, fc.uint8Array({ maxLength: 40 }));
};

const exportArb: fc.Arbitrary<PartitionExport> = fc
  .tuple(fc.stringMatching(/^[A-Za-z0-9_-]{1,12}$/), fc.nat(64))
  .chain(([fn, p]) => fc.uniqueArray(entryArb(p), { selector: (e) => e[0], maxLength: 30 }).map((entries) => ({ fn, partition: p, entries })));

describe("savepoint ids and object names", () => {
  it("names a savepoint by its UTC creation time and checkpoint", () => {
    expect(newSavepointId(42, Date.UTC(2025, 5, 1, 12, 0, 0, 123))).toBe("sp-20250601T120000123Z-42");
    expect(newSavepointId(0, 0)).toBe("sp-19700101T000000000Z-0");
  });

  it("makes ids that are valid tokens and sort by creation time as strings", () => {
    const time = fc.integer({ min: 0, max: Date.UTC(9999, 11, 31) });
    fc.assert(
      fc.property(fc.nat(), fc.nat(), time, time, (c1, c2, t1, t2) => {
        const a = newSavepointId(c1, t1);
        const b = newSavepointId(c2, t2);
        expect(isValidSavepointId(a)).toBe(true);
        expect(a).toMatch(/^[A-Za-z0-9_-]+$/);
        if (t1 < t2) expect(a < b).toBe(true);
      }),
    );
  });

  it("refuses checkpoints and times it cannot write", () => {
    expect(() => newSavepointId(-1, 0)).toThrow(RangeError);
    expect(() => newSavepointId(1.5, 0)).toThrow(RangeError);
    expect(() => newSavepointId(1, -1)).toThrow(RangeError);
    expect(() => newSavepointId(1, Number.NaN)).toThrow(RangeError);
  });

  it("puts every object of a savepoint under <job>/<id>/, partitions one level below the manifest", () => {
    expect(savepointObjectName("pageviews", "sp-1", "counts", 3)).toBe("pageviews/sp-1/counts/3");
    expect(savepointManifestName("pageviews", "sp-1")).toBe("pageviews/sp-1/manifest");
    expect(savepointPrefix("pageviews", "sp-1")).toBe("pageviews/sp-1/");
    expect(savepointObjectName("j", "s", "manifest", 0)).not.toBe(savepointManifestName("j", "s"));
    expect(() => savepointObjectName("job.x", "sp", "f", 0)).toThrow(RangeError);
    expect(() => savepointObjectName("job", "sp 1", "f", 0)).toThrow(RangeError);
    expect(() => savepointObjectName("job", "sp", "f", -1)).toThrow(RangeError);
  });
});

describe("savepoint manifest", () => {
  it("round-trips as readable JSON", () => {
    const data = encodeManifest(manifest);
    expect(JSON.parse(new TextDecoder().decode(data))).toEqual(manifest);
    expect(decodeManifest(data)).toEqual(manifest);
  });

  it("refuses garbage, other formats and inconsistent manifests as corrupt", () => {
    const enc = (m: unknown) => new TextEncoder().encode(JSON.stringify(m));
    const bad: unknown[] = [
      null,
      [],
      { ...manifest, format: 2 },
      { ...manifest, id: "a/b" },
      { ...manifest, checkpoint: -1 },
      { ...manifest, functions: [manifest.functions[1], manifest.functions[1]] },
      { ...manifest, functions: [{ ...manifest.functions[1], partitions: 0 }] },
      { ...manifest, functions: [{ ...manifest.functions[1], state: { n: { kind: "set", version: 1 } } }] },
      { ...manifest, functions: [{ ...manifest.functions[1], state: { n: { kind: "value", version: 0 } } }] },
    ];
    for (const m of bad) expect(() => decodeManifest(enc(m)), JSON.stringify(m)).toThrow(CorruptSavepointError);
    expect(() => decodeManifest(bytes(0xff, 0xfe))).toThrow(CorruptSavepointError);
    expect(() => decodeManifest(new TextEncoder().encode("{"))).toThrow(CorruptSavepointError);
  });

  it("refuses to write an invalid manifest", () => {
    expect(() => encodeManifest({ ...manifest, job: "" })).toThrow(RangeError);
  });
});

describe("partition exports", () => {
  it("round-trip any entries of the KV layout, values as plain byte arrays", () => {
    fc.assert(
      fc.property(exportArb, (e) => {
        const back = decodePartitionExport(encodePartitionExport(e));
        expect(back).toEqual(e);
        for (const [, v] of back.entries) expect(Object.getPrototypeOf(v)).toBe(Uint8Array.prototype);
      }),
    );
  });

  it("refuses bytes that are not an export as corrupt", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 64 }), (data) => {
        let decoded: PartitionExport | undefined;
        try {
          decoded = decodePartitionExport(data);
        } catch (e) {
          expect(e).toBeInstanceOf(CorruptSavepointError);
          return;
        }
        // Random bytes that happen to decode must be a well-formed export.
        expect(decoded.entries).toBeInstanceOf(Array);
      }),
    );
    const good = encodePartitionExport({ fn: "counts", partition: 1, entries: [[stateKey(1, "n", "a"), bytes(1)]] });
    expect(() => decodePartitionExport(good.subarray(0, good.length - 2))).toThrow(CorruptSavepointError);
  });

  it("refuses exports whose entries do not belong to the partition or are no layout keys", () => {
    const raw = (body: unknown) => encodeValue(body);
    const ok = { format: 1, fn: "counts", partition: 1 };
    const bad: unknown[] = [
      { ...ok, format: 2, entries: [] },
      { ...ok, entries: "x" },
      { ...ok, fn: "a.b", entries: [] },
      { ...ok, partition: -1, entries: [] },
      { ...ok, entries: [[stateKey(2, "n", "a"), bytes(1)]] },
      { ...ok, entries: [["1.n", bytes(1)]] },
      { ...ok, entries: [["1._applied", bytes(1)]] },
      { ...ok, entries: [[stateKey(1, "n", "a"), "text"]] },
      { ...ok, entries: [[stateKey(1, "n", "a"), bytes(1), bytes(2)]] },
      { ...ok, entries: [[stateKey(1, "n", "a"), bytes(1)], [stateKey(1, "n", "a"), bytes(2)]] },
    ];
    for (const body of bad) expect(() => decodePartitionExport(raw(body)), JSON.stringify(body)).toThrow(CorruptSavepointError);
  });

  it("refuses to write an export it would refuse to read", () => {
    expect(() => encodePartitionExport({ fn: "counts", partition: 0, entries: [[stateKey(1, "n", "a"), bytes(1)]] })).toThrow(RangeError);
    expect(() => encodePartitionExport({ fn: "counts", partition: 0, entries: [["0._applied", bytes(1)]] })).toThrow(RangeError);
  });
});

describe("partition exports with broadcast state (design note bq)", () => {
  const bc = (subkey: string, n: number): [string, Uint8Array] => [broadcastKey("rules", subkey), bytes(n)];

  it("partition 0's export holds the function's broadcast state once, and round-trips it", () => {
    const e = { fn: "score", partition: 0, entries: [[stateKey(0, "n", "a"), bytes(1)] as [string, Uint8Array]], broadcast: [bc("r1", 1), bc("r2", 2)] };
    expect(decodePartitionExport(encodePartitionExport(e))).toEqual(e);
  });

  it("refuses broadcast state in another partition's export, keys that are not broadcast keys, and duplicates", () => {
    const raw = (body: unknown) => encodeValue(body);
    const ok = { format: 1, fn: "score", partition: 0, entries: [] };
    const bad: unknown[] = [
      { ...ok, partition: 1, broadcast: [bc("r1", 1)] },
      { ...ok, broadcast: "x" },
      { ...ok, broadcast: [[stateKey(0, "n", "a"), bytes(1)]] },
      { ...ok, broadcast: [bc("r1", 1), bc("r1", 2)] },
      { ...ok, broadcast: [[broadcastKey("rules", "r1")]] },
    ];
    for (const body of bad) expect(() => decodePartitionExport(raw(body)), JSON.stringify(body)).toThrow(CorruptSavepointError);
  });
});
