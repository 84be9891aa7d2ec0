/**
 * Message numbers on internal inputs (core/message-sequence.ts, design note cn), in the partition
 * actor over the in-memory transport: what an actor publishes to each partition is numbered from
 * 1, data, watermarks and barriers alike; a consumer handles each producer's messages in order,
 * an alignment's held messages included, and fails with `InputGapError` at a message that follows
 * a gap — the job then restarts from its last checkpoint instead of going on without it.
 */
import { afterEach, describe, expect, it } from "vitest";
import { buildJobGraph } from "../../../runtime/core/job-graph.ts";
import { PartitionActor } from "../../../runtime/actor/partition-actor.ts";
import { InputGapError } from "../../../runtime/core/message-sequence.ts";
import { HEADER, inputStream, inputSubject } from "../../../runtime/core/naming.ts";
import { encodeBatch } from "../../../runtime/core/wire.ts";
import { boundedOutOfOrderness, defineFunction, definePipeline, fromFunction, fromStream, valueState } from "../../../runtime/sdk/index.ts";
import { MemoryTransport } from "../../support/memory-transport.ts";
import { waitFor } from "../../support/wait.ts";
import { collectAcks, recordsTo, runCheckpoint, sendRecords } from "../../support/actor-driver.ts";

interface Event {
  readonly key: string;
  readonly at: number;
}

const graph = buildJobGraph(
  definePipeline({
    name: "j",
    functions: [
      defineFunction<Event, Event>({ name: "events", input: fromStream("events", { subject: (p) => `events.${p}`, partitions: 2 }), timestamp: (e) => e.at, watermark: boundedOutOfOrderness(0), process: (ctx, e) => ctx.emit(e) }),
      defineFunction<Event, { key: string; n: number }, { n: ReturnType<typeof valueState<number>> }>({
        name: "count",
        input: fromFunction("events"),
        partitions: 1,
        key: (e) => e.key,
        state: { n: valueState<number>() },
        process(ctx) {
          ctx.emit({ key: ctx.key, n: ctx.state.n.update((x) => (x ?? 0) + 1) });
        },
      }),
      defineFunction<unknown, unknown>({ name: "out", input: fromFunction("count"), partitions: 1, process: () => undefined }),
    ],
  }),
);

const PATIENTLY = { timeoutMs: 10_000, intervalMs: 2 } as const;
const actors: PartitionActor[] = [];
afterEach(async () => {
  for (const a of actors.splice(0)) await a.stop();
});

/** The `count` actor, reading what the test appends to its input as `events/0` and `events/1`. */
async function counting() {
  const t = new MemoryTransport({ now: () => 1_000_000 });
  t.addStream("events", ["events.*"]);
  t.addJobTopology(graph);
  const acks = collectAcks(t, graph.job);
  const count = new PartitionActor(t, graph, graph.node("count"), 0, { tickMs: 1, lingerMs: 0, now: () => 1_000_000 });
  actors.push(count);
  let failure: unknown;
  count.failed.catch((e) => (failure = e));
  await count.start({ generation: 1, checkpoint: 0, worker: "w" });
  /** Appends message number `n` of `producer` (no number when undefined) and waits until it is read. */
  const send = async (producer: string, n: number | undefined, kind: "data" | "barrier", keys: readonly string[] = [], epoch = 1) => {
    const data = kind === "data" ? encodeBatch({ records: keys.flatMap((key) => [key, 1, { key, at: 1 }]), marks: [], watermark: 0, idle: false }) : JSON.stringify({ id: epoch, stop: false });
    const headers = { [HEADER.producer]: producer, [HEADER.kind]: kind, [HEADER.generation]: "1", [HEADER.epoch]: String(epoch), ...(n === undefined ? {} : { [HEADER.sequence]: String(n) }) };
    const seq = await t.append(inputSubject("j", "count", 0), data, headers);
    // Read: handled (the position passed it), held by an alignment, or a barrier that started one.
    await waitFor(`message ${n} of ${producer} read`, () => failure !== undefined || count.stats.position > seq || count.heldBytes > 0 || count.alignment?.pending !== undefined, PATIENTLY);
  };
  return { t, acks, count, send, failure: () => failure };
}

describe("message numbers on internal inputs", () => {
  it("number every message an actor sends to a partition from 1, barriers included", async () => {
    const t = new MemoryTransport({ now: () => 1_000_000 });
    t.addStream("events", ["events.*"]);
    t.addJobTopology(graph);
    const acks = collectAcks(t, graph.job);
    const events = new PartitionActor(t, graph, graph.node("events"), 0, { tickMs: 1, lingerMs: 0, now: () => 1_000_000 });
    actors.push(events);
    await events.start({ generation: 1, checkpoint: 0, worker: "w" });
    await sendRecords(t, events, "events.0", [{ key: "a", at: 1 }, { key: "b", at: 2 }]);
    await runCheckpoint(events, acks, 1, { commit: false });
    await sendRecords(t, events, "events.0", [{ key: "c", at: 3 }]);
    await waitFor("the record after the barrier sent", () => recordsTo(t, "j", "count").length === 3, PATIENTLY);
    const sent = t.messages(inputStream("j", "count"));
    expect(sent.map((m) => m.headers[HEADER.kind])).toContain("barrier");
    expect(sent.map((m) => Number(m.headers[HEADER.sequence]))).toEqual(sent.map((_, i) => i + 1));
  });

  it("handles each producer's messages in order and fails at one that follows a gap", async () => {
    const { count, send, failure } = await counting();
    await send("events/0", 1, "data", ["a"]);
    await send("events/1", 1, "data", ["b"]);
    await send("events/0", 2, "data", ["a"]);
    expect(failure()).toBeUndefined();
    await send("events/0", 4, "data", ["a"]);
    await waitFor("the actor failed", () => failure() !== undefined, PATIENTLY);
    expect(failure()).toBeInstanceOf(InputGapError);
    expect(String((failure() as Error).message)).toMatch(/message 4 of events\/0 .* follows message 2 \(read at sequence 3\): messages in between never arrived/);
    // The message after the gap was not handled: the job restarts from its checkpoint instead.
    expect(count.stats.recordsIn).toBe(3);
  });

  it("checks a message an alignment holds once, in reading order, not again when it is released", async () => {
    const { acks, send, failure } = await counting();
    await send("events/0", 1, "data", ["a"]);
    await send("events/1", 1, "data", ["b"]);
    await send("events/0", 2, "barrier");
    // Held until events/1's barrier comes: epoch 2 of events/0.
    await send("events/0", 3, "data", ["a"], 2);
    await send("events/1", 2, "barrier");
    await waitFor("the ack of 1", () => acks.some((a) => a.id === 1), PATIENTLY);
    await send("events/0", 4, "data", ["a"], 2);
    expect(failure()).toBeUndefined();
  });

  it("does not check messages without numbers", async () => {
    const { count, send, failure } = await counting();
    await send("events/0", undefined, "data", ["a"]);
    await send("events/0", undefined, "data", ["a"]);
    expect(failure()).toBeUndefined();
    expect(count.stats.recordsIn).toBe(2);
  });
});
