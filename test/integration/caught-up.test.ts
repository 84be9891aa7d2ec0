/**
 * Reading a consumer until it has caught up (runtime/nats/caught-up.ts), on a real nats-server.
 * A "last per subject" listing of a KV bucket on nats-server 2.9 counts messages as pending that
 * then leave the stream: a key written after the listing started but before its message was
 * delivered comes with "1 more pending", and nothing more ever comes. Waiting for "0 pending"
 * hung a state cache's read of a map for good (design note cp); the reader now asks the consumer
 * after a silence. The same consumers repeat a subject, and mostly skip the written one, when a
 * listed key is written right after the listing starts, which is why a KV listing that caught up
 * only after a silence is read again.
 */
import { describe, expect, it } from "vitest";
import { AckPolicy, DeliverPolicy, jetstream, jetstreamManager, type Consumer, type JsMsg } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/transport-node";
import { Kvm } from "@nats-io/kv";
import { untilCaughtUp, type CatchUpEnd } from "../../runtime/nats/caught-up.ts";
import { JetStreamTransport } from "../../runtime/nats/transport.ts";
import { connect, natsServer } from "../support/nats-server.ts";

const keyOf = (m: JsMsg) => m.subject.split(".").pop()!;

/**
 * A KV bucket `t` (one message per key) holding `m.<k>` for each of `keys`, and a "last per
 * subject" listing of `m.*` created on it, as the transport's listings are.
 */
async function listing(nc: NatsConnection, keys: readonly string[]) {
  const js = jetstream(nc);
  const jsm = await jetstreamManager(nc);
  const kv = await new Kvm(js).create("t", { history: 1 });
  for (const k of keys) await kv.put(`m.${k}`, "1");
  const ci = await jsm.consumers.add("KV_t", { filter_subject: "$KV.t.m.*", deliver_policy: DeliverPolicy.LastPerSubject, ack_policy: AckPolicy.None, mem_storage: true });
  return { kv, created: ci.num_pending, consumer: await js.consumers.get("KV_t", ci.name) };
}

/** What `untilCaughtUp` reads of `consumer` (key and pending count of each message), and why it ended. */
async function readAll(consumer: Consumer, idleMs: number) {
  const messages = await consumer.consume({ max_messages: 1024, expires: 10_000 });
  const end: { reason?: CatchUpEnd } = {};
  const read: string[] = [];
  for await (const m of untilCaughtUp(consumer, messages, end, { idleMs })) read.push(`${keyOf(m)} ${m.info.pending}`);
  messages.stop();
  return { read, end: end.reason };
}

describe("reading a consumer until it has caught up", () => {
  it("ends a listing whose last delivered message still counted one that left the stream; a quiet listing of the same keys is whole", async () => {
    await using server = await natsServer();
    const nc = await connect(server);
    try {
      const { kv, created, consumer } = await listing(nc, ["a", "b"]);
      expect(created).toBe(2);
      const seen: string[] = [];
      for await (const m of await consumer.fetch({ max_messages: 1, expires: 2000 })) seen.push(`${keyOf(m)} ${m.info.pending}`);
      expect(seen).toEqual(["a 1"]);
      // b, counted and not delivered yet, is written.
      await kv.put("m.b", "2");
      // b's new value says one more is pending, and none comes: the consumer says it has caught up.
      // (Mostly. On a loaded machine the server sometimes delivers b with nothing pending, and the
      // reader ends at that message. Either way it ends, having read b; the unit tests cover both.)
      expect([
        { read: ["b 1"], end: "caught-up-when-idle" },
        { read: ["b 0"], end: "caught-up" },
      ]).toContainEqual(await readAll(consumer, 200));
      const info = await consumer.info(false);
      expect([info.num_pending, info.delivered.consumer_seq]).toEqual([0, 2]);

      // The transport's listing of the same keys, quiet now, is whole.
      const listed = await new JetStreamTransport(nc).listState("t", "m.*");
      expect(listed.map((e) => [e.key, new TextDecoder().decode(e.value)])).toEqual([
        ["m.a", "1"],
        ["m.b", "2"],
      ]);
    } finally {
      await nc.close();
    }
  });

  it("ends at the message that says nothing more is pending, as before", async () => {
    await using server = await natsServer();
    const nc = await connect(server);
    try {
      const { consumer } = await listing(nc, ["a", "b", "c"]);
      expect(await readAll(consumer, 1000)).toEqual({ read: ["a 2", "b 1", "c 0"], end: "caught-up" });
    } finally {
      await nc.close();
    }
  });

  it("shows why a listing that caught up after a silence is not trusted: nats-server 2.9 repeats a key when a listed one is written right after the listing started", async () => {
    await using server = await natsServer();
    const nc = await connect(server);
    try {
      const { kv, consumer } = await listing(nc, ["a", "b"]);
      await kv.put("m.a", "2");
      // b comes twice (a listing reads again then: listingStep), and a's new value mostly never
      // (seen in most runs; when it does come, it comes last).
      const keys = (await readAll(consumer, 200)).read.map((r) => r.split(" ")[0]);
      expect(keys.slice(0, 2)).toEqual(["b", "b"]);
    } finally {
      await nc.close();
    }
  });
});
