/**
 * Reads through a consumer that must see everything a replicated stream acknowledged — a listing
 * of state, a count of pending input, a stream read back — are served by the stream's leader.
 * nats-server 2.9.10 places such a consumer on a random server of the stream; here one follower
 * is frozen (SIGSTOP) while keys are written, so it is behind and does not answer: a consumer
 * placed there would time out or list old values (design note bo). Five rounds of reads must all
 * see the leader's data.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { jetstreamManager, type JetStreamManager } from "@nats-io/jetstream";
import { Kvm } from "@nats-io/kv";
import type { NatsConnection } from "@nats-io/transport-node";
import { JetStreamTransport } from "../../runtime/nats/transport.ts";
import { repeatUnacknowledged } from "../../runtime/nats/kv-cas.ts";
import { readAll } from "../../runtime/nats/streams.ts";
import { connect, natsCluster, type TestNatsCluster } from "../support/nats-server.ts";

let cluster: TestNatsCluster;
let nc: NatsConnection;
let jsm: JetStreamManager;
let frozen: number | undefined;

beforeAll(async () => {
  cluster = await natsCluster();
  nc = await connect(cluster);
  jsm = await jetstreamManager(nc);
}, 60_000);

afterAll(async () => {
  if (frozen !== undefined) process.kill(frozen, "SIGCONT");
  await nc?.close();
  await cluster?.stop();
});

/** SIGSTOPs a server of `stream` that does not lead it and that this client is not connected to. */
async function freezeFollowerOf(stream: string): Promise<void> {
  const leader = (await repeatUnacknowledged(() => jsm.streams.info(stream))).cluster?.leader;
  const index = cluster.servers.findIndex((_, i) => cluster.serverName(i) !== leader && cluster.serverName(i) !== nc.info?.server_name);
  frozen = cluster.servers[index]!.pid;
  process.kill(frozen, "SIGSTOP");
}

describe("reads that must see everything acknowledged, on a 3-node cluster with a follower behind", () => {
  it("list a bucket's latest values, count pending messages and read a stream back from the stream's leader", async () => {
    const kv = await new Kvm(nc).create("leaderreads", { history: 1, replicas: 3 });
    for (let k = 0; k < 20; k++) await kv.put(`0.k${k}`, "old");
    await freezeFollowerOf("KV_leaderreads");
    // Sequences 21 to 40, acknowledged by the leader and the other follower; the frozen one has only "old".
    for (let k = 0; k < 20; k++) await repeatUnacknowledged(() => kv.put(`0.k${k}`, "new"));

    const transport = new JetStreamTransport(nc);
    const text = (d: Uint8Array) => new TextDecoder().decode(d);
    for (let read = 0; read < 5; read++) {
      expect((await transport.listState("leaderreads", "0.>")).map((e) => text(e.value))).toEqual(Array.from({ length: 20 }, () => "new"));
      expect(await transport.countPending("KV_leaderreads", "$KV.leaderreads.>", 21)).toBe(20);
      expect((await readAll(nc, "KV_leaderreads")).map((m) => text(m.data))).toEqual(Array.from({ length: 20 }, () => "new"));
    }
  }, 240_000);
});
