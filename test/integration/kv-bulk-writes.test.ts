/**
 * Materialization's KV writes on a real nats-server: `JetStreamTransport.writeState` publishes
 * puts and deletes in bulk with one inbox for all acknowledgements (runtime/nats/acked-publisher.ts)
 * instead of a nats.js request per key, and what KV holds afterwards is what `kv.put` and
 * `kv.delete` would have left. A publish nothing stores, one the stream refuses and one nothing
 * answers fail as `js.publish` would.
 */
import { describe, expect, it } from "vitest";
import { Kvm } from "@nats-io/kv";
import { AckedPublisher, PublishAckTimeoutError, PublishRejectedError } from "../../runtime/nats/acked-publisher.ts";
import { ensureStream } from "../../runtime/nats/streams.ts";
import { JetStreamTransport } from "../../runtime/nats/transport.ts";
import { connect, natsServer } from "../support/nats-server.ts";

const v = (s: string) => new TextEncoder().encode(s);

describe("bulk KV writes", () => {
  it("puts and deletes thousands of keys, more than the window in flight, as kv.put and kv.delete would", async () => {
    await using server = await natsServer();
    await using nc = await connect(server);
    const kv = await new Kvm(nc).create("bulk", { history: 1 });
    await kv.put("0.s.gone", v("old"));
    const transport = new JetStreamTransport(nc);
    const puts = Array.from({ length: 3000 }, (_, i) => ({ key: `0.s.k${i}`, value: v(`v${i}`) }));
    await transport.writeState("bulk", puts, ["0.s.gone", "0.s.never"]);
    expect((await kv.get("0.s.k0"))?.string()).toBe("v0");
    expect((await kv.get("0.s.k2999"))?.string()).toBe("v2999");
    expect((await kv.status()).values).toBe(3000 + 2);
    const gone = await kv.get("0.s.gone");
    expect(gone?.operation).toBe("DEL");
    const keys: string[] = [];
    for await (const k of await kv.keys()) keys.push(k);
    expect(keys).toHaveLength(3000);
    expect(keys).not.toContain("0.s.gone");
  });

  it("fails a write whose key KV does not accept, before publishing it", async () => {
    await using server = await natsServer();
    await using nc = await connect(server);
    await new Kvm(nc).create("bulk", { history: 1 });
    await expect(new JetStreamTransport(nc).writeState("bulk", [{ key: "bad key", value: v("x") }], [])).rejects.toThrow(/invalid key/i);
  });

  it("fails a publish no stream captures, one the stream refuses and one nothing acknowledges", async () => {
    await using server = await natsServer();
    await using nc = await connect(server);
    await ensureStream(nc, "S", ["s.>"]);
    const publisher = new AckedPublisher(nc, 300);
    try {
      await publisher.publishAll([{ subject: "s.a", data: v("1") }], 8);
      await expect(publisher.publishAll([{ subject: "nowhere.a", data: v("1") }], 8)).rejects.toThrow(PublishRejectedError);
      const h = (await import("@nats-io/transport-node")).headers();
      h.set("Nats-Expected-Last-Subject-Sequence", "999");
      await expect(publisher.publish({ subject: "s.a", data: v("2"), headers: h })).rejects.toThrow(/wrong last sequence/i);
      // A core subscriber that never answers: the request has a responder but no acknowledgement.
      const silent = nc.subscribe("silent.a");
      await expect(publisher.publish({ subject: "silent.a", data: v("3") })).rejects.toThrow(PublishAckTimeoutError);
      silent.unsubscribe();
      // Later publishes are not affected by the failures.
      await publisher.publishAll(Array.from({ length: 100 }, (_, i) => ({ subject: `s.b${i}`, data: v(String(i)) })), 16);
    } finally {
      publisher.close();
    }
  });
});
