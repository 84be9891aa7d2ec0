/**
 * Continuous upload of changes (design note bh) in the partition actor, over the in-memory
 * transport: changes go to the object store in segments while records are read; a barrier uploads
 * only the remainder and a manifest naming the segments since the last commit; a failed
 * checkpoint's segments are named again by the next one, not uploaded again; a restore applies the
 * segments of a committed manifest in order and never one no commit names; a delta written before
 * segments still restores.
 */
import { afterEach, describe, expect, it } from "vitest";
import { buildJobGraph, type JobGraph } from "../../../runtime/core/job-graph.ts";
import { CorruptCheckpointError, PartitionActor, type ActorConfig } from "../../../runtime/actor/partition-actor.ts";
import { ackSubject, deltaObject, type SnapshotAck } from "../../../runtime/core/protocol.ts";
import { positionKey, stateKey } from "../../../runtime/core/kv-keys.ts";
import { segmentObjectPrefix } from "../../../runtime/core/changelog.ts";
import { decodeValue, encodeValue } from "../../../runtime/core/wire.ts";
import { defineFunction, definePipeline, fromStream, valueState } from "../../../runtime/sdk/index.ts";
import { MemoryTransport } from "../../support/memory-transport.ts";
import { waitFor } from "../../support/wait.ts";

interface Click {
  readonly user: string;
  readonly at: number;
}
const countState = { n: valueState<number>() };

/** A keyed source counting clicks per user. */
const graph: JobGraph = buildJobGraph(
  definePipeline({
    name: "j",
    functions: [
      defineFunction<Click, unknown, typeof countState>({
        name: "counts",
        input: fromStream("clicks"),
        key: (c) => c.user,
        timestamp: (c) => c.at,
        state: countState,
        process(ctx) {
          ctx.state.n.update((n) => (n ?? 0) + 1);
        },
      }),
    ],
  }),
);

/** The in-memory transport, counting the uploads of each object. */
class CountingTransport extends MemoryTransport {
  readonly puts = new Map<string, number>();
  override async putSnapshot(name: string, data: Uint8Array): Promise<void> {
    this.puts.set(name, (this.puts.get(name) ?? 0) + 1);
    await super.putSnapshot(name, data);
  }
}

const actors: PartitionActor[] = [];
afterEach(async () => {
  for (const a of actors.splice(0)) await a.stop();
});

function setup(): { t: CountingTransport; acks: SnapshotAck[] } {
  const t = new CountingTransport({ now: () => 1_000_000 });
  t.addStream("clicks", ["clicks"]);
  t.addJobTopology(graph);
  const acks: SnapshotAck[] = [];
  t.subscribe(ackSubject(graph.job), (_, data) => acks.push(JSON.parse(new TextDecoder().decode(data)) as SnapshotAck));
  return { t, acks };
}

function actor(t: MemoryTransport, config: Partial<ActorConfig> = {}): PartitionActor {
  const a = new PartitionActor(t, graph, graph.node("counts"), 0, { tickMs: 1, lingerMs: 0, now: () => 1_000_000, segments: { entries: 3, maxInFlight: 2 }, ...config });
  actors.push(a);
  return a;
}

const segmentNames = (t: MemoryTransport) => [...t.snapshots.keys()].filter((n) => n.startsWith(segmentObjectPrefix("j")));
const manifest = (t: MemoryTransport, id: number) => decodeValue(t.snapshots.get(deltaObject("j", id, "counts", 0))!) as { base: number; segments: Array<[string, number, number]> };
/** KV entries a manifest's segments hold, applied in order, as [key, decoded value or null]. */
function manifestEntries(t: MemoryTransport, id: number): Map<string, unknown> {
  const out = new Map<string, unknown>();
  for (const [name] of manifest(t, id).segments) {
    for (const chunk of decodeValue(t.snapshots.get(name)!) as Uint8Array[]) {
      for (const [k, v] of decodeValue(chunk) as Array<[string, Uint8Array | null]>) out.set(k, v === null ? null : decodeValue(v));
    }
  }
  return out;
}
const users = (from: number, to: number) => Array.from({ length: to - from }, (_, i) => ({ user: `u${(from + i) % 7}`, at: from + i }));
/** The counts a plain loop over the same records gives. */
function counts(clicks: readonly Click[]): Map<string, number> {
  const m = new Map<string, number>();
  for (const c of clicks) m.set(c.user, (m.get(c.user) ?? 0) + 1);
  return m;
}
async function feed(t: MemoryTransport, a: PartitionActor, clicks: readonly Click[]): Promise<void> {
  for (const c of clicks) await t.append("clicks", JSON.stringify(c));
  const last = t.messages("clicks").length;
  await waitFor(`records up to ${last} read`, () => a.stats.position === last + 1, { timeoutMs: 5000, intervalMs: 2 });
}
async function checkpoint(a: PartitionActor, acks: SnapshotAck[], id: number, generation = 1): Promise<SnapshotAck> {
  await a.trigger({ id, generation, stop: false });
  return waitFor(`the ack of checkpoint ${id}`, () => acks.find((k) => k.id === id && k.generation === generation), { timeoutMs: 5000, intervalMs: 2 });
}

describe("PartitionActor: changes uploaded in segments between barriers", () => {
  it("uploads segments while it reads; a barrier uploads the remainder and a manifest naming every segment since the last commit", async () => {
    const { t, acks } = setup();
    const a = actor(t);
    await a.start({ generation: 1, checkpoint: 0, worker: "w" });
    await feed(t, a, users(0, 20));
    // A segment each time three keys changed: six stored before any barrier.
    await waitFor("six segments stored", () => segmentNames(t).length === 6, { timeoutMs: 5000, intervalMs: 2 });
    const before = segmentNames(t);
    const ack = await checkpoint(a, acks, 1);
    const m = manifest(t, 1);
    expect(m.segments.map((s) => s[0]).slice(0, 6)).toEqual(before);
    // The barrier cut one more: the two users of the last records, the watermark, the position,
    // the write position and the schema versions.
    expect(m.segments).toHaveLength(7);
    expect((decodeValue(t.snapshots.get(m.segments[6]![0])!) as Uint8Array[]).flatMap((c) => decodeValue(c) as unknown[])).toHaveLength(2 + 4);
    expect(ack.segments).toEqual(m.segments);
    for (const [name, bytes] of m.segments) expect(t.snapshots.get(name)!.length).toBe(bytes);
    const entries = manifestEntries(t, 1);
    for (const [user, n] of counts(users(0, 20))) expect(entries.get(stateKey(0, "n", user))).toBe(n);
    expect(entries.get(positionKey(0))).toBe(21);
    expect(ack.keysChanged).toBe(entries.size);
  });

  it("uploads everything at the barrier when continuous upload is off (entries: Infinity)", async () => {
    const { t, acks } = setup();
    const a = actor(t, { segments: { entries: Infinity, maxInFlight: 2 } });
    await a.start({ generation: 1, checkpoint: 0, worker: "w" });
    await feed(t, a, users(0, 20));
    expect(segmentNames(t)).toEqual([]);
    await checkpoint(a, acks, 1);
    expect(manifest(t, 1).segments).toHaveLength(1);
  });

  it("names a failed checkpoint's segments again in the next snapshot without uploading them again, and a restore from it is exact", async () => {
    const { t, acks } = setup();
    const a = actor(t);
    await a.start({ generation: 1, checkpoint: 0, worker: "w" });
    await feed(t, a, users(0, 30));
    await checkpoint(a, acks, 1);
    // Checkpoint 1 is aborted (never committed); records go on, and checkpoint 2 is taken.
    await feed(t, a, users(30, 50));
    await checkpoint(a, acks, 2);
    const first = manifest(t, 1).segments.map((s) => s[0]);
    const second = manifest(t, 2).segments.map((s) => s[0]);
    expect(manifest(t, 2).base).toBe(0);
    expect(second.slice(0, first.length)).toEqual(first);
    for (const name of segmentNames(t)) expect(t.puts.get(name)).toBe(1);
    // Records after checkpoint 2 are cut into segments of epoch 3 no commit will name.
    await feed(t, a, users(50, 80));
    await waitFor("a segment after checkpoint 2", () => segmentNames(t).some((n) => !second.includes(n)), { timeoutMs: 5000, intervalMs: 2 });
    await a.stop();

    // Checkpoint 2 committed; the worker is lost before it materialized anything.
    const b = actor(t);
    await b.start({ generation: 2, checkpoint: 2, worker: "w2" });
    await waitFor("the records after checkpoint 2 read again", () => b.stats.position === 81, { timeoutMs: 5000, intervalMs: 2 });
    for (const [user, n] of counts(users(0, 80))) expect(await b.readLive("n", user)).toBe(n);
    expect(b.stats.recordsIn).toBe(30);
  });

  it("restores a delta written before segments, with its entries in chunks", async () => {
    const { t } = setup();
    const old = { id: 1, base: 0, generation: 1, chunks: [encodeValue([[stateKey(0, "n", "ann"), encodeValue(5)], [positionKey(0), encodeValue(1)]])], sink: [] };
    await t.putSnapshot(deltaObject("j", 1, "counts", 0), encodeValue(old));
    const a = actor(t);
    await a.start({ generation: 2, checkpoint: 1, worker: "w" });
    expect(await a.readLive("n", "ann")).toBe(5);
    await feed(t, a, [{ user: "ann", at: 1 }]);
    expect(a.store.get("n", "ann")).toBe(6);
  });

  it("refuses to restore when a segment a committed manifest names is missing or of another size", async () => {
    const { t, acks } = setup();
    const a = actor(t);
    await a.start({ generation: 1, checkpoint: 0, worker: "w" });
    await feed(t, a, users(0, 20));
    await checkpoint(a, acks, 1);
    await a.stop();
    const [name] = manifest(t, 1).segments[0]!;
    const data = t.snapshots.get(name)!;
    t.snapshots.set(name, data.slice(1));
    await expect(actor(t).start({ generation: 2, checkpoint: 1, worker: "w2" })).rejects.toThrow(CorruptCheckpointError);
    t.snapshots.delete(name);
    await expect(actor(t).start({ generation: 2, checkpoint: 1, worker: "w2" })).rejects.toThrow(/segment .* is missing/);
  });
});
