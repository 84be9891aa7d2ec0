/**
 * A worker gives the stop of an old generation's actors a bound (runtime/actor/worker-stops.ts):
 * once it has passed, it is told which actors are late and where each is stuck — what its stop
 * waits for and what its read loop awaits — and the stop goes on waiting. `eddy worker` then
 * exits (run-worker.ts), so that its heartbeat expires and the supervisor recovers the actors.
 */
import { afterEach, describe, expect, it, vi } from "vitest";
import { buildJobGraph } from "../../../runtime/core/job-graph.ts";
import { PartitionActor } from "../../../runtime/actor/partition-actor.ts";
import { describeStuck, stopWithin, type Stoppable } from "../../../runtime/actor/worker-stops.ts";
import { stateKey } from "../../../runtime/core/kv-keys.ts";
import { HEADER, inputSubject, stateBucket } from "../../../runtime/core/naming.ts";
import { encodeBatch, encodeValue } from "../../../runtime/core/wire.ts";
import { defineFunction, definePipeline, fromFunction, fromStream, valueState } from "../../../runtime/sdk/index.ts";
import { MemoryTransport } from "../../support/memory-transport.ts";
import { waitFor } from "../../support/wait.ts";

/** An actor whose stop ends when `finish` is called (at once if `stopsAtOnce`). */
function fakeActor(id: string, stopsAtOnce: boolean): Stoppable & { finish(): void; stopped: boolean } {
  let finish = () => undefined as void;
  const a = {
    id,
    stopped: false,
    finish: () => finish(),
    stop: () =>
      new Promise<void>((resolve) => {
        finish = () => {
          a.stopped = true;
          resolve();
        };
        if (stopsAtOnce) finish();
      }),
    stopState: () => (a.stopped ? "stop stopped, read loop ended" : "stop waiting for the read loop, read loop reading the keys of a message"),
  };
  return a;
}

describe("stopping a generation's actors within a bound", () => {
  afterEach(() => vi.useRealTimers());

  it("hears nothing when every actor stops in time", async () => {
    vi.useFakeTimers();
    const stuck: string[] = [];
    await stopWithin([fakeActor("a/0", true), fakeActor("a/1", true)], { timeoutMs: 1000, onStuck: (s) => stuck.push(s) });
    await vi.advanceTimersByTimeAsync(5000);
    expect(stuck).toEqual([]);
  });

  it("names the late actors and where they are once the bound has passed, then goes on waiting for them", async () => {
    vi.useFakeTimers();
    const quick = fakeActor("a/0", true);
    const late = fakeActor("a/1", false);
    const stuck: string[] = [];
    let done = false;
    const stopping = stopWithin([quick, late], { timeoutMs: 1000, onStuck: (s) => stuck.push(s) }).then(() => (done = true));
    await vi.advanceTimersByTimeAsync(999);
    expect(stuck).toEqual([]);
    await vi.advanceTimersByTimeAsync(1);
    expect(stuck).toEqual(["a/1 (stop waiting for the read loop, read loop reading the keys of a message)"]);
    await vi.advanceTimersByTimeAsync(60_000);
    expect(done).toBe(false);
    expect(stuck).toHaveLength(1);
    late.finish();
    await stopping;
    expect(done).toBe(true);
  });

  it("describes several late actors in one line", () => {
    expect(describeStuck([fakeActor("a/0", false), fakeActor("b/3", false)])).toBe(
      "a/0 (stop waiting for the read loop, read loop reading the keys of a message); b/3 (stop waiting for the read loop, read loop reading the keys of a message)",
    );
  });
});

describe("where a partition actor's stop is", () => {
  const graph = buildJobGraph(
    definePipeline({
      name: "j",
      functions: [
        defineFunction<{ k: string }, { k: string }>({ name: "in", input: fromStream("events", { partitions: 1 }), process: (ctx, e) => ctx.emit(e) }),
        defineFunction<{ k: string }, number, { n: ReturnType<typeof valueState<number>> }>({
          name: "count",
          input: fromFunction("in"),
          partitions: 1,
          key: (e) => e.k,
          state: { n: valueState<number>() },
          process: (ctx) => ctx.emit(ctx.state.n.update((n) => (n ?? 0) + 1)),
        }),
      ],
    }),
  );

  it("says what its read loop awaits when KV does not answer, and what its stop waits for", async () => {
    const t = new MemoryTransport({ now: () => 1_000_000 });
    t.addStream("events", ["events"]);
    t.addJobTopology(graph);
    // A stored key: its first record must be read from KV before it is counted.
    await t.writeState(stateBucket("j", "count"), [{ key: stateKey(0, "n", "a"), value: encodeValue(41) }], []);
    const a = new PartitionActor(t, graph, graph.node("count"), 0, { tickMs: 1, lingerMs: 0, now: () => 1_000_000 });
    const failures: unknown[] = [];
    a.failed.catch((e) => failures.push(e));
    await a.start({ generation: 1, checkpoint: 0, worker: "w" });
    expect(a.stopState()).toBe("stop not asked, read loop waiting for input");

    const release = t.pauseReads();
    const headers = { [HEADER.producer]: "in/0", [HEADER.kind]: "data", [HEADER.generation]: "1", [HEADER.epoch]: "1" };
    await t.append(inputSubject("j", "count", 0), encodeBatch({ records: ["a", 1_000, { k: "a" }], marks: [], watermark: -Infinity, idle: false }), headers);
    await waitFor("the key's read asked for", () => t.kvReads.some((r) => r.key === stateKey(0, "n", "a")), { timeoutMs: 10_000, intervalMs: 2 });
    expect(a.stopState()).toBe("stop not asked, read loop reading the keys of a message");

    const stuck: string[] = [];
    const stopping = stopWithin([a], { timeoutMs: 50, onStuck: (s) => stuck.push(s) });
    await waitFor("the stop reported late", () => stuck.length === 1, { timeoutMs: 10_000, intervalMs: 2 });
    expect(stuck).toEqual([`${a.id} (stop waiting for the read loop, read loop reading the keys of a message)`]);

    release();
    await stopping;
    expect(a.stopState()).toBe("stop stopped, read loop ended");
    expect(failures).toEqual([]);
  });
});
