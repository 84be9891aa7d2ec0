/**
 * Changelog sources and sinks in the partition actor, over the in-memory transport (design note
 * bv): an oplog source hands each message's Changes to `process` and dead-letters what its mapper
 * refuses; a `changelog: true` function's sink messages carry `Eddy-Row-Kind`; its upsert sink
 * writes the bucket's `$KV.` subjects only when the checkpoint commits, one write per key, a
 * delete as a `KV-Operation: DEL` marker — and the held writes are part of the snapshot. The
 * integration test (test/integration/upsert-sink.test.ts) runs the same on nats-server with a
 * worker killed between commit and apply.
 */
import { afterEach, describe, expect, it } from "vitest";
import { unpack } from "msgpackr";
import { buildJobGraph, InvalidPipelineError, type JobGraph } from "../../../runtime/core/job-graph.ts";
import { PartitionActor } from "../../../runtime/actor/partition-actor.ts";
import { OutputRouter } from "../../../runtime/actor/output-router.ts";
import { Publisher } from "../../../runtime/actor/publisher.ts";
import type { Transport } from "../../../runtime/actor/ports.ts";
import { jobAccessOfModules } from "../../../runtime/deploy/auth.ts";
import { resolve } from "node:path";
import { deltaObject, type SnapshotAck } from "../../../runtime/core/protocol.ts";
import { decodeValue } from "../../../runtime/core/wire.ts";
import { defineFunction, definePipeline, fromFunction, fromStream, oplog, type Change, type OplogRow } from "../../../runtime/sdk/index.ts";
import { MemoryTransport } from "../../support/memory-transport.ts";
import { collectAcks, runCheckpoint } from "../../support/actor-driver.ts";
import { waitFor } from "../../support/wait.ts";

const PATIENTLY = { timeoutMs: 5000, intervalMs: 5 } as const;

function job(): JobGraph {
  return buildJobGraph(
    definePipeline({
      name: "j",
      functions: [
        defineFunction<Change<OplogRow>, Change<OplogRow>>({
          name: "src",
          input: fromStream("oplog", { changelog: oplog({ metadata: false }) }),
          key: (c) => String(c.row.id),
          changelog: true,
          process: (ctx, c) => ctx.emit(c),
        }),
        defineFunction<Change<OplogRow>, Change<OplogRow>>({
          name: "table",
          input: fromFunction("src"),
          key: (c) => String(c.row.id),
          partitions: 1,
          changelog: true,
          sink: { subject: "changes" },
          upsert: { bucket: "orders", key: (row) => `order ${String(row.id)}` },
          process: (ctx, c) => ctx.emit(c),
        }),
      ],
    }),
  );
}

const actors: PartitionActor[] = [];
afterEach(async () => {
  for (const a of actors.splice(0)) await a.stop();
});

function setup(graph: JobGraph): { t: MemoryTransport; acks: SnapshotAck[]; start: (fn: string, config?: { maxHeldSinkBytes?: number }) => Promise<PartitionActor> } {
  const t = new MemoryTransport({ now: () => 1_000_000 });
  t.addStream("oplog", ["oplog"]);
  t.addStream("CHANGES", ["changes"]);
  t.addStream("KV_orders", ["$KV.orders.>"]);
  t.addJobTopology(graph);
  const acks = collectAcks(t, graph.job);
  const start = async (fn: string, config: { maxHeldSinkBytes?: number } = {}) => {
    const a = new PartitionActor(t, graph, graph.node(fn), 0, { tickMs: 1, lingerMs: 0, now: () => 1_000_000, ...config });
    actors.push(a);
    await a.start({ generation: 1, checkpoint: 0, worker: "w" });
    return a;
  };
  return { t, acks, start };
}

const text = (d: Uint8Array) => new TextDecoder().decode(d);

describe("a changelog source, a changelog sink and an upsert sink in the actor", () => {
  it("maps messages to Changes, says their kinds on the sink, and upserts each key once per checkpoint after its commit", async () => {
    const graph = job();
    const { t, acks, start } = setup(graph);
    const src = await start("src");
    const table = await start("table");
    const op = (o: object) => t.append("oplog", JSON.stringify(o));
    await op({ op_type: "I", after: { id: 1, s: "new" } });
    await op({ op_type: "I", after: { id: 2, s: "new" } });
    await op({ op_type: "U", before: { id: 1, s: "new" }, after: { id: 1, s: "paid" } });
    await op({ op_type: "X" });
    await waitFor("four Changes at the table", () => table.stats.recordsIn === 4, PATIENTLY);
    expect(src.stats).toMatchObject({ recordsIn: 4, deadLettered: 1 });
    const dead = t.messages("EDDY_j_DLQ");
    expect(dead.map((m) => m.headers["Eddy-Reason"])).toEqual(['changelog: "op_type" of an oplog record must be "I", "U" or "D", not "X"']);
    expect(text(dead[0]!.data)).toBe('{"op_type":"X"}');
    // Nothing is written before the checkpoint commits.
    expect(t.messages("KV_orders")).toEqual([]);
    expect(t.messages("CHANGES")).toEqual([]);

    await runCheckpoint(src, acks, 1, { commit: false });
    await waitFor("the table's ack of 1", () => acks.some((a) => a.id === 1 && a.actor === "table/0"), PATIENTLY);
    for (const a of [src, table]) a.onCommitted(1, 1);
    await table.applied(1);
    expect(t.messages("CHANGES").map((m) => [m.headers["Eddy-Row-Kind"], text(m.data)])).toEqual([
      ["+I", '{"rowKind":"+I","row":{"id":1,"s":"new"}}'],
      ["+I", '{"rowKind":"+I","row":{"id":2,"s":"new"}}'],
      ["-U", '{"rowKind":"-U","row":{"id":1,"s":"new"}}'],
      ["+U", '{"rowKind":"+U","row":{"id":1,"s":"paid"}}'],
    ]);
    // Key 1 was inserted, retracted and put again in the same checkpoint: one put of its last row.
    expect(t.messages("KV_orders").map((m) => [m.subject, text(m.data), m.headers["KV-Operation"]])).toEqual([
      ["$KV.orders.order=201", '{"id":1,"s":"paid"}', undefined],
      ["$KV.orders.order=202", '{"id":2,"s":"new"}', undefined],
    ]);

    await op({ op_type: "D", before: { id: 2, s: "new" } });
    await waitFor("the delete at the table", () => table.stats.recordsIn === 5, PATIENTLY);
    await runCheckpoint(src, acks, 2, { commit: false });
    await waitFor("the table's ack of 2", () => acks.some((a) => a.id === 2 && a.actor === "table/0"), PATIENTLY);
    // The held delete is in the table's snapshot, with its header, for a restore to apply.
    const delta = decodeValue(t.snapshots.get(deltaObject("j", 2, "table", 0))!) as { sink: unknown[][] };
    expect(delta.sink.map((s) => [s[0], s[4]])).toEqual([
      ["changes", { "Eddy-Row-Kind": "-D" }],
      ["$KV.orders.order=202", { "KV-Operation": "DEL" }],
    ]);
    for (const a of [src, table]) a.onCommitted(2, 1);
    await table.applied(2);
    const last = t.messages("KV_orders").at(-1)!;
    expect([last.subject, last.data.length, last.headers["KV-Operation"]]).toEqual(["$KV.orders.order=202", 0, "DEL"]);
  });
});

describe("upserts held past the memory bound", () => {
  it("are spilled with their headers and applied from the spill stream when their checkpoint commits, each key once per round", async () => {
    const graph = job();
    const { t, acks, start } = setup(graph);
    const src = await start("src");
    const table = await start("table", { maxHeldSinkBytes: 1 });
    const op = (o: object) => t.append("oplog", JSON.stringify(o));
    await op({ op_type: "I", after: { id: 1, s: "new" } });
    await op({ op_type: "I", after: { id: 2, s: "new" } });
    await waitFor("two inserts at the table", () => table.stats.recordsIn === 2, PATIENTLY);
    await runCheckpoint(src, acks, 1, { commit: false });
    await waitFor("the table's ack of 1", () => acks.some((a) => a.id === 1 && a.actor === "table/0"), PATIENTLY);
    await op({ op_type: "D", before: { id: 2, s: "new" } });
    await waitFor("the delete at the table", () => table.stats.recordsIn === 3, PATIENTLY);
    await runCheckpoint(src, acks, 2, { commit: false });
    await waitFor("the table's ack of 2", () => acks.some((a) => a.id === 2 && a.actor === "table/0"), PATIENTLY);
    await op({ op_type: "I", after: { id: 3, s: "new" } });
    await waitFor("both checkpoints' output spilled", () => table.stats.recordsIn === 4 && table.stats.spilledBytes > 0 && t.messages("EDDY_j_SPILL").length >= 2, PATIENTLY);
    expect(t.messages("KV_orders")).toEqual([]);
    for (const a of [src, table]) a.onCommitted(2, 1);
    await table.applied(2);
    // One round applies both checkpoints: of key 2 only its last write, the delete, read back from the spill stream.
    expect(t.messages("KV_orders").map((m) => [m.subject, text(m.data), m.headers["KV-Operation"]])).toEqual([
      ["$KV.orders.order=201", '{"id":1,"s":"new"}', undefined],
      ["$KV.orders.order=202", "", "DEL"],
    ]);
    expect(t.messages("CHANGES").map((m) => m.headers["Eddy-Row-Kind"])).toEqual(["+I", "+I", "-D"]);
  });
});

describe("the sink messages of a changelog function", () => {
  /** The router of a one-function job whose output goes to a sink, publishing into a recording transport. */
  function sinkRouter(sink: { subject: string; format?: "json" | "msgpack" | "json-lines"; delivery?: "exactly-once" | "at-least-once" }, changelog = true) {
    const sent: Array<{ subject: string; data: Uint8Array; headers: Readonly<Record<string, string>> | undefined }> = [];
    const transport = { publish: async (subject: string, data: Uint8Array, headers?: Readonly<Record<string, string>>) => void sent.push({ subject, data, headers }) } as unknown as Transport;
    const graph = buildJobGraph(definePipeline({ name: "j", functions: [defineFunction({ name: "f", input: fromStream("S"), changelog, sink, process: () => undefined })] }));
    return { r: new OutputRouter(graph, graph.node("f"), 0, new Publisher(transport), { batchMaxRecords: 1000, maxPayloadBytes: 1 << 20 }), sent };
  }

  it("carry the row kind in a header and the record as a Change, a plain record as +I (json, at least once)", () => {
    const { r, sent } = sinkRouter({ subject: "out", delivery: "at-least-once" });
    r.emit({ rowKind: "-D", row: { id: 1 } }, 0);
    r.emit({ id: 2 }, 0);
    expect(sent.map((m) => [m.headers?.["Eddy-Row-Kind"], text(m.data)])).toEqual([
      ["-D", '{"rowKind":"-D","row":{"id":1}}'],
      ["+I", '{"rowKind":"+I","row":{"id":2}}'],
    ]);
  });

  it("carry it with msgpack too", () => {
    const { r, sent } = sinkRouter({ subject: "out", format: "msgpack", delivery: "at-least-once" });
    r.emit({ rowKind: "+U", row: { id: 1 } }, 0);
    expect(sent.map((m) => [m.headers?.["Eddy-Row-Kind"], unpack(m.data)])).toEqual([["+U", { rowKind: "+U", row: { id: 1 } }]]);
  });

  it("say it in each line's rowKind field with json-lines, which has no header per record", () => {
    const { r, sent } = sinkRouter({ subject: "out", format: "json-lines", delivery: "at-least-once" });
    r.emit({ rowKind: "-U", row: { id: 1 } }, 0);
    r.emit({ rowKind: "+U", row: { id: 1 } }, 0);
    r.flushSinkBatches();
    expect(sent.map((m) => [m.headers, text(m.data)])).toEqual([[undefined, '{"rowKind":"-U","row":{"id":1}}\n{"rowKind":"+U","row":{"id":1}}']]);
  });

  it("of a function that is not a changelog have no row kind, and the record as it is", () => {
    const { r, sent } = sinkRouter({ subject: "out", delivery: "at-least-once" }, false);
    r.emit({ rowKind: "-D", row: { id: 1 } }, 0);
    expect(sent.map((m) => [m.headers, text(m.data)])).toEqual([[undefined, '{"rowKind":"-D","row":{"id":1}}']]);
  });
});

describe("pipeline checks of changelog sources and upsert sinks", () => {
  const build = (fn: object) => () => buildJobGraph(definePipeline({ name: "j", functions: [defineFunction({ name: "f", input: fromStream("S"), process: () => undefined, ...fn })] }));

  it("refuse an upsert bucket NATS would not accept or that is eddy's, an upsert without a key function, and a changelog mapper that is not a function", () => {
    expect(build({ upsert: { bucket: "a.b", key: () => "k" } })).toThrow(new InvalidPipelineError('function "f": upsert bucket "a.b" must match [A-Za-z0-9_-]+'));
    expect(build({ upsert: { bucket: "ok" } })).toThrow(/upsert key must be a function of the row/);
    // The state bucket of function "f" of job "j", say.
    expect(build({ upsert: { bucket: "eddy_j_f", key: () => "k" } })).toThrow(/upsert bucket "eddy_j_f" is in eddy's own namespace/);
    expect(build({ upsert: "ok" })).toThrow(/upsert must be \{ bucket, key \}/);
    expect(() => buildJobGraph(definePipeline({ name: "j", functions: [defineFunction({ name: "f", input: fromStream("S", { changelog: "oplog" as never }), process: () => undefined })] }))).toThrow(/changelog must be a function/);
    expect(build({ upsert: { bucket: "ORDER_STATUS-1", key: () => "k" } })).not.toThrow();
  });
});

describe("the NATS user of an upsert sink's workers", () => {
  it("may publish into the upsert bucket's stream, besides its sinks", async () => {
    const [access] = await jobAccessOfModules([resolve(import.meta.dirname, "../../fixtures/upsert-orders.ts")]);
    expect(access!.sinks).toEqual(["upsert.changes", "$KV.UPSERT_STATUS.>"]);
  });
});
