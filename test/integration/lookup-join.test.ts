/**
 * A lookup join against a NATS KV bucket on a real nats-server (design note by): orders are
 * enriched with the user's level from a `users` bucket that is changed while the job runs, and
 * every result carries the value the bucket held when the order was processed; a key without a
 * value is padded by the left join; a value that is not JSON and a bucket that does not exist
 * dead-letter the records that need them while the job keeps running; the worker user `eddy auth
 * render` writes for the job may read the bucket, not write it, and read no other.
 */
import { describe, expect, it } from "vitest";
import { Kvm } from "@nats-io/kv";
import { startLocalJob } from "../../runtime/dev/local-job.ts";
import { buildJobGraph } from "../../runtime/core/job-graph.ts";
import { jobAccessOf } from "../../runtime/deploy/auth.ts";
import { passwordVariable, renderAuthConfig } from "../../runtime/nats/auth-config.ts";
import { connectNats } from "../../runtime/nats/connection.ts";
import { JetStreamTransport } from "../../runtime/nats/transport.ts";
import { ensureStream, publishAll, readAll } from "../../runtime/nats/streams.ts";
import { defineFunction, definePipeline, defineSink, fromFunction, fromStream, lookupJoin } from "../../runtime/sdk/index.ts";
import { connect, natsServer } from "../support/nats-server.ts";
import { waitFor } from "../support/wait.ts";

interface Order {
  readonly id: string;
  readonly user: string;
}
interface Enriched {
  readonly id: string;
  readonly level: string | null;
}

const patiently = { timeoutMs: 60_000, intervalMs: 100 };

function pipeline(name: string, ttlMs: number) {
  return definePipeline({
    name,
    functions: [
      defineFunction<Order, Order>({ name: "orders", input: fromStream("ORDERS", { subject: `orders.${name}` }), process: (ctx, o) => ctx.emit(o) }),
      lookupJoin<Order, { level: string }, Enriched>({
        name: "enrich",
        input: fromFunction("orders"),
        bucket: "users",
        key: (o) => o.user,
        type: "left",
        output: (o, u) => ({ id: o.id, level: u === null ? null : u.level }),
        cache: { maxEntries: 1_000, ttlMs },
      }),
      defineSink({ name: "out", input: fromFunction("enrich"), subject: `enriched.${name}` }),
    ],
  });
}

const text = new TextDecoder();
const orders = (job: string, ...pairs: Array<[string, string]>) => pairs.map(([id, user]) => ({ subject: `orders.${job}`, data: JSON.stringify({ id, user }) }));

describe("lookup join on a real nats-server", () => {
  it("a job's worker user reads its lookup bucket with the permissions eddy auth render grants, and may not write it or read another", async () => {
    const passwords: Record<string, string> = {};
    for (const role of ["admin", "supervisor", "worker"] as const) passwords[passwordVariable(role)] = `${role}-secret`;
    for (const role of ["worker", "query", "producer"] as const) passwords[passwordVariable(role, "shop")] = `${role}-shop-secret`;
    const authorization = renderAuthConfig([jobAccessOf(buildJobGraph(pipeline("shop", 0)))]);
    await using server = await natsServer({ configText: [...Object.entries(passwords).map(([k, v]) => `${k}: "${v}"`), authorization].join("\n") });
    const as = (user: string, password: string) => connectNats(server.url.replace("nats://", `nats://${user}:${password}@`), `lookup-acl-${user}`, {});
    const admin = await as("eddy-admin", "admin-secret");
    const worker = await as("eddy-worker-shop", "worker-shop-secret");
    try {
      const users = await new Kvm(admin).create("users");
      await users.put("ann", JSON.stringify({ level: "gold" }));
      await (await new Kvm(admin).create("secrets")).put("k", "v");
      const transport = new JetStreamTransport(worker);
      const got = await transport.readLookup("users", ["ann", "bob"]);
      expect(got?.map((v) => (v === undefined ? undefined : text.decode(v)))).toEqual([JSON.stringify({ level: "gold" }), undefined]);
      // Refused, and not mistaken for a bucket that does not exist.
      await expect(transport.readLookup("secrets", ["k"])).rejects.toThrow(/permission/i);
      await expect((await new Kvm(worker).open("users")).put("ann", "{}")).rejects.toThrow(/permission/i);
    } finally {
      await worker.close();
      await admin.close();
    }
  }, 120_000);

  it("joins each order with the level its user had in the bucket when the order was processed, as the bucket changes", async () => {
    await using server = await natsServer();
    const nc = await connect(server);
    try {
      await ensureStream(nc, "ORDERS", ["orders.>"]);
      await ensureStream(nc, "ENRICHED", ["enriched.>"]);
      const users = await new Kvm(nc).create("users");
      await users.put("ann", JSON.stringify({ level: "gold" }));
      await users.put("bob", JSON.stringify({ level: "silver" }));
      const job = await startLocalJob(nc, pipeline("shop", 0), { checkpointIntervalMs: 200 });
      const results = async () => (await readAll(nc, "ENRICHED", "enriched.shop")).map((m) => JSON.parse(text.decode(m.data)) as Enriched);
      const dead = async () => (await readAll(nc, "EDDY_shop_DLQ")).map((m) => ({ fn: m.headers["Eddy-Function"], reason: m.headers["Eddy-Reason"] }));
      try {
        await publishAll(nc, orders("shop", ["o1", "ann"], ["o2", "bob"], ["o3", "cid"]));
        await waitFor("the first orders joined", async () => (await results()).length === 3, patiently);
        // The dimension table changes while the job runs: an update, a delete, a new key, a bad value.
        await users.put("ann", JSON.stringify({ level: "platinum" }));
        await users.delete("bob");
        await users.put("cid", JSON.stringify({ level: "new" }));
        await users.put("dan", "level=gold");
        await publishAll(nc, orders("shop", ["o4", "ann"], ["o5", "bob"], ["o6", "cid"], ["o7", "dan"], ["o8", "ann"]));
        await waitFor("the later orders joined", async () => (await results()).length === 7, patiently);
        await waitFor("the bad value dead-lettered", async () => (await dead()).length === 1, patiently);
      } finally {
        await job.stop();
      }
      // Earlier results stay as they were (the output is append-only); later ones see the change.
      expect(await results()).toEqual([
        { id: "o1", level: "gold" },
        { id: "o2", level: "silver" },
        { id: "o3", level: null },
        { id: "o4", level: "platinum" },
        { id: "o5", level: null },
        { id: "o6", level: "new" },
        { id: "o8", level: "platinum" },
      ]);
      expect(await dead()).toEqual([{ fn: "enrich", reason: expect.stringContaining('lookup: the value of key "dan" in KV bucket users is not JSON') }]);
    } finally {
      await nc.close();
    }
  }, 120_000);

  it("dead-letters orders while the bucket does not exist and joins them once it does, without stopping the job", async () => {
    await using server = await natsServer();
    const nc = await connect(server);
    try {
      await ensureStream(nc, "ORDERS", ["orders.>"]);
      await ensureStream(nc, "ENRICHED", ["enriched.>"]);
      const job = await startLocalJob(nc, pipeline("late", 60_000), { checkpointIntervalMs: 200 });
      const results = async () => (await readAll(nc, "ENRICHED", "enriched.late")).map((m) => JSON.parse(text.decode(m.data)) as Enriched);
      const dead = async () => (await readAll(nc, "EDDY_late_DLQ")).map((m) => m.headers["Eddy-Reason"]);
      try {
        await publishAll(nc, orders("late", ["o1", "ann"], ["o2", "bob"]));
        await waitFor("both dead-lettered", async () => (await dead()).length === 2, patiently);
        const users = await new Kvm(nc).create("users");
        await users.put("ann", JSON.stringify({ level: "gold" }));
        await publishAll(nc, orders("late", ["o3", "ann"], ["o4", "bob"]));
        await waitFor("joined once the bucket exists", async () => (await results()).length === 2, patiently);
      } finally {
        await job.stop();
      }
      expect(await dead()).toEqual([expect.stringContaining("KV bucket users does not exist"), expect.stringContaining("KV bucket users does not exist")]);
      expect(await results()).toEqual([
        { id: "o3", level: "gold" },
        { id: "o4", level: null },
      ]);
    } finally {
      await nc.close();
    }
  }, 120_000);
});
