/**
 * The actors' input reader against a real nats-server (runtime/nats/positioned-reader.ts, design
 * note bn): from a position it delivers each later message of its subject once, in order, also
 * when its consumer is deleted or replaced under it by one started elsewhere; it asks for more
 * once a quarter of a pull is left (not after every other message), and only as it is read; spill ranges read
 * through it end at their last sequence or at the end of what is stored; a closed connection
 * ends the read, and a missing stream fails the open; `readAll` reads through it too. The cluster
 * failover of the same reader is test/integration/input-failover.test.ts.
 */
import { describe, expect, it } from "vitest";
import { AckPolicy, DeliverPolicy, jetstream, jetstreamManager } from "@nats-io/jetstream";
import type { InputMessage, InputReader } from "../../runtime/actor/ports.ts";
import { JetStreamTransport } from "../../runtime/nats/transport.ts";
import { openPositionedReader, type PositionedReader } from "../../runtime/nats/positioned-reader.ts";
import { ensureStream, readAll } from "../../runtime/nats/streams.ts";
import { rejectedCounts } from "../../runtime/metrics/rejections.ts";
import { connect, natsServer } from "../support/nats-server.ts";
import { tcpProxy } from "../support/tcp-proxy.ts";
import { waitFor } from "../support/wait.ts";

const text = (d: Uint8Array) => new TextDecoder().decode(d);

/** Publishes `count` messages alternating between `<prefix>.0` and `<prefix>.1`, bodies "m<i>". */
async function publish(t: JetStreamTransport, prefix: string, from: number, count: number): Promise<void> {
  for (let i = from; i < from + count; i++) await t.publish(`${prefix}.${i % 2}`, new TextEncoder().encode(`m${i}`));
}

/** Collects what `reader` delivers in the background. */
function collect(reader: InputReader): { seen: InputMessage[]; done: Promise<void> } {
  const seen: InputMessage[] = [];
  const done = (async () => {
    for await (const m of reader) seen.push(m);
  })();
  return { seen, done };
}

/** Sequences of partition 1 (odd bodies: message i is at sequence i + 1) from `first` through `last`. */
const partitionOne = (first: number, last: number) => Array.from({ length: last - first + 1 }, (_, i) => first + i).filter((s) => s % 2 === 0);

describe("an input reader", () => {
  it("delivers its subject from its position on, then what is appended later", async () => {
    await using server = await natsServer();
    await using nc = await connect(server);
    await ensureStream(nc, "IN", ["in.*"]);
    const t = new JetStreamTransport(nc);
    await publish(t, "in", 0, 400);
    const reader = await t.openInput("IN", "in.1", 202);
    const { seen, done } = collect(reader);
    await publish(t, "in", 400, 100);
    await waitFor("the appended messages", () => seen.length >= 150);
    await reader.stop();
    await done;
    expect(seen.map((m) => m.seq)).toEqual(partitionOne(202, 500));
    expect(seen.map((m) => text(m.data))).toEqual(partitionOne(202, 500).map((s) => `m${s - 1}`));
    expect(seen.at(-1)!.pending).toBe(0);
  });

  it("reading large messages (8 per pull), asks again once a quarter of a pull is left, not after every two messages", async () => {
    await using server = await natsServer();
    await using nc = await connect(server);
    await using watcher = await connect(server);
    await ensureStream(nc, "BIG", ["big.*"]);
    const t = new JetStreamTransport(nc);
    await publish(t, "big", 0, 480);
    // Pull requests are messages to the JetStream API: a second connection sees each one.
    let pulls = 0;
    const sub = watcher.subscribe("$JS.API.CONSUMER.MSG.NEXT.BIG.>", {
      callback: () => {
        pulls++;
      },
    });
    await watcher.flush();
    const reader = await t.openInput("BIG", "big.0", 1, { largeMessages: true });
    const { seen, done } = collect(reader);
    await waitFor("every message of big.0", () => seen.length >= 240);
    await reader.stop();
    await done;
    sub.unsubscribe();
    expect(seen.map((m) => m.seq)).toEqual(Array.from({ length: 240 }, (_, i) => 2 * i + 1));
    // 240 messages, six per pull: about 40 (nats.js's default of a pull per two messages: 120).
    expect(pulls).toBeGreaterThan(0);
    expect(pulls).toBeLessThanOrEqual(60);
  });

  it("asks for no more while nobody reads: one pull's worth waits in memory, the rest on the server", async () => {
    await using server = await natsServer();
    await using nc = await connect(server);
    await ensureStream(nc, "IN", ["in.*"]);
    const jsm = await jetstreamManager(nc);
    const t = new JetStreamTransport(nc);
    await publish(t, "in", 0, 400);
    const reader = await openPositionedReader(jetstream(nc), jsm, "IN", "in.1", 1, { batch: 16 });
    const iterator = reader[Symbol.asyncIterator]();
    const seen: number[] = [];
    for (let i = 0; i < 3; i++) seen.push((await iterator.next()).value!.seq);
    // A busy actor: it takes nothing for a while. The pull nats.js made for more once a quarter of
    // the first was left waits behind the messages received before it (design note cr).
    await new Promise((resolve) => setTimeout(resolve, 1000));
    const info = await jsm.consumers.info("IN", reader.consumer!);
    expect(info.delivered.consumer_seq).toBe(16);
    for (let i = 3; i < 200; i++) seen.push((await iterator.next()).value!.seq);
    await reader.stop();
    expect(seen).toEqual(partitionOne(1, 400));
  });

  it("goes on at its position when its consumer is deleted under it", async () => {
    await using server = await natsServer();
    await using nc = await connect(server);
    await ensureStream(nc, "IN", ["in.*"]);
    const jsm = await jetstreamManager(nc);
    const t = new JetStreamTransport(nc);
    await publish(t, "in", 0, 200);
    const reader = (await t.openInput("IN", "in.1", 2)) as PositionedReader;
    const { seen, done } = collect(reader);
    await waitFor("the first messages", () => seen.length >= 100);
    for (let round = 0; round < 3; round++) {
      const name = reader.consumer!;
      await jsm.consumers.delete("IN", name);
      await publish(t, "in", 200 + round * 100, 100);
      await waitFor(`the messages after deletion ${round + 1}`, () => seen.length >= 150 + round * 50, { timeoutMs: 60_000 });
      expect(reader.consumer).not.toBe(name);
    }
    await reader.stop();
    await done;
    expect(seen.map((m) => m.seq)).toEqual(partitionOne(2, 500));
    expect(reader.stats.resumes).toBeGreaterThanOrEqual(3);
  });

  it("drops what a consumer started before its position repeats, counts it, and reads on exactly", async () => {
    await using server = await natsServer();
    await using nc = await connect(server);
    await ensureStream(nc, "IN", ["in.*"]);
    const jsm = await jetstreamManager(nc);
    const t = new JetStreamTransport(nc);
    await publish(t, "in", 0, 400);
    const reader = (await t.openInput("IN", "in.1", 202)) as PositionedReader;
    const iterator = reader[Symbol.asyncIterator]();
    const seen: number[] = [];
    const take = async (n: number) => {
      for (let i = 0; i < n; i++) seen.push((await iterator.next()).value!.seq);
    };
    await take(100);
    // A busy actor: it reads nothing until the pull it had open expires on the server.
    const name = reader.consumer!;
    await waitFor("no pull waiting on the reader's consumer", async () => (await jsm.consumers.info("IN", name)).num_waiting === 0, { timeoutMs: 60_000, intervalMs: 250 });
    // Meanwhile its consumer is replaced, under the same name, by one that starts at the stream's
    // first message: what a replica that looks empty does with any start (design note bn).
    await jsm.consumers.delete("IN", name);
    await jsm.consumers.add("IN", { name, filter_subject: "in.1", deliver_policy: DeliverPolicy.StartSequence, opt_start_seq: 1, ack_policy: AckPolicy.None, mem_storage: true });
    const before = rejectedCounts().filter((c) => c.kind === "input").reduce((n, c) => n + c.count, 0);
    await publish(t, "in", 400, 100);
    await take(50);
    await reader.stop();
    expect(seen).toEqual(partitionOne(202, 500));
    // The impostor's first message was dropped, counted, and the reader made its own consumer.
    expect(reader.stats.dropped).toBe(1);
    expect(reader.stats.resumes).toBe(1);
    expect(rejectedCounts().filter((c) => c.kind === "input").reduce((n, c) => n + c.count, 0) - before).toBe(1);
    await jsm.consumers.delete("IN", name).catch(() => false);
  }, 120_000);

  it("reads again what its consumer sent into a connection that broke, though nothing follows it", async () => {
    // The consumer has no acks: what it sent into a broken connection is never sent again, and
    // with no later message to show the gap only its heartbeats tell how far it got.
    await using server = await natsServer();
    await using proxy = await tcpProxy(server);
    await using nc = await connect(proxy);
    await using admin = await connect(server);
    await ensureStream(admin, "IN", ["in.*"]);
    const jsm = await jetstreamManager(admin);
    const reader = (await new JetStreamTransport(nc).openInput("IN", "in.0", 1)) as PositionedReader;
    const seen: number[] = [];
    const done = (async () => {
      for await (const m of reader) seen.push(m.seq);
    })();
    proxy.hold();
    const publisher = new JetStreamTransport(admin);
    for (let i = 0; i < 300; i++) await publisher.publish("in.0", new TextEncoder().encode(`m${i}`));
    await waitFor("the consumer to send all 300 into the held connection", async () => (await jsm.consumers.info("IN", reader.consumer!)).delivered.consumer_seq === 300);
    expect(seen).toEqual([]);
    proxy.cut();
    await waitFor("the 300 messages lost with the connection", () => seen.length === 300, { timeoutMs: 20_000 });
    for (let i = 300; i < 400; i++) await publisher.publish("in.0", new TextEncoder().encode(`m${i}`));
    await waitFor("the messages after them", () => seen.length === 400);
    await reader.stop();
    await done;
    expect(seen).toEqual(Array.from({ length: 400 }, (_, i) => i + 1));
    expect(reader.stats.lostInFlight).toBeGreaterThanOrEqual(1);
  }, 60_000);

  it("ends its read when the connection closes, and fails to open on a stream that does not exist", async () => {
    await using server = await natsServer();
    const nc = await connect(server);
    await ensureStream(nc, "IN", ["in.*"]);
    const t = new JetStreamTransport(nc);
    await publish(t, "in", 0, 10);
    const reader = await t.openInput("IN", "in.1", 1);
    const { seen, done } = collect(reader);
    await waitFor("the messages", () => seen.length === 5);
    await expect(t.openInput("NOPE", "nope.1", 1)).rejects.toThrow(/stream not found/);
    const closedAt = Date.now();
    await nc.close();
    await done;
    expect(Date.now() - closedAt).toBeLessThan(10_000);
  });
});

describe("a spill range read", () => {
  it("delivers the range's messages of its subject and ends at the range's end or at what is stored", async () => {
    await using server = await natsServer();
    await using nc = await connect(server);
    await ensureStream(nc, "SPILL", ["spill.*"]);
    const t = new JetStreamTransport(nc);
    await publish(t, "spill", 0, 100);
    const read = async (first: number, last: number) => {
      const seqs: number[] = [];
      for await (const m of t.readRange("SPILL", "spill.1", first, last)) seqs.push(m.seq);
      return seqs;
    };
    expect(await read(10, 20)).toEqual(partitionOne(10, 20));
    expect(await read(11, 11)).toEqual([]);
    // A range past what is stored ends with the stream, without waiting for more.
    expect(await read(90, 500)).toEqual(partitionOne(90, 100));
    expect(await read(200, 300)).toEqual([]);
    // Purged messages are simply absent.
    await t.purgeBelow("SPILL", "spill.1", 50);
    expect(await read(40, 60)).toEqual(partitionOne(50, 60));
  });
});

describe("readAll", () => {
  it("reads what a stream holds now (a subject's messages with a filter), headers included, and nothing of an empty stream", async () => {
    await using server = await natsServer();
    await using nc = await connect(server);
    await ensureStream(nc, "ALL", ["all.*"]);
    const t = new JetStreamTransport(nc);
    expect(await readAll(nc, "ALL")).toEqual([]);
    await publish(t, "all", 0, 10);
    await t.publish("all.1", new TextEncoder().encode("h"), { "Eddy-Reason": "x" });
    const all = await readAll(nc, "ALL");
    expect(all.map((m) => m.seq)).toEqual(Array.from({ length: 11 }, (_, i) => i + 1));
    expect(all.at(-1)!.headers["Eddy-Reason"]).toBe("x");
    expect((await readAll(nc, "ALL", "all.0")).map((m) => text(m.data))).toEqual(["m0", "m2", "m4", "m6", "m8"]);
    await t.purgeBelow("ALL", "all.0", 100);
    expect(await readAll(nc, "ALL", "all.0")).toEqual([]);
    expect((await readAll(nc, "ALL")).map((m) => m.subject)).toEqual([...Array(5).fill("all.1"), "all.1"]);
  });
});
