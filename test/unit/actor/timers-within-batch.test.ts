/**
 * A timer set by a record and due at a watermark of the same batch, in the partition actor over
 * the in-memory transport. After a restore that found stored state, a key's map states are read
 * only as far as its records' `entries` selectors name (design note bj); a timer such a record
 * sets can come due at a watermark mark later in the same batch, or at the batch's own
 * watermark, and its `onTimer` selector may need a whole map the record never named. The actor
 * reads it before the timer runs, and the records after the mark still see the watermark of the
 * mark. (Before, the timer failed with "the whole map ... is not in memory" and was
 * dead-lettered: a temporal join lost the left rows it was holding.)
 */
import { afterEach, describe, expect, it } from "vitest";
import { buildJobGraph, type JobGraph } from "../../../runtime/core/job-graph.ts";
import { PartitionActor } from "../../../runtime/actor/partition-actor.ts";
import { appliedKey, mapEntryKey } from "../../../runtime/core/kv-keys.ts";
import { HEADER, inputSubject, stateBucket } from "../../../runtime/core/naming.ts";
import { encodeBatch, encodeValue } from "../../../runtime/core/wire.ts";
import { boundedOutOfOrderness, defineFunction, definePipeline, fromFunction, fromStream, mapState } from "../../../runtime/sdk/index.ts";
import { MemoryTransport } from "../../support/memory-transport.ts";
import { recordsTo } from "../../support/actor-driver.ts";
import { waitFor } from "../../support/wait.ts";

interface Row {
  readonly user: string;
  readonly at: number;
}

/** A record of `user` at `at` waits for the watermark; its timer reports every version the user has. */
const state = {
  waiting: mapState<Row>({ entries: { process: (_r, { timestamp }) => [String(timestamp)], onTimer: (t) => [String(t.timestamp)] } }),
  versions: mapState<string>({ entries: { process: () => [], onTimer: () => "all" } }),
};

function job(): JobGraph {
  return buildJobGraph(
    definePipeline({
      name: "j",
      functions: [
        defineFunction<Row, Row>({ name: "rows", input: fromStream("rows"), timestamp: (r) => r.at, watermark: boundedOutOfOrderness(0), process: (ctx, r) => ctx.emit(r) }),
        defineFunction<Row, unknown, typeof state>({
          name: "join",
          input: fromFunction("rows"),
          partitions: 1,
          key: (r) => r.user,
          state,
          process(ctx, r) {
            ctx.state.waiting.set(String(ctx.timestamp), r);
            ctx.timers.registerEventTimeTimer(ctx.timestamp, "waiting");
            ctx.emit({ user: r.user, at: r.at, watermark: ctx.watermark });
          },
          onTimer(ctx, t) {
            const row = ctx.state.waiting.get(String(t.timestamp));
            ctx.state.waiting.delete(String(t.timestamp));
            ctx.emit({ user: ctx.key, fired: t.timestamp, row: row?.at ?? null, versions: ctx.state.versions.entries().map(([k]) => k) });
          },
        }),
        defineFunction<unknown, unknown>({ name: "out", input: fromFunction("join"), partitions: 1, process: () => undefined }),
      ],
    }),
  );
}

const actors: PartitionActor[] = [];
const failures: unknown[] = [];
afterEach(async () => {
  for (const a of actors.splice(0)) await a.stop();
  expect(failures.splice(0)).toEqual([]);
});

/** `join` restored from checkpoint 3, whose KV holds two versions of user "a": its maps are read in part. */
async function restored(): Promise<{ t: MemoryTransport; join: PartitionActor }> {
  const graph = job();
  const t = new MemoryTransport({ now: () => 1_000_000 });
  t.addStream("rows", ["rows"]);
  t.addJobTopology(graph);
  await t.writeState(stateBucket("j", "join"), [
    { key: mapEntryKey(0, "versions", "a", "v1"), value: encodeValue("gold") },
    { key: mapEntryKey(0, "versions", "a", "v2"), value: encodeValue("silver") },
    { key: appliedKey(0), value: encodeValue(3) },
  ], []);
  const join = new PartitionActor(t, graph, graph.node("join"), 0, { tickMs: 1, lingerMs: 0, now: () => 1_000_000 });
  actors.push(join);
  join.failed.catch((e) => failures.push(e));
  await join.start({ generation: 2, checkpoint: 3, worker: "w" });
  return { t, join };
}

/** What `rows` would send `join`: one batch of epoch 4. */
const batch = (t: MemoryTransport, records: readonly Row[], marks: readonly number[], watermark: number) =>
  t.append(inputSubject("j", "join", 0), encodeBatch({ records: records.flatMap((r) => [r.user, r.at, r]), marks: [...marks], watermark, idle: false }), {
    [HEADER.producer]: "rows/0",
    [HEADER.kind]: "data",
    [HEADER.generation]: "2",
    [HEADER.epoch]: "4",
    [HEADER.sequence]: "1",
  });

const opts = { timeoutMs: 10_000, intervalMs: 2 };

describe("a timer set and due within one batch, for a key whose maps are read in part", () => {
  it("fires at a watermark mark with the whole map its onTimer names, and the records after the mark see that watermark", async () => {
    const { t, join } = await restored();
    // Record 0 sets a timer at 100; the producer's watermark is 120 before record 1.
    await batch(t, [{ user: "a", at: 100 }, { user: "a", at: 150 }], [1, 120], 120);
    await waitFor("three results or a dead letter", () => recordsTo(t, "j", "out").length >= 3 || join.stats.deadLettered > 0, opts);
    expect(recordsTo(t, "j", "out")).toEqual([
      { user: "a", at: 100, watermark: -Infinity },
      { user: "a", fired: 100, row: 100, versions: ["v1", "v2"] },
      { user: "a", at: 150, watermark: 120 },
    ]);
    expect(join.stats.deadLettered).toBe(0);
  });

  it("fires at the batch's own watermark with the whole map its onTimer names", async () => {
    const { t, join } = await restored();
    await batch(t, [{ user: "a", at: 100 }], [], 200);
    await waitFor("the timer fired or a dead letter", () => recordsTo(t, "j", "out").length >= 2 || join.stats.deadLettered > 0, opts);
    expect(recordsTo(t, "j", "out")).toEqual([
      { user: "a", at: 100, watermark: -Infinity },
      { user: "a", fired: 100, row: 100, versions: ["v1", "v2"] },
    ]);
    expect(join.watermark).toBe(200);
    expect(join.stats.deadLettered).toBe(0);
  });
});
