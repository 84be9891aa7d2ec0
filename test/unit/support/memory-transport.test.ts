/**
 * The in-memory transport behaves like the JetStream one in what the actor relies on: subject
 * filters, ordered readers from a sequence that deliver later appends, pending counts, message-id
 * deduplication, purges, KV buckets by partition, and injected failures. The actor's unit tests
 * are only as good as this stand-in.
 */
import { describe, expect, it } from "vitest";
import { MemoryTransport, subjectMatches } from "../../support/memory-transport.ts";

const bytes = (s: string) => new TextEncoder().encode(s);
const text = (b: Uint8Array) => new TextDecoder().decode(b);

describe("subjectMatches", () => {
  it("matches NATS wildcards: * one token, > one or more at the end", () => {
    expect(subjectMatches("a.*.c", "a.b.c")).toBe(true);
    expect(subjectMatches("a.*.c", "a.b.d")).toBe(false);
    expect(subjectMatches("a.>", "a.b.c")).toBe(true);
    expect(subjectMatches("a.>", "a")).toBe(false);
    expect(subjectMatches(">", "x")).toBe(true);
    expect(subjectMatches("a.b", "a.b.c")).toBe(false);
    expect(subjectMatches("a.b.c", "a.b")).toBe(false);
  });
});

describe("MemoryTransport", () => {
  it("reads a subject in order from a start sequence and goes on with what is appended later", async () => {
    const t = new MemoryTransport();
    t.addStream("S", ["s.>"]);
    await t.append("s.a", "1");
    await t.append("s.b", "2");
    await t.append("s.a", "3");
    const reader = await t.openInput("S", "s.a", 2);
    const it = reader[Symbol.asyncIterator]();
    const first = (await it.next()).value!;
    expect([first.seq, text(first.data), first.pending]).toEqual([3, "3", 0]);
    const later = it.next();
    await t.append("s.b", "4");
    await t.append("s.a", "5");
    const m = (await later).value!;
    expect([m.seq, text(m.data), m.subject]).toEqual([5, "5", "s.a"]);
    await reader.stop();
    expect((await it.next()).done).toBe(true);
  });

  it("counts what is still to read after each message", async () => {
    const t = new MemoryTransport();
    t.addStream("S", ["s"]);
    for (const x of ["a", "b", "c"]) await t.append("s", x);
    const it = (await t.openInput("S", "s", 1))[Symbol.asyncIterator]();
    expect((await it.next()).value!.pending).toBe(2);
    expect(await t.countPending("S", "s", 2)).toBe(2);
    expect(await t.lastSequence("S")).toBe(3);
  });

  it("keeps headers, refuses a subject no stream captures, and drops a repeated message id", async () => {
    const t = new MemoryTransport();
    t.addStream("S", ["s.*"]);
    await t.publish("s.x", bytes("a"), { "Eddy-Kind": "data" }, "id-1");
    await t.publish("s.x", bytes("a again"), undefined, "id-1");
    await expect(t.publish("other", bytes("x"))).rejects.toThrow("no stream captures subject other");
    const ms = t.messages("S");
    expect(ms.map((m) => text(m.data))).toEqual(["a"]);
    const it = (await t.openInput("S", "s.x", 1))[Symbol.asyncIterator]();
    const m = (await it.next()).value!;
    expect(m.header("Eddy-Kind")).toBe("data");
    expect(m.header("Eddy-Epoch")).toBeUndefined();
  });

  it("purges a subject below a sequence and leaves other subjects alone", async () => {
    const t = new MemoryTransport();
    t.addStream("S", ["s.*"]);
    for (const s of ["s.a", "s.b", "s.a", "s.a"]) await t.append(s, s);
    await t.purgeBelow("S", "s.a", 4);
    expect(t.messages("S").map((m) => [m.seq, m.subject])).toEqual([
      [2, "s.b"],
      [4, "s.a"],
    ]);
  });

  it("loads a partition's live KV entries by key prefix", async () => {
    const t = new MemoryTransport();
    await t.writeState("b", [{ key: "0.x", value: bytes("1") }, { key: "1.x", value: bytes("2") }, { key: "0.y", value: bytes("3") }], []);
    await t.writeState("b", [], ["0.y"]);
    expect((await t.loadPartition("b", 0)).map((e) => [e.key, text(e.value)])).toEqual([["0.x", "1"]]);
    expect(t.kvWrites.map((w) => `${w.op} ${w.key}`)).toEqual(["put 0.x", "put 1.x", "put 0.y", "delete 0.y"]);
  });

  it("fails the operations a test says should fail, and only those", async () => {
    const t = new MemoryTransport();
    t.failWith((op, target) => (op === "getSnapshot" && target === "bad" ? new Error("boom") : undefined));
    await t.putSnapshot("bad", bytes("x"));
    await expect(t.getSnapshot("bad")).rejects.toThrow("boom");
    t.failWith(undefined);
    expect(text((await t.getSnapshot("bad"))!)).toBe("x");
  });

  it("delivers core publishes to matching subscribers", () => {
    const t = new MemoryTransport();
    const got: string[] = [];
    const unsubscribe = t.subscribe("ctl.*", (s, d) => got.push(`${s} ${text(d)}`));
    t.publishCore("ctl.ack", bytes("1"));
    t.publishCore("other", bytes("2"));
    unsubscribe();
    t.publishCore("ctl.ack", bytes("3"));
    expect(got).toEqual(["ctl.ack 1"]);
  });
});
