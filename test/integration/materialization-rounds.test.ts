/**
 * Materialization rounds on a real nats-server (docs/design/bg-materialization-rounds.md).
 *
 * KV is made slow (the rounds' KV writes wait for the test, over the real JetStream transport)
 * while checkpoints keep committing: the commits queue up and the next round writes them
 * together, while each commit's exactly-once output goes out at once (design note ck).
 * Committed reads see a committed state throughout — never a change that is not committed — and
 * an actor lost in the middle of a round (its output published, its state written, `_applied`
 * not yet) is recovered by its successor with the output exact: every record once, in order per
 * key, and KV at the final counts.
 */
import { describe, expect, it } from "vitest";
import { Kvm } from "@nats-io/kv";
import { buildJobGraph } from "../../runtime/core/job-graph.ts";
import { appliedKey, publishedKey } from "../../runtime/core/kv-keys.ts";
import { stateBucket } from "../../runtime/core/naming.ts";
import { ackSubject, type SnapshotAck } from "../../runtime/core/protocol.ts";
import { decodeValue } from "../../runtime/core/wire.ts";
import { getCommitted } from "../../runtime/nats/committed-state.ts";
import { ensureStream, publishAll, readAll } from "../../runtime/nats/streams.ts";
import { ensureControlPlane, ensureJobTopology } from "../../runtime/nats/topology.ts";
import { JetStreamTransport } from "../../runtime/nats/transport.ts";
import { PartitionActor } from "../../runtime/actor/partition-actor.ts";
import type { StateEntry } from "../../runtime/actor/ports.ts";
import { defineFunction, definePipeline, fromStream, valueState } from "../../runtime/sdk/index.ts";
import { connect, natsServer } from "../support/nats-server.ts";
import { waitFor } from "../support/wait.ts";

interface Visit {
  readonly u: string;
  readonly i: number;
}
interface Counted extends Visit {
  readonly n: number;
}

/** One keyed source counting visits per user, with an exactly-once sink. */
const graph = buildJobGraph(
  definePipeline({
    name: "rounds",
    functions: [
      defineFunction<Visit, Counted, { n: ReturnType<typeof valueState<number>> }>({
        name: "count",
        input: fromStream("ROUNDS_IN", { subject: "rounds.in" }),
        partitions: 1,
        key: (r) => r.u,
        state: { n: valueState<number>() },
        process(ctx, r) {
          ctx.emit({ ...r, n: ctx.state.n.update((n) => (n ?? 0) + 1) });
        },
        sink: { subject: "rounds.out" },
      }),
    ],
  }),
);

/**
 * The JetStream transport with KV writes that wait for the test: `allow(n)` lets `n` more write
 * calls through, `open()` all of them, `lose()` fails the waiting ones (the process is gone).
 * The one-key records of published output (`_published`) are not held: the rounds are.
 */
class SlowKvTransport extends JetStreamTransport {
  calls = 0;
  private allowed = 0;
  private lost = false;
  private waiting: Array<() => void> = [];
  allow(n: number): void {
    this.allowed += n;
    this.wake();
  }
  open(): void {
    this.allow(Number.POSITIVE_INFINITY);
  }
  lose(): void {
    this.lost = true;
    this.wake();
  }
  private wake(): void {
    for (const w of this.waiting.splice(0)) w();
  }
  override async writeState(bucket: string, puts: readonly StateEntry[], deletes: readonly string[]): Promise<void> {
    if (this.lost) throw new Error("worker lost");
    if (deletes.length === 0 && puts.length === 1 && puts[0]!.key === publishedKey(0)) return super.writeState(bucket, puts, deletes);
    while (this.allowed <= 0 && !this.lost) await new Promise<void>((r) => this.waiting.push(r));
    if (this.lost) throw new Error("worker lost");
    this.allowed--;
    this.calls++;
    await super.writeState(bucket, puts, deletes);
  }
}

const USERS = 5;
const visits = (from: number, to: number): Visit[] => Array.from({ length: to - from }, (_, k) => ({ u: `user-${(from + k) % USERS}`, i: from + k }));
function countsAfter(n: number): Map<string, number> {
  const m = new Map<string, number>();
  for (const v of visits(0, n)) m.set(v.u, (m.get(v.u) ?? 0) + 1);
  return m;
}
const decoder = new TextDecoder();

describe("materialization rounds", () => {
  it("coalesces checkpoints committed while KV is slow, publishes their output meanwhile, keeps committed reads committed, and recovers an actor lost inside a round with exact output", async () => {
    await using server = await natsServer();
    const nc = await connect(server);
    const actors: PartitionActor[] = [];
    let slow: SlowKvTransport | undefined;
    const bucket = stateBucket("rounds", "count");
    try {
      await ensureStream(nc, "ROUNDS_IN", ["rounds.in"]);
      await ensureStream(nc, "ROUNDS_OUT", ["rounds.out"]);
      await ensureControlPlane(nc);
      await ensureJobTopology(nc, graph);
      const acks: SnapshotAck[] = [];
      const sub = nc.subscribe(ackSubject("rounds"), { callback: (_, m) => void acks.push(JSON.parse(decoder.decode(m.data)) as SnapshotAck) });
      const kv = await new Kvm(nc).open(bucket);
      const committed = async (u: string) => {
        const r = await getCommitted(kv, 0, "n", u);
        return r.found ? (r.value as number) : 0;
      };
      const applied = async () => {
        const e = await kv.get(appliedKey(0));
        return e === null || e.length === 0 ? 0 : (decodeValue(e.value) as number);
      };
      let published = 0;
      const publish = async (from: number, to: number) => {
        await publishAll(nc, visits(from, to).map((r) => ({ subject: "rounds.in", data: JSON.stringify(r) })));
        published = to;
      };
      const checkpoint = async (a: PartitionActor, generation: number, id: number) => {
        await waitFor(`records up to ${published} read`, () => a.stats.position === published + 1, { timeoutMs: 60_000, intervalMs: 10 });
        await a.trigger({ id, generation, stop: false });
        await waitFor(`the ack of checkpoint ${id}`, () => acks.some((k) => k.id === id && k.generation === generation), { timeoutMs: 60_000, intervalMs: 10 });
        a.onCommitted(id, generation);
      };

      slow = new SlowKvTransport(nc);
      // A round as soon as the previous one is done (no spacing), so which round writes what is known.
      const first = new PartitionActor(slow, graph, graph.node("count"), 0, { materializationIntervalMs: 0 });
      actors.push(first);
      await first.start({ generation: 1, checkpoint: 0, worker: "first" });
      // Three checkpoints commit while KV takes nothing: round 1 waits with checkpoint 1, 2 and 3 queue.
      await publish(0, 100);
      await checkpoint(first, 1, 1);
      await publish(100, 250);
      await checkpoint(first, 1, 2);
      await publish(250, 300);
      await checkpoint(first, 1, 3);
      // Keys: the users' counts, the partition's watermark, position, write position and versions,
      // its timer layout and the head of its markers' index (`_tl`, `_tx`, written by the first
      // snapshot) and its filter of stored keys (header and the one block the users fell in).
      expect(first.sampleActivity()).toMatchObject({ materializationLagCheckpoints: 3, materializationLagKeys: USERS + 4 + 2 + 2 });
      // Their output did not wait for KV: out at each commit, in order, and recorded as published.
      await waitFor("the output of checkpoints 1 to 3 published", async () => (await readAll(nc, "ROUNDS_OUT")).length === 300, { timeoutMs: 60_000, intervalMs: 20 });
      await waitFor("_published = 3", async () => {
        const e = await kv.get(publishedKey(0));
        return e !== null && e.length > 0 && decodeValue(e.value) === 3;
      }, { timeoutMs: 60_000, intervalMs: 20 });
      expect(slow.calls).toBe(0);
      // Records after checkpoint 3: read, counted, never committed by this actor.
      await publish(300, 340);
      await waitFor("records after checkpoint 3 read", () => first.stats.position === 341, { timeoutMs: 60_000, intervalMs: 10 });
      // KV lags three checkpoints: a committed read shows the committed state KV has (none yet).
      expect(await committed("user-0")).toBe(0);

      // Round 1 (checkpoint 1: its state, then `_applied`) goes through; the next round takes 2 and 3.
      slow.allow(2);
      await waitFor("checkpoint 1 in KV", async () => (await applied()) === 1, { timeoutMs: 60_000, intervalMs: 10 });
      for (let u = 0; u < USERS; u++) expect(await committed(`user-${u}`)).toBe(countsAfter(100).get(`user-${u}`));
      // Round 2 writes checkpoint 3's values (each key once); the worker is lost before `_applied` moves.
      slow.allow(1);
      await waitFor("round 2's state written", () => slow!.calls === 3, { timeoutMs: 60_000, intervalMs: 10 });
      expect((await readAll(nc, "ROUNDS_OUT")).length).toBe(300);
      expect(await applied()).toBe(1);
      // Committed values, the newest committed checkpoint's; never the records after it.
      for (let u = 0; u < USERS; u++) expect(await committed(`user-${u}`)).toBe(countsAfter(300).get(`user-${u}`));
      slow.lose();
      await first.stop();

      // The successor restores checkpoint 3: KV at `_applied` 1 plus deltas 2 and 3, in one round,
      // without publishing their output again (`_published` is 3).
      const second = new PartitionActor(new JetStreamTransport(nc), graph, graph.node("count"), 0, {});
      actors.push(second);
      await second.start({ generation: 2, checkpoint: 3, worker: "second" });
      expect(await applied()).toBe(3);
      expect(second.stats).toMatchObject({ materializationRounds: 1, materializedCheckpoints: 2, materializationLagCheckpoints: 0 });
      await publish(340, 400);
      await checkpoint(second, 2, 4);
      await second.applied(4);
      for (let u = 0; u < USERS; u++) expect(await committed(`user-${u}`)).toBe(countsAfter(400).get(`user-${u}`));

      const out = (await readAll(nc, "ROUNDS_OUT")).map((m) => JSON.parse(decoder.decode(m.data)) as Counted);
      expect(out).toHaveLength(400);
      expect(out.map((r) => r.i)).toEqual(visits(0, 400).map((v) => v.i));
      for (let u = 0; u < USERS; u++) {
        const ns = out.filter((r) => r.u === `user-${u}`).map((r) => r.n);
        expect(ns).toEqual(ns.map((_, k) => k + 1));
      }
      sub.unsubscribe();
    } finally {
      slow?.lose();
      for (const a of actors) await a.stop();
      await nc.close();
    }
  }, 180_000);
});
