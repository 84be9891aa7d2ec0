/**
 * Compare-and-set writes across a leader election of the bucket's stream (design note bl): an
 * unacknowledged attempt is repeated, a refusal after it is recognised as our own stored write
 * when the entry holds our bytes at a later revision, and any other writer is still a conflict.
 */
import { describe, expect, it } from "vitest";
import { casFailureKind, casWrite, ownWriteRevision } from "../../../runtime/nats/kv-cas.ts";

const enc = (s: string) => new TextEncoder().encode(s);

/** One key of a bucket whose leader can lose acknowledgements: `lose` says what the next attempts do. */
class FlakyKey {
  revision = 0;
  value: Uint8Array | undefined;
  /** Per attempt: "ok", "lost-stored" (stored, acknowledgement lost), "lost" (not stored). */
  plan: Array<"ok" | "lost-stored" | "lost"> = [];
  attempts = 0;

  private write(data: Uint8Array, expected: number): number {
    const step = this.plan[this.attempts++] ?? "ok";
    if (step === "lost") throw Object.assign(new Error("timeout"), { name: "TimeoutError" });
    if (this.revision !== expected) throw new Error(`wrong last sequence: ${this.revision}`);
    this.revision += 1 + Math.floor(Math.random() * 3); // other keys of the bucket move the sequence on too
    this.value = data;
    if (step === "lost-stored") throw Object.assign(new Error("timeout"), { name: "TimeoutError" });
    return this.revision;
  }

  kv() {
    return {
      create: async (_k: string, data: Uint8Array) => this.write(data, 0),
      update: async (_k: string, data: Uint8Array, version: number) => this.write(data, version),
      get: async () => (this.value === undefined ? null : { revision: this.revision, value: this.value, operation: "PUT" as const }),
    } as never;
  }
}

describe("casWrite", () => {
  it("writes when the key is at the expected revision", async () => {
    const k = new FlakyKey();
    const r = await casWrite(k.kv(), "lease", "s-1", 0);
    expect(r).toBe(k.revision);
    expect(await casWrite(k.kv(), "lease", "s-1", r)).toBe(k.revision);
  });

  it("repeats an attempt that was not stored", async () => {
    const k = new FlakyKey();
    k.plan = ["lost", "lost", "ok"];
    expect(await casWrite(k.kv(), "lease", "s-1", 0)).toBe(k.revision);
    expect(k.attempts).toBe(3);
  });

  it("takes a refusal after an attempt that was stored as its own write", async () => {
    const k = new FlakyKey();
    const first = await casWrite(k.kv(), "lease", "s-1", 0);
    k.plan = ["ok", "lost-stored"];
    k.attempts = 1;
    const renewed = await casWrite(k.kv(), "lease", "s-1 renewed", first);
    expect(renewed).toBe(k.revision);
    expect(renewed).toBeGreaterThan(first);
  });

  it("is still refused when someone else wrote meanwhile", async () => {
    const k = new FlakyKey();
    const first = await casWrite(k.kv(), "lease", "s-1", 0);
    await casWrite(k.kv(), "lease", "s-2", first);
    await expect(casWrite(k.kv(), "lease", "s-1", first)).rejects.toThrow(/wrong last sequence/);
  });

  it("gives up when the bucket stays unavailable", async () => {
    const k = new FlakyKey();
    k.plan = Array(100).fill("lost");
    await expect(casWrite(k.kv(), "lease", "s-1", 0, { timeoutMs: 200 })).rejects.toThrow("timeout");
  });

  it("does not repeat other errors", async () => {
    const kv = { create: async () => { throw new Error("Permissions Violation"); }, update: async () => 0, get: async () => null } as never;
    await expect(casWrite(kv, "k", "v", 0)).rejects.toThrow("Permissions Violation");
  });
});

describe("ownWriteRevision", () => {
  it("is the entry's revision when it holds our bytes after the expected revision", () => {
    expect(ownWriteRevision(enc("a"), 3, { revision: 5, value: enc("a"), operation: "PUT" })).toBe(5);
  });
  it("is undefined for other bytes, an older revision, a deletion or no entry", () => {
    expect(ownWriteRevision(enc("a"), 3, { revision: 5, value: enc("b"), operation: "PUT" })).toBeUndefined();
    expect(ownWriteRevision(enc("a"), 5, { revision: 5, value: enc("a"), operation: "PUT" })).toBeUndefined();
    expect(ownWriteRevision(enc("a"), 3, { revision: 5, value: enc(""), operation: "DEL" })).toBeUndefined();
    expect(ownWriteRevision(enc("a"), 3, null)).toBeUndefined();
  });
});

describe("casFailureKind", () => {
  it("tells refusals, lost acknowledgements and other errors apart", () => {
    expect(casFailureKind(new Error("wrong last sequence: 7"))).toBe("conflict");
    expect(casFailureKind(Object.assign(new Error("timeout"), { name: "TimeoutError" }))).toBe("unacknowledged");
    expect(casFailureKind(new Error("503 no responders"))).toBe("unacknowledged");
    expect(casFailureKind(new Error("Permissions Violation"))).toBe("other");
  });
});
