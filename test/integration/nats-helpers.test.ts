/**
 * Specification of the small runtime/nats helpers that runtime modules outside runtime/nats call
 * instead of the NATS client, against a real nats-server: the leader bucket and its lease TTL,
 * the worker's view of the control buckets and heartbeat removal, handing a stream's first
 * messages to a function, and the plain JSON bucket of the benchmark baseline.
 */
import { describe, expect, it } from "vitest";
import { JOBS_BUCKET, LEADER_KEY, WORKERS_BUCKET } from "../../runtime/core/protocol.ts";
import { ensureControlStores, liveWorkers, openControlBuckets, removeHeartbeat } from "../../runtime/nats/control-store.ts";
import { openJsonBucket } from "../../runtime/nats/json-bucket.ts";
import { openLeaderBucket } from "../../runtime/nats/leader-bucket.ts";
import { consumeFirst, ensureStream, publishAll } from "../../runtime/nats/streams.ts";
import { ensureControlPlane, WORKER_TTL_MS } from "../../runtime/nats/topology.ts";
import { connect, natsServer } from "../support/nats-server.ts";

describe("the leader bucket", () => {
  it("is created with the requested lease TTL, and later candidates get the bucket's TTL instead of theirs", async () => {
    await using server = await natsServer();
    await using nc = await connect(server);
    const first = await openLeaderBucket(nc, 4000);
    expect(first.ttlMs).toBe(4000);
    const second = await openLeaderBucket(nc, 1500);
    expect(second.ttlMs).toBe(4000);
    // Both handles reach the same lease: one candidate's create makes the other's fail.
    const revision = await first.kv.create(LEADER_KEY, "a");
    await expect(second.kv.create(LEADER_KEY, "b")).rejects.toThrow();
    await expect(second.kv.update(LEADER_KEY, "b", revision)).resolves.toBeGreaterThan(revision);
  });
});

describe("the control buckets a worker uses", () => {
  it("are the jobs bucket and the expiring workers bucket that ensureControlPlane created", async () => {
    await using server = await natsServer();
    await using nc = await connect(server);
    await ensureControlPlane(nc);
    const { jobs, workers } = await openControlBuckets(nc);
    expect((await jobs.status()).bucket).toBe(JOBS_BUCKET);
    expect(await workers.status()).toMatchObject({ bucket: WORKERS_BUCKET, ttl: WORKER_TTL_MS });
  });

  it("lose a worker's heartbeat for one job on removeHeartbeat, and keep the others", async () => {
    await using server = await natsServer();
    await using nc = await connect(server);
    await ensureControlPlane(nc);
    const { workers } = await openControlBuckets(nc);
    await workers.put("a.w-1", "{}");
    await workers.put("b.w-1", "{}");
    await workers.put("a.w-2", "{}");
    await removeHeartbeat(nc, "a", "w-1");
    expect((await workers.get("a.w-1"))?.operation).toBe("DEL");
    expect((await workers.get("b.w-1"))?.operation).toBe("PUT");
    expect((await workers.get("a.w-2"))?.operation).toBe("PUT");
  });
});

describe("liveWorkers", () => {
  it("counts a heartbeat only for the job its key names, and only if the body says so", async () => {
    await using server = await natsServer();
    await using nc = await connect(server);
    const stores = await ensureControlStores(nc);
    const hb = (id: string, jobs: string[]) => JSON.stringify({ id, pid: 1, startedAt: 0, jobs });
    await stores.workers.put("a.w1", hb("w1", ["a"]));
    await stores.workers.put("b.w1", hb("w1", ["b"]));
    await stores.workers.put("b.w2", hb("w2", ["b"]));
    // A worker of job b claiming job a from its own keys, and under another worker's name.
    await stores.workers.put("b.w3", hb("w3", ["a", "b"]));
    await stores.workers.put("b.w4", hb("w9", ["b"]));
    // The layout before heartbeats were per job: one key per worker.
    await stores.workers.put("w5", hb("w5", ["a"]));
    const invalid: string[] = [];
    const live = await liveWorkers(stores, (key) => invalid.push(key));
    expect([...(live.get("a")?.keys() ?? [])]).toEqual(["w1"]);
    expect([...(live.get("b")?.keys() ?? [])].sort()).toEqual(["w1", "w2", "w3"]);
    expect(invalid.sort()).toEqual(["b.w4", "w5"]);
  });
});

describe("consumeFirst", () => {
  it("hands the first messages of a stream to the function in order, awaiting each one, and no more", async () => {
    await using server = await natsServer();
    await using nc = await connect(server);
    await ensureStream(nc, "NUMBERS", ["numbers"]);
    await publishAll(nc, Array.from({ length: 50 }, (_, i) => ({ subject: "numbers", data: String(i) })));
    const seen: string[] = [];
    let inFlight = 0;
    await consumeFirst(
      nc,
      "NUMBERS",
      30,
      async (data) => {
        inFlight++;
        expect(inFlight).toBe(1);
        await new Promise((r) => setTimeout(r, 1));
        seen.push(new TextDecoder().decode(data));
        inFlight--;
      },
      8,
    );
    expect(seen).toEqual(Array.from({ length: 30 }, (_, i) => String(i)));
  });
});

describe("the JSON bucket", () => {
  it("reads back what was put, undefined for a missing key, and lists every entry", async () => {
    await using server = await natsServer();
    await using nc = await connect(server);
    const kv = await openJsonBucket(nc, "naive_test");
    expect(await kv.get("a")).toBeUndefined();
    await kv.put("a", { n: 1 });
    await kv.put("b", [1, 2]);
    await kv.put("a", { n: 2 });
    expect(await kv.get("a")).toEqual({ n: 2 });
    expect((await kv.entries()).sort(([x], [y]) => (x < y ? -1 : 1))).toEqual([
      ["a", { n: 2 }],
      ["b", [1, 2]],
    ]);
  });
});
