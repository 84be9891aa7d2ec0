/**
 * What eddy's NATS clients do while a 3-node JetStream cluster loses the leader of a stream
 * (design note bl): the server leading the stream is SIGKILLed mid-work, the others elect a new
 * leader, and then
 * - pipelined publishes left unacknowledged are repeated, in order and stored once each (or the
 *   publisher fails, for the job to recover, when a repeat could not keep the order);
 * - a listing of a state bucket holds its newest entries (design note bn);
 * - compare-and-set writes (the supervisors' lease, the checkpoint commit record) succeed across
 *   the election, and a competing writer is still refused.
 * One cluster serves the file; each test restarts the server it killed.
 */
import { describe, expect, it } from "vitest";
import { Kvm } from "@nats-io/kv";
import { JetStreamTransport } from "../../runtime/nats/transport.ts";
import { repeatUnacknowledged } from "../../runtime/nats/kv-cas.ts";
import { Publisher } from "../../runtime/actor/publisher.ts";
import { ensureStream, publishAll, readAll } from "../../runtime/nats/streams.ts";
import { openLeaderBucket } from "../../runtime/nats/leader-bucket.ts";
import { ensureControlPlane } from "../../runtime/nats/topology.ts";
import { ensureControlStores, writeJson } from "../../runtime/nats/control-store.ts";
import { JOBS_BUCKET, LEADER_BUCKET } from "../../runtime/core/protocol.ts";
import { sharedCluster } from "../support/nats-server.ts";
import { waitFor } from "../support/wait.ts";

const shared = sharedCluster();

/** SIGKILLs the server leading `stream`; returns its name and when it died. */
async function killLeaderOf(stream: string): Promise<{ name: string; index: number; at: number }> {
  const leader = (await repeatUnacknowledged(() => shared.jsm.streams.info(stream))).cluster?.leader;
  const index = shared.cluster.servers.findIndex((_, i) => shared.cluster.serverName(i) === leader);
  expect(index, `leader of ${stream}: ${leader}`).toBeGreaterThanOrEqual(0);
  await shared.cluster.servers[index]!.kill();
  return { name: leader!, index, at: Date.now() };
}

const text = (d: Uint8Array) => new TextDecoder().decode(d);

describe("a 3-node cluster losing a stream's leader", () => {
  it("gives what eddy creates three replicas", async () => {
    await ensureStream(shared.nc, "FAILOVER_PUB", ["failover.pub"]);
    const info = await shared.jsm.streams.info("FAILOVER_PUB");
    expect(info.config.num_replicas).toBe(3);
    expect(info.cluster?.replicas).toHaveLength(2);
  });

  it("repeats the publishes it did not acknowledge, in order and without duplicates", async () => {
    await repeatUnacknowledged(() => ensureStream(shared.nc, "FAILOVER_PUB", ["failover.pub"]));
    const transport = new JetStreamTransport(shared.nc);
    const retries: number[] = [];
    const publisher = new Publisher(transport, 256, { onRetry: (n) => retries.push(n) });
    const total = 3000;
    let killed: { name: string; index: number; at: number } | undefined;
    for (let i = 0; i < total; i++) {
      await publisher.capacity();
      publisher.publish("failover.pub", new TextEncoder().encode(String(i)));
      if (i === 1000) killed = await killLeaderOf("FAILOVER_PUB");
    }
    // Either every publish is stored once, in order, or the publisher saw that a repeat landed
    // after a later publish (which reached the new leader first) and failed, for the job to recover
    // from its checkpoint in a new generation; never a silent duplicate or reordering.
    const drained = await publisher.drain().then(() => undefined, (e: unknown) => e as Error);
    const stalledMs = Date.now() - killed!.at;
    if (drained !== undefined) {
      expect(drained.message).toMatch(/repeated after a lost acknowledgement was stored after later ones/);
      console.log(`publishes: leader ${killed!.name} killed; a repeat would have been out of order, the publisher failed (${stalledMs} ms after the kill)`);
      await shared.restore(killed!.index, "FAILOVER_PUB", 30_000);
      return;
    }
    const stored = (await repeatUnacknowledged(() => readAll(shared.nc, "FAILOVER_PUB"))).map((m) => text(m.data));
    expect(stored).toEqual(Array.from({ length: total }, (_, i) => String(i)));
    expect(publisher.repeated, `repeat rounds ${retries.join(",")}`).toBeGreaterThan(0);
    expect((await shared.jsm.streams.info("FAILOVER_PUB")).cluster?.leader).not.toBe(killed!.name);
    console.log(`publishes: leader ${killed!.name} killed; ${publisher.repeated} publishes repeated in ${retries.length} rounds; done ${stalledMs} ms after the kill`);
    await shared.restore(killed!.index, "FAILOVER_PUB", 30_000);
  }, 120_000);

  it("lists a state bucket's newest entries, deleted keys left out, also while the bucket's leader is lost", async () => {
    const transport = new JetStreamTransport(shared.nc);
    await repeatUnacknowledged(() => new Kvm(shared.nc).create("FAILOVER_STATE", { replicas: 3 }));
    const puts = Array.from({ length: 300 }, (_, i) => ({ key: `0.k${i}`, value: new TextEncoder().encode(`v${i}`) }));
    await transport.writeState("FAILOVER_STATE", puts, []);
    await transport.writeState("FAILOVER_STATE", puts.slice(0, 100).map((p) => ({ key: p.key, value: new TextEncoder().encode(`w${p.key}`) })), puts.slice(100, 150).map((p) => p.key));
    const expected = [...puts.slice(0, 100).map((p) => `${p.key}=w${p.key}`), ...puts.slice(150).map((p) => `${p.key}=${text(p.value)}`)].sort();
    const listed = async () => (await transport.listState("FAILOVER_STATE", "0.>")).map((e) => `${e.key}=${text(e.value)}`).sort();
    expect(await listed()).toEqual(expected);
    const killed = await killLeaderOf("KV_FAILOVER_STATE");
    // During the election the listing is repeated until a leader answers; never short, never stale.
    expect(await listed()).toEqual(expected);
    console.log(`listing: done ${Date.now() - killed.at} ms after the bucket's leader was killed`);
    await shared.restore(killed.index, "KV_FAILOVER_STATE", 30_000);
    expect(await listed()).toEqual(expected);
  }, 120_000);

  it("keeps the supervisors' lease and commits checkpoints by compare-and-set across the election", async () => {
    // The cluster may still be settling after the previous test's server came back.
    await repeatUnacknowledged(() => ensureControlPlane(shared.nc));
    // A lease long enough to outlast an election on a loaded machine; a renewal may keep trying
    // while the lease is valid (leader-election.ts).
    const { kv: lease, ttlMs } = await repeatUnacknowledged(() => openLeaderBucket(shared.nc, 20_000));
    expect(ttlMs).toBe(20_000);
    expect((await shared.jsm.streams.info(`KV_${LEADER_BUCKET}`)).config.num_replicas).toBe(3);
    const held = await lease.create("leader", "supervisor-a");
    const stores = await repeatUnacknowledged(() => ensureControlStores(shared.nc));
    const first = await writeJson(stores.jobs, "failover.latest", { id: 1 }, 0);

    const leaseKilled = await killLeaderOf(`KV_${LEADER_BUCKET}`);
    const renewed = await lease.update("leader", "supervisor-a", held, 18_000);
    const leaseMs = Date.now() - leaseKilled.at;
    expect(renewed).toBeGreaterThan(held);
    // A candidate that read the old revision is refused: the lease is still held.
    await expect(lease.update("leader", "supervisor-b", held, 10_000)).rejects.toThrow(/wrong last sequence/);
    const holder = await waitFor("the lease to be read", async () => (await (await new Kvm(shared.nc).open(LEADER_BUCKET)).get("leader"))?.value, { retryErrors: true });
    expect(text(holder)).toBe("supervisor-a");
    await shared.restore(leaseKilled.index, `KV_${LEADER_BUCKET}`, 30_000);

    const jobsKilled = await killLeaderOf(`KV_${JOBS_BUCKET}`);
    const second = await writeJson(stores.jobs, "failover.latest", { id: 2 }, first);
    const commitMs = Date.now() - jobsKilled.at;
    expect(second).toBeGreaterThan(first);
    await expect(writeJson(stores.jobs, "failover.latest", { id: 3 }, first)).rejects.toThrow(/wrong last sequence/);
    const latest = await waitFor("the commit record to be read", async () => (await stores.jobs.get("failover.latest"))?.value, { retryErrors: true });
    expect(JSON.parse(text(latest))).toEqual({ id: 2 });
    console.log(`CAS: lease renewed ${leaseMs} ms, commit written ${commitMs} ms after the bucket's leader was killed`);
    await shared.restore(jobsKilled.index, `KV_${JOBS_BUCKET}`, 30_000);
  }, 120_000);
});
