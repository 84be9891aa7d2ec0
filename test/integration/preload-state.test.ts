/**
 * The benchmarks' preload (test/bench/preload-state.ts) must leave the state a job's own load
 * leaves, or the `recovery` and `state` figures at millions of keys would measure a restore and a
 * cache that meet something else: the bucket a counter job fills by counting keys and the bucket
 * the preload writes for the same keys are compared entry by entry (values, the filter of stored
 * keys, versions, the timer layout and index), and a counter started on a preloaded bucket must
 * count on from the preloaded values while answering new keys from the preloaded filter.
 */
import { describe, expect, it } from "vitest";
import type { NatsConnection } from "@nats-io/transport-node";
import { parseKvKey } from "../../runtime/core/kv-keys.ts";
import { stateBucket } from "../../runtime/core/naming.ts";
import { filterBlockIds, StoredKeyFilter } from "../../runtime/core/stored-keys.ts";
import { decodeValue } from "../../runtime/core/wire.ts";
import { startLocalJob } from "../../runtime/dev/local-job.ts";
import { ensureStream, publishAll, readAll } from "../../runtime/nats/streams.ts";
import { JetStreamTransport } from "../../runtime/nats/transport.ts";
import { defineFunction, definePipeline, fromFunction, fromStream, valueState } from "../../runtime/sdk/index.ts";
import { preloadKeyedState } from "../bench/preload-state.ts";
import { connect, natsServer } from "../support/nats-server.ts";
import { waitFor } from "../support/wait.ts";

const KEYS = 1000;
const PARTITIONS = 4;
const decoder = new TextDecoder();

/** A keyed counter over records `{k}`, emitting each new count (at-least-once, so output shows at once). */
function counter(job: string, stream: string) {
  return definePipeline({
    name: job,
    functions: [
      defineFunction<{ k: string }, { k: string }>({
        name: "read",
        input: fromStream(stream, { subject: `${job}.in` }),
        process(ctx, r) {
          ctx.emit(r);
        },
      }),
      defineFunction<{ k: string }, { k: string; n: number }, { n: ReturnType<typeof valueState<number>> }>({
        name: "count",
        input: fromFunction("read"),
        partitions: PARTITIONS,
        key: (r) => r.k,
        state: { n: valueState<number>() },
        sink: { subject: `${job}.out`, delivery: "at-least-once" },
        process(ctx, r) {
          const n = (ctx.state.n.get() ?? 0) + 1;
          ctx.state.n.set(n);
          ctx.emit({ k: r.k, n });
        },
      }),
    ],
  });
}

async function setUp(nc: NatsConnection, job: string): Promise<void> {
  await ensureStream(nc, `${job.toUpperCase()}_IN`, [`${job}.in`]);
  await ensureStream(nc, `${job.toUpperCase()}_OUT`, [`${job}.out`]);
}

const publishKeys = (nc: NatsConnection, job: string, keys: readonly string[]) => publishAll(nc, keys.map((k) => ({ subject: `${job}.in`, data: JSON.stringify({ k }) })));

async function outputs(nc: NatsConnection, job: string): Promise<Array<{ k: string; n: number }>> {
  return (await readAll(nc, `${job.toUpperCase()}_OUT`, `${job}.out`)).map((m) => JSON.parse(decoder.decode(m.data)) as { k: string; n: number });
}

/** The bucket's entries, without what only a running job writes (its checkpoint, positions, watermarks). */
async function storedEntries(nc: NatsConnection, job: string): Promise<Map<string, string>> {
  const listed = await new JetStreamTransport(nc).listState(stateBucket(job, "count"), ">");
  const runOnly = new Set(["applied", "position", "write-position", "watermark"]);
  return new Map(listed.filter((e) => !runOnly.has(parseKvKey(e.key)?.kind ?? "")).map((e) => [e.key, Buffer.from(e.value).toString("hex")]));
}

const keyName = (i: number) => `user-${i}`;

describe("preloaded keyed state for the benchmarks", () => {
  it("writes the bucket a job's own load of the same keys leaves, entry for entry", async () => {
    await using server = await natsServer();
    const nc = await connect(server);
    const keys = Array.from({ length: KEYS }, (_, i) => keyName(i));

    // The job's own load: every key counted once, then a stop that checkpoints and materializes.
    await setUp(nc, "loaded");
    const job = await startLocalJob(nc, counter("loaded", "LOADED_IN"), { checkpointIntervalMs: 500 });
    try {
      await publishKeys(nc, "loaded", keys);
      await waitFor("every key counted", async () => ((await outputs(nc, "loaded")).length >= KEYS ? true : undefined), { timeoutMs: 120_000 });
    } finally {
      await job.stop();
    }
    const loaded = await storedEntries(nc, "loaded");

    await setUp(nc, "preloaded");
    await preloadKeyedState(nc, { pipeline: counter("preloaded", "PRELOADED_IN"), fn: "count", state: "n", keys: KEYS, keyOf: keyName, valueOf: () => 1 });
    const preloaded = await storedEntries(nc, "preloaded");

    expect([...loaded.keys()].filter((k) => parseKvKey(k)?.kind === "key-filter")).toHaveLength(PARTITIONS);
    expect([...loaded.keys()].filter((k) => parseKvKey(k)?.kind === "state")).toHaveLength(KEYS);
    expect(preloaded).toEqual(loaded);
  }, 240_000);

  it("lets a counter started on it count on from the preloaded values, answering new keys from the preloaded filter", async () => {
    await using server = await natsServer();
    const nc = await connect(server);
    await setUp(nc, "counted");
    const pipeline = counter("counted", "COUNTED_IN");
    const preloadedCount = (i: number) => 1 + (i % 7);
    await preloadKeyedState(nc, { pipeline, fn: "count", state: "n", keys: KEYS, keyOf: keyName, valueOf: preloadedCount });

    const fresh = Array.from({ length: 50 }, (_, i) => `fresh-${i}`);
    const job = await startLocalJob(nc, pipeline, { checkpointIntervalMs: 500 });
    let gets: number;
    try {
      await publishKeys(nc, "counted", [...Array.from({ length: KEYS }, (_, i) => keyName(i)), ...fresh]);
      const out = await waitFor("every key counted", async () => {
        const o = await outputs(nc, "counted");
        return o.length >= KEYS + fresh.length ? o : undefined;
      }, { timeoutMs: 120_000 });
      const counts = new Map(out.map((o) => [o.k, o.n]));
      expect(counts.size).toBe(KEYS + fresh.length);
      for (let i = 0; i < KEYS; i++) expect(counts.get(keyName(i)), keyName(i)).toBe(preloadedCount(i) + 1);
      for (const k of fresh) expect(counts.get(k), k).toBe(1);
      // One KV get per preloaded key; the new keys are absent by the filter, without a get.
      gets = job.worker.stats().filter((s) => s.fn === "count").reduce((n, s) => n + s.stateGets, 0);
    } finally {
      await job.stop();
    }
    expect(gets).toBe(KEYS);

    // The filter the job stored after its checkpoint covers the preloaded keys and its new ones.
    const transport = new JetStreamTransport(nc);
    const bucket = stateBucket("counted", "count");
    let covered = 0;
    const filters: StoredKeyFilter[] = [];
    for (let p = 0; p < PARTITIONS; p++) {
      const [header] = await transport.getState(bucket, [`${p}._kf`]);
      expect(header, `partition ${p}'s filter header`).toBeDefined();
      const ids = filterBlockIds(decodeValue(header!));
      const blocks = await transport.getState(bucket, ids.map((id) => `${p}._kf.${id}`));
      const filter = StoredKeyFilter.restore(decodeValue(header!), new Map(ids.flatMap((id, i) => (blocks[i] === undefined ? [] : [[id, decodeValue(blocks[i]!)] as const]))));
      expect(filter, `partition ${p}'s filter`).toBeDefined();
      filters.push(filter!);
      covered += filter!.keyCount;
    }
    expect(covered).toBe(KEYS + fresh.length);
    for (const k of [...Array.from({ length: KEYS }, (_, i) => keyName(i)), ...fresh]) expect(filters.some((f) => f.mightContain(k)), k).toBe(true);
  }, 240_000);
});
