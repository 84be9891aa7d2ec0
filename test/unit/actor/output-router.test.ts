/**
 * The output router without NATS: what an actor publishes, in which order, with which watermark
 * marks and headers. A recording transport stands in for JetStream (this is a unit test of the
 * routing logic; the integration tests run the same code against a real nats-server).
 */
import { describe, expect, it } from "vitest";
import { buildJobGraph } from "../../../runtime/core/job-graph.ts";
import { decodeBatch } from "../../../runtime/core/wire.ts";
import { OutputRouter } from "../../../runtime/actor/output-router.ts";
import { CHAIN_DEAD_LETTER, type ChainDeadLetter } from "../../../runtime/actor/chain.ts";
import { Publisher } from "../../../runtime/actor/publisher.ts";
import type { Transport } from "../../../runtime/actor/ports.ts";
import { defineFunction, definePipeline, defineSink, fromFunction, fromStream } from "../../../runtime/sdk/index.ts";

interface Sent {
  readonly subject: string;
  readonly data: Uint8Array;
  readonly headers: Readonly<Record<string, string>> | undefined;
  readonly msgId: string | undefined;
}

function recording(): { transport: Transport; sent: Sent[] } {
  const sent: Sent[] = [];
  const transport = {
    publish: async (subject: string, data: Uint8Array, headers?: Readonly<Record<string, string>>, msgId?: string) => void sent.push({ subject, data, headers, msgId }),
  } as unknown as Transport;
  return { transport, sent };
}

const graph = buildJobGraph(
  definePipeline({
    name: "j",
    functions: [
      defineFunction({ name: "src", input: fromStream("S"), process: () => undefined }),
      // Reads both the main and the side output of src: two edges into the same partitions.
      defineFunction({
        name: "both",
        input: [fromFunction("src"), fromFunction("src", "side")],
        partitions: 1,
        key: (r: { k: string }) => r.k,
        process: () => undefined,
      }),
      defineSink({ name: "out", input: fromFunction("src"), subject: "out.lines", format: "json-lines" }),
    ],
  }),
);

function router(batchMaxRecords = 1000, maxPayloadBytes = 1 << 20, fn = "src") {
  const { transport, sent } = recording();
  const r = new OutputRouter(graph, graph.node(fn), 0, new Publisher(transport), { batchMaxRecords, maxPayloadBytes });
  return { r, sent };
}

describe("OutputRouter", () => {
  it("sends records of both edges into one partition as one ordered batch, each with its input index", () => {
    const { r, sent } = router();
    r.watermark = 5;
    r.emit({ k: "a" }, 1);
    r.watermark = 7;
    r.side("side", { k: "b" }, 2);
    r.emit({ k: "c" }, 3);
    r.flushAll();
    const batches = sent.filter((s) => s.subject === "eddy.j.both.in.0");
    expect(batches).toHaveLength(1);
    const batch = decodeBatch(batches[0]!.data);
    expect(batch.records).toEqual(["a", 1, { k: "a" }, "b", 2, { k: "b" }, "c", 3, { k: "c" }]);
    expect(batch.inputs).toEqual([0, 1, 0]);
    // The watermark in force before each record, as marks: 5 before record 0, 7 before record 1.
    expect(batch.marks).toEqual([0, 5, 1, 7]);
    expect(batch.watermark).toBe(7);
    expect(batches[0]!.headers).toMatchObject({ "Eddy-Kind": "data", "Eddy-Producer": "src/0", "Eddy-Epoch": "1" });
  });

  it("publishes every batch of the epoch before the barrier, and what follows in the next epoch", () => {
    const { r, sent } = router();
    r.emit({ k: "a" }, 1);
    r.barrier(1, false);
    r.emit({ k: "b" }, 2);
    r.flushAll();
    const toBoth = sent.filter((s) => s.subject === "eddy.j.both.in.0");
    expect(toBoth.map((s) => s.headers?.["Eddy-Kind"])).toEqual(["data", "barrier", "data"]);
    expect(toBoth.map((s) => s.headers?.["Eddy-Epoch"])).toEqual(["1", "1", "2"]);
  });

  it("batches JSON-lines sink output and holds it for commit under deterministic message ids", () => {
    const { r, sent } = router(1000, 1 << 20, "out");
    r.emit({ k: "a" }, 1);
    r.emit({ k: "b" }, 2);
    expect(sent.filter((s) => s.subject === "out.lines")).toEqual([]);
    const pending = r.heldSink().inMemory;
    expect(pending).toHaveLength(1);
    expect(new TextDecoder().decode(pending[0]!.data)).toBe('{"k":"a"}\n{"k":"b"}');
    expect(pending[0]!.msgId).toBe("j/out/0/0/1/0");
    expect(r.held.commit(1).inMemory).toEqual(pending);
    expect(r.heldSink()).toEqual({ spilled: [], inMemory: [] });
  });

  it("closes a JSON-lines batch before it could exceed the payload limit, even for multi-byte text", () => {
    const { r } = router(1000, 3000, "out");
    for (let i = 0; i < 40; i++) r.emit({ k: "ü".repeat(50) }, i);
    for (const o of r.heldSink().inMemory) expect(o.data.length).toBeLessThanOrEqual(3000);
    expect(r.heldSink().inMemory.length).toBeGreaterThan(1);
  });

  it("splits a data batch larger than a message may be, keeping every record and mark", () => {
    const { r, sent } = router(1000, 2000);
    for (let i = 0; i < 50; i++) {
      r.watermark = i;
      r.emit({ k: "a", pad: "x".repeat(100) }, i);
    }
    r.flushAll();
    const batches = sent.filter((s) => s.subject === "eddy.j.both.in.0").map((s) => decodeBatch(s.data));
    expect(batches.length).toBeGreaterThan(1);
    for (const s of sent) expect(s.data.length).toBeLessThanOrEqual(2000);
    expect(batches.flatMap((b) => b.records).length).toBe(150);
    // Replaying marks and batch-end watermarks gives the watermark in force before every record.
    let wm = -Infinity;
    const seen: number[] = [];
    for (const b of batches) {
      let m = 0;
      for (let i = 0; i < b.records.length / 3; i++) {
        while (m < b.marks.length && b.marks[m] === i) {
          wm = b.marks[m + 1]!;
          m += 2;
        }
        seen.push(wm);
      }
      wm = b.watermark;
    }
    expect(seen).toEqual(Array.from({ length: 50 }, (_, i) => i));
  });

  it("dead-letters the one record the encoder cannot take and publishes the rest of its batch", () => {
    const { r, sent } = router();
    let deep: unknown = { k: "deep" };
    for (let i = 0; i < 100_000; i++) deep = { k: "deep", d: deep };
    r.emit({ k: "a" }, 1);
    r.emit(deep, 2);
    r.emit({ k: "c" }, 3);
    r.flushAll();
    const records = sent.filter((s) => s.subject === "eddy.j.both.in.0").flatMap((s) => decodeBatch(s.data).records);
    expect(records.filter((_, i) => i % 3 === 0)).toEqual(["a", "c"]);
    const dead = sent.filter((s) => s.subject === "eddy.j.dlq.src");
    expect(dead.map((d) => d.headers?.["Eddy-Reason"])).toEqual(expect.arrayContaining([expect.stringMatching(/^encode: record for eddy\.j\.both\.in\.0 cannot be encoded: /)]));
  });

  it("dead-letters a record whose encoding alone exceeds the max payload, and the consumer still learns the watermark", () => {
    const { r, sent } = router(1000, 20_000);
    r.watermark = 4;
    r.emit({ k: "big", floats: Array.from({ length: 5000 }, (_, i) => i + 0.5) }, 1);
    r.flushAll();
    const batches = sent.filter((s) => s.subject === "eddy.j.both.in.0").map((s) => decodeBatch(s.data));
    expect(batches.flatMap((b) => b.records)).toEqual([]);
    expect(batches.at(-1)!.watermark).toBe(4);
    const dead = sent.filter((s) => s.subject === "eddy.j.dlq.src");
    // src feeds two functions: the record is dead-lettered once for each edge it could not cross.
    expect(dead.map((d) => d.headers?.["Eddy-Reason"])).toEqual([
      expect.stringMatching(/^too large: record for eddy\.j\.both\.in\.0 encodes to \d+ bytes, more than the server's max payload/),
      expect.stringMatching(/^too large: record for eddy\.j\.out\.in\.0 encodes to \d+ bytes/),
    ]);
    // The JSON of the record is itself larger than a dead letter may be: cut, with size and digest.
    const d = dead[0]!;
    expect(d.data.length).toBeLessThanOrEqual(20_000);
    expect(Number(d.headers?.["Eddy-Original-Size"])).toBeGreaterThan(20_000);
    expect(d.headers?.["Eddy-Original-Sha256"]).toMatch(/^[0-9a-f]{64}$/);
  });

  it("leaves a dead letter that fits as it is, without size or digest headers", () => {
    const { r, sent } = router();
    r.deadLetter("why", new Uint8Array([1, 2, 3]));
    expect(sent[0]!.data).toEqual(new Uint8Array([1, 2, 3]));
    expect(sent[0]!.headers?.["Eddy-Original-Size"]).toBeUndefined();
  });

  it("publishes a chained function's dead letter under that function's name, from the function it read", async () => {
    const { r, sent } = router();
    const letter: ChainDeadLetter = { fn: "keep", from: "parse", reason: "process: keep.process failed", record: { n: 13 } };
    r.side(CHAIN_DEAD_LETTER, letter, 5);
    await new Promise((resolve) => setTimeout(resolve, 0));
    expect(sent.map((m) => [m.subject, m.headers?.["Eddy-Function"], m.headers?.["Eddy-Producer"], m.headers?.["Eddy-Reason"], new TextDecoder().decode(m.data)])).toEqual([
      ["eddy.j.dlq.keep", "keep", "parse/0", "process: keep.process failed", '{"n":13}'],
    ]);
    expect(r.deadLettered).toBe(1);
  });

  it("dead-letters a sink line too large for a message instead of holding it", () => {
    const { r, sent } = router(1000, 30_000, "out");
    r.emit({ k: "a" }, 1);
    r.emit({ k: "b", pad: "x".repeat(40_000) }, 2);
    r.emit({ k: "c" }, 3);
    const held = r.heldSink().inMemory;
    expect(held.map((o) => new TextDecoder().decode(o.data))).toEqual(['{"k":"a"}', '{"k":"c"}']);
    expect(r.heldSinkBytes).toBe(held.reduce((n, o) => n + o.data.length, 0));
    expect(sent.filter((s) => s.subject === "eddy.j.dlq.out").map((d) => d.headers?.["Eddy-Reason"])).toEqual([expect.stringMatching(/^too large: sink message of \d+ bytes/)]);
  });

  it("holds sink output across a barrier under the epoch it was emitted in, and frees only committed epochs", () => {
    const { r } = router(1000, 1 << 20, "out");
    r.emit({ k: "a" }, 1);
    r.heldSink();
    const first = r.heldSinkBytes;
    expect(first).toBeGreaterThan(0);
    r.barrier(1, false);
    r.emit({ k: "b" }, 2);
    expect(r.heldSink().inMemory.map((o) => o.epoch)).toEqual([1, 2]);
    const committed = r.held.commit(1);
    expect(committed.inMemory.map((o) => new TextDecoder().decode(o.data))).toEqual(['{"k":"a"}']);
    expect(r.heldSink().inMemory.map((o) => o.msgId)).toEqual(["j/out/0/0/2/0"]);
    expect(r.heldSinkBytes).toBe(r.heldSink().inMemory[0]!.data.length);
  });

  it("writes JSON-lines messages whose lines are the rows in order, each message its own bytes", () => {
    const { r } = router(3, 3_000, "out");
    const rows = [{ k: "a" }, { k: "\u20ac".repeat(300) }, { k: "ü" }, { k: "\u20ac".repeat(400) }, { k: "b\nc" }, { k: "d" }, { k: "e" }];
    rows.forEach((row, i) => r.emit(row, i));
    const first = new TextDecoder().decode(r.heldSink().inMemory[0]!.data);
    // Messages are sent whole and hold what they held when sent: later rows do not reuse their bytes.
    for (let i = 0; i < 20; i++) r.emit({ k: "x".repeat(500) }, 100 + i);
    r.flushAll();
    const held = r.heldSink().inMemory.map((o) => new TextDecoder().decode(o.data));
    expect(held[0]).toBe(first);
    for (const o of r.heldSink().inMemory) expect(o.data.length).toBeLessThanOrEqual(3_000);
    const lines = held.flatMap((m) => m.split("\n"));
    expect(lines.map((l) => JSON.parse(l))).toEqual([...rows, ...Array.from({ length: 20 }, () => ({ k: "x".repeat(500) }))]);
  });

  it("splits a JSON-lines batch that multi-byte text made larger than a message, rather than dead-lettering its rows", () => {
    const { r, sent } = router(1000, 3_000, "out");
    // 300 characters of 3 bytes each: below a third of the limit in characters, 900 bytes each.
    for (let i = 0; i < 6; i++) r.emit({ k: "\u20ac".repeat(300) }, i);
    const held = r.heldSink().inMemory;
    expect(held.every((o) => o.data.length <= 3_000)).toBe(true);
    expect(held.flatMap((o) => new TextDecoder().decode(o.data).split("\n"))).toHaveLength(6);
    expect(sent.filter((s) => s.subject === "eddy.j.dlq.out")).toEqual([]);
  });
});

/** A transport whose acknowledgements come when the test releases them. */
function heldAcks(): { transport: Transport; sent: Sent[]; ackAll: () => Promise<void> } {
  const sent: Sent[] = [];
  let waiting: Array<() => void> = [];
  const transport = {
    publish: (subject: string, data: Uint8Array, headers?: Readonly<Record<string, string>>, msgId?: string) => {
      sent.push({ subject, data, headers, msgId });
      return new Promise<void>((r) => waiting.push(r));
    },
  } as unknown as Transport;
  const ackAll = async () => {
    const w = waiting;
    waiting = [];
    for (const r of w) r();
    for (let i = 0; i < 5; i++) await Promise.resolve();
  };
  return { transport, sent, ackAll };
}

describe("OutputRouter early flushes (design note cj)", () => {
  const toBoth = (sent: Sent[]) => sent.filter((s) => s.subject === "eddy.j.both.in.0").map((s) => decodeBatch(s.data).records.filter((_, i) => i % 3 === 2));

  it("sends a partial batch when the input is idle, gathers records behind its unacknowledged publish, and sends them once it is acknowledged", async () => {
    const { transport, sent, ackAll } = heldAcks();
    const publisher = new Publisher(transport);
    const r = new OutputRouter(graph, graph.node("src"), 0, publisher, { batchMaxRecords: 1000, maxPayloadBytes: 1 << 20 });
    publisher.onSettled = () => r.flushDue(5);
    r.emit({ k: "a" }, 1);
    r.flushDue(5);
    expect(toBoth(sent)).toEqual([]); // input not idle: the batch waits for company
    r.inputIdle = true;
    r.flushDue(5);
    expect(toBoth(sent)).toEqual([[{ k: "a" }]]);
    r.emit({ k: "b" }, 2);
    r.emit({ k: "c" }, 3);
    r.flushDue(5);
    expect(toBoth(sent)).toHaveLength(1); // behind the unacknowledged batch
    await ackAll();
    expect(toBoth(sent)).toEqual([[{ k: "a" }], [{ k: "b" }, { k: "c" }]]);
  });

  it("under a backlog sends a partial batch only at the buffer timeout", () => {
    const { transport, sent } = heldAcks();
    const r = new OutputRouter(graph, graph.node("src"), 0, new Publisher(transport), { batchMaxRecords: 1000, maxPayloadBytes: 1 << 20 });
    r.now = 100;
    r.emit({ k: "a" }, 1);
    r.now = 104;
    r.flushDue(5);
    expect(toBoth(sent)).toEqual([]);
    r.now = 105;
    r.flushDue(5);
    expect(toBoth(sent)).toEqual([[{ k: "a" }]]);
  });
});
