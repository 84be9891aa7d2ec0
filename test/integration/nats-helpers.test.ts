/**
 * Specification of the small runtime/nats helpers that runtime modules outside runtime/nats call
 * instead of the NATS client, against a real nats-server: the leader bucket and its lease TTL,
 * the worker's view of the control buckets and heartbeat removal, handing a stream's first
 * messages to a function, and the plain JSON bucket of the benchmark baseline.
 */
import { describe, expect, it } from "vitest";
import { JOBS_BUCKET, LEADER_KEY, WORKERS_BUCKET } from "../../runtime/core/protocol.ts";
import { openControlBuckets, removeHeartbeat } from "../../runtime/nats/control-store.ts";
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
