/**
 * Every decoder of input eddy does not control — wire messages between actors, KV keys, state
 * requests and writes, control messages, deployment records, savepoint manifests — fed arbitrary
 * bytes and arbitrary structures: each either returns or throws one of the documented eddy error
 * classes (runtime/errors.ts), never a TypeError or RangeError from deep inside, and each run is
 * bounded (a fixed number of cases, within the test timeout).
 */
import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { Packr } from "msgpackr";
import { errorActionOf } from "../../../runtime/errors.ts";
import { decodeBatch, decodeWatermark, encodeBatch } from "../../../runtime/core/wire.ts";
import { parseKvKey, unb64url } from "../../../runtime/core/kv-keys.ts";
import { page, parseStateRequest, writeOps, type ScanRequest, type WriteRequest } from "../../../runtime/core/state-queries.ts";
import { decodeStateWrite, validateStateWrite } from "../../../runtime/core/state-writes.ts";
import { decodeControl, decodeControlOrThrow, validateControl, type ControlKind } from "../../../runtime/core/control-messages.ts";
import { decodeManifest } from "../../../runtime/core/savepoint.ts";
import type { StateDeclarations } from "../../../runtime/spec/state.ts";

const RUNS = { numRuns: 400 };
const KINDS: ControlKind[] = ["trigger", "ack", "failure", "checkpoint-request", "latest", "assignment", "end", "spec", "status", "resume", "deploy", "heartbeat", "checkpoint", "checkpoint-reply"];
const packr = new Packr({ useRecords: true, mapsAsObjects: true });
const encoder = new TextEncoder();

/** Runs `f`; passes if it returns or throws an eddy error (one that carries an action). */
function onlyEddyErrors(f: () => unknown): void {
  try {
    f();
  } catch (e) {
    expect(errorActionOf(e), `${(e as Error)?.name}: ${(e as Error)?.message}`).toBeDefined();
  }
}

/** Arbitrary values, including the awkward ones: NaN, ±Infinity, -0, huge numbers, __proto__ keys. */
const anyValue = fc.anything({
  withBigInt: false,
  withNullPrototype: true,
  withObjectString: true,
  values: [fc.constantFrom(Number.NaN, Infinity, -Infinity, -0, 1e308, Number.MAX_SAFE_INTEGER + 2, "NaN", "Infinity", "__proto__", "constructor")],
});
const anyJson = fc.oneof(fc.json(), anyValue.map((v) => { try { return JSON.stringify(v) ?? "null"; } catch { return "null"; } }));
const bytes = fc.uint8Array({ maxLength: 512 });

describe("decoders under arbitrary input", () => {
  it("record batches and watermarks: arbitrary bytes and arbitrary msgpack structures", () => {
    fc.assert(fc.property(bytes, (b) => onlyEddyErrors(() => decodeBatch(b))), RUNS);
    fc.assert(fc.property(bytes, (b) => onlyEddyErrors(() => decodeWatermark(b))), RUNS);
    const packed = anyValue.map((v) => { try { return packr.pack(v); } catch { return new Uint8Array(); } });
    fc.assert(fc.property(packed, (b) => onlyEddyErrors(() => decodeBatch(b))), RUNS);
    fc.assert(fc.property(packed, (b) => onlyEddyErrors(() => decodeWatermark(b))), RUNS);
    // Batch-shaped bodies with arbitrary fields.
    const shaped = fc.record({ r: anyValue, w: anyValue, m: anyValue, n: anyValue, i: anyValue }, { requiredKeys: [] }).map((o) => packr.pack(o));
    fc.assert(fc.property(shaped, (b) => onlyEddyErrors(() => decodeBatch(b))), RUNS);
  });

  it("a decoded batch's watermarks are numbers, never NaN", () => {
    fc.assert(
      fc.property(fc.double(), fc.array(fc.double(), { maxLength: 6 }), (w, marks) => {
        const data = encodeBatch({ records: [], marks: marks.length % 2 === 0 ? marks : marks.slice(1), watermark: w });
        try {
          const b = decodeBatch(data);
          expect(Number.isNaN(b.watermark) || b.marks.some((m) => Number.isNaN(m))).toBe(false);
        } catch (e) {
          expect(errorActionOf(e)).toBe("fix-input");
        }
      }),
      RUNS,
    );
  });

  it("KV keys: parseKvKey never throws; unb64url throws only InvalidArgumentError", () => {
    const keyish = fc.oneof(fc.string(), fc.array(fc.constantFrom("0", "1", "07", "_t", "_wm", "e", "p1", "count", "=", "YQ", "Zm9v", "-", ".", ""), { maxLength: 6 }).map((xs) => xs.join(".")));
    fc.assert(fc.property(keyish, (k) => void parseKvKey(k)), RUNS);
    fc.assert(fc.property(fc.string(), (t) => onlyEddyErrors(() => unb64url(t))), RUNS);
  });

  it("state requests: bytes, scans and writes with arbitrary fields", () => {
    fc.assert(fc.property(bytes, (b) => onlyEddyErrors(() => parseStateRequest(b))), RUNS);
    fc.assert(fc.property(anyJson, (j) => onlyEddyErrors(() => parseStateRequest(encoder.encode(j)))), RUNS);
    const keys = fc.array(fc.tuple(fc.string(), fc.string()), { maxLength: 20 });
    const scan = fc.record({ state: anyValue, prefix: anyValue, after: fc.oneof(fc.string(), fc.base64String(), anyValue), limit: anyValue }, { requiredKeys: [] });
    fc.assert(fc.property(keys, scan, (k, r) => onlyEddyErrors(() => page(k, r as ScanRequest))), RUNS);
    const write = fc.record({ state: anyValue, key: anyValue, subkey: anyValue, value: anyValue, ops: anyValue }, { requiredKeys: [] });
    fc.assert(fc.property(write, fc.constantFrom("put" as const, "delete" as const), (r, op) => onlyEddyErrors(() => writeOps(r as WriteRequest, op))), RUNS);
  });

  it("state writes: arbitrary bytes and operations against declarations", () => {
    const declarations: StateDeclarations = { count: { kind: "value" }, seen: { kind: "map" }, items: { kind: "list" } } as unknown as StateDeclarations;
    fc.assert(fc.property(bytes, (b) => onlyEddyErrors(() => validateStateWrite(decodeStateWrite(b), declarations))), RUNS);
    const op = fc.record(
      { op: fc.oneof(fc.constantFrom("put", "delete", "timer"), anyValue), state: fc.oneof(fc.constantFrom("count", "seen", "items", "constructor", "__proto__", "toString", "hasOwnProperty"), anyValue), key: anyValue, subkey: anyValue, value: anyValue, ts: anyValue, name: anyValue, domain: anyValue },
      { requiredKeys: [] },
    );
    const packedWrite = fc.array(fc.oneof(op, anyValue), { maxLength: 5 }).map((ops) => { try { return new Packr({ useRecords: false, mapsAsObjects: true }).pack({ ops }); } catch { return new Uint8Array(); } });
    fc.assert(fc.property(packedWrite, (b) => onlyEddyErrors(() => validateStateWrite(decodeStateWrite(b), declarations))), RUNS);
  });

  it("control messages and deployment records: decodeControl never throws, decodeControlOrThrow only its own error", () => {
    const kind = fc.constantFrom(...KINDS);
    fc.assert(fc.property(kind, bytes, (k, b) => void decodeControl(k, b)), RUNS);
    fc.assert(fc.property(kind, anyJson, (k, j) => void decodeControl(k, encoder.encode(j))), RUNS);
    fc.assert(fc.property(kind, anyValue, (k, v) => void validateControl(k, v)), RUNS);
    fc.assert(fc.property(kind, anyJson, (k, j) => onlyEddyErrors(() => decodeControlOrThrow(k, encoder.encode(j), "fuzz"))), RUNS);
  });

  it("savepoint manifests: arbitrary bytes and JSON", () => {
    fc.assert(fc.property(bytes, (b) => onlyEddyErrors(() => decodeManifest(b))), RUNS);
    fc.assert(fc.property(anyJson, (j) => onlyEddyErrors(() => decodeManifest(encoder.encode(j)))), RUNS);
  });
});
