/**
 * The pure decisions behind poison-record isolation and memory bounds
 * (docs/design/ay-poison-records-and-bounds.md): the record size limit where records enter, the
 * future-timestamp guard, keys with lone surrogates, what an actor does with held sink output beyond its bound, when an
 * alignment is declined, and dead-letter retention options.
 */
import { describe, expect, it } from "vitest";
import { BarrierAligner } from "../../../runtime/core/barriers.ts";
import { alignmentOverBound, heldSinkAction } from "../../../runtime/core/held-bounds.ts";
import { buildJobGraph, DEFAULT_DEAD_LETTER_MAX_AGE_MS, DEFAULT_DEAD_LETTER_MAX_BYTES } from "../../../runtime/core/job-graph.ts";
import { checkRecordSize, guardFuture, MAX_KEY_BYTES, Rejection, selectKey } from "../../../runtime/core/record-input.ts";
import { defineFunction, definePipeline, fromStream } from "../../../runtime/sdk/index.ts";

describe("checkRecordSize", () => {
  it("accepts a record up to the limit and refuses a larger one with its size", () => {
    expect(checkRecordSize(100, 100)).toBeUndefined();
    expect(checkRecordSize(101, 100)?.reason).toBe("too large: 101 bytes, more than the record limit of 100 bytes");
  });
});

describe("guardFuture", () => {
  const now = 1_000_000;
  it("lets every timestamp through without a bound", () => {
    expect(guardFuture(now + 10 * 365 * 86_400_000, now, undefined)).toBe(now + 10 * 365 * 86_400_000);
  });

  it("lets a timestamp up to maxFutureMs ahead of the processing clock through, and the past always", () => {
    expect(guardFuture(now + 60_000, now, 60_000)).toBe(now + 60_000);
    expect(guardFuture(0, now, 60_000)).toBe(0);
  });

  it("refuses a timestamp further ahead, with the reason a dead letter carries", () => {
    const r = guardFuture(now + 60_001, now, 60_000);
    expect(r).toBeInstanceOf(Rejection);
    expect((r as Rejection).reason).toMatch(/^timestamp: too far in the future \(1060001 is 60001 ms ahead of processing time 1000000; maxFutureMs 60000\)$/);
  });

  it("clamps it to the bound when asked to", () => {
    expect(guardFuture(now + 10 * 365 * 86_400_000, now, 60_000, "clamp")).toBe(now + 60_000);
  });
});

describe("selectKey and lone surrogates", () => {
  it("refuses a key with a lone surrogate, which encoding would merge with another key", () => {
    const lone = "user\uD800";
    expect(new TextDecoder().decode(new TextEncoder().encode(lone))).toBe(new TextDecoder().decode(new TextEncoder().encode("user\uDFFF")));
    const r = selectKey((k: string) => k, lone, 0);
    expect(r).toBeInstanceOf(Rejection);
    expect((r as Rejection).reason).toBe("key: key selector returned a string with a lone UTF-16 surrogate");
    expect((selectKey((k: string) => k, "user\uDFFF", 0, "count") as Rejection).reason).toBe("key: count key selector returned a string with a lone UTF-16 surrogate");
  });

  it("refuses a key longer than a KV key can carry, counting UTF-8 bytes", () => {
    expect(selectKey((k: string) => k, "k".repeat(MAX_KEY_BYTES), 0)).toBe("k".repeat(MAX_KEY_BYTES));
    expect((selectKey((k: string) => k, "k".repeat(MAX_KEY_BYTES + 1), 0) as Rejection).reason).toBe("key: key selector returned a key of 1025 bytes, more than 1024");
    expect((selectKey((k: string) => k, "\u20ac".repeat(342), 0) as Rejection).reason).toBe("key: key selector returned a key of 1026 bytes, more than 1024");
  });

  it("accepts proper surrogate pairs", () => {
    expect(selectKey((k: string) => k, "smile \uD83D\uDE00", 0)).toBe("smile \uD83D\uDE00");
  });
});

describe("heldSinkAction", () => {
  it("reads on while the sink output held in memory is within the bound", () => {
    expect(heldSinkAction(100, 100, false)).toBe("read");
    expect(heldSinkAction(100, 100, true)).toBe("read");
  });

  it("stops a source beyond the bound: the next trigger snapshots it and the commit frees it", () => {
    expect(heldSinkAction(101, 100, false)).toBe("wait");
  });

  it("spills beyond the bound for an actor fed by barriers, which could not read its next barrier if it stopped", () => {
    expect(heldSinkAction(101, 100, true)).toBe("spill");
  });
});

describe("alignment bound", () => {
  it("is exceeded only beyond the bound", () => {
    expect(alignmentOverBound(100, 100)).toBe(false);
    expect(alignmentOverBound(101, 100)).toBe(true);
  });

  it("a declined checkpoint unblocks every producer and its later barriers are stale", () => {
    const a = new BarrierAligner(["a/0", "b/0"]);
    expect(a.onBarrier("a/0", 3)).toMatchObject({ kind: "waiting", first: true });
    expect(a.isBlocked("a/0")).toBe(true);
    expect(a.decline()).toBe(3);
    expect(a.isBlocked("a/0")).toBe(false);
    expect(a.pending).toBeUndefined();
    expect(a.onBarrier("b/0", 3)).toEqual({ kind: "stale" });
    expect(a.onBarrier("a/0", 4)).toMatchObject({ kind: "waiting", first: true });
    expect(a.onBarrier("b/0", 4)).toMatchObject({ kind: "aligned" });
    expect(a.decline()).toBeUndefined();
  });
});

describe("pipeline options", () => {
  const fn = (extra: object) => defineFunction({ name: "f", input: fromStream("S"), process: () => undefined, ...extra });

  it("gives the dead-letter stream default limits, or the pipeline's own", () => {
    expect(buildJobGraph(definePipeline({ name: "j", functions: [fn({})] })).deadLetters).toEqual({ maxAgeMs: DEFAULT_DEAD_LETTER_MAX_AGE_MS, maxBytes: DEFAULT_DEAD_LETTER_MAX_BYTES });
    expect(buildJobGraph(definePipeline({ name: "j", functions: [fn({})], deadLetters: { maxBytes: 0 } })).deadLetters).toEqual({ maxAgeMs: DEFAULT_DEAD_LETTER_MAX_AGE_MS, maxBytes: 0 });
  });

  it("refuses invalid limits and guards", () => {
    expect(() => buildJobGraph(definePipeline({ name: "j", functions: [fn({})], deadLetters: { maxAgeMs: -1 } }))).toThrow(/deadLetters.maxAgeMs must be a non-negative whole number/);
    expect(() => buildJobGraph(definePipeline({ name: "j", functions: [fn({ maxFutureMs: Number.NaN })] }))).toThrow(/maxFutureMs must be a non-negative number/);
    expect(() => buildJobGraph(definePipeline({ name: "j", functions: [fn({ maxRecordBytes: -5 })] }))).toThrow(/maxRecordBytes must be a non-negative number/);
    expect(() => buildJobGraph(definePipeline({ name: "j", functions: [fn({ futureTimestamps: "drop" })] }))).toThrow(/futureTimestamps must be "dead-letter" or "clamp"/);
  });
});
