/**
 * `JetStreamTransport.writeState` against a real nats-server: its puts are plain publishes whose
 * acknowledgements come to one inbox (`AckedPublisher`, design notes bk and bm), so it must still store every
 * entry before it resolves, and fail when the server stores one of them not.
 */
import { describe, expect, it } from "vitest";
import { Kvm } from "@nats-io/kv";
import { JetStreamTransport } from "../../runtime/nats/transport.ts";
import { connect, natsServer } from "../support/nats-server.ts";

describe("writeState", () => {
  it("has every put stored and every delete applied when it resolves", async () => {
    await using server = await natsServer();
    await using nc = await connect(server);
    await new Kvm(nc).create("w", { history: 1 });
    const t = new JetStreamTransport(nc);
    const puts = Array.from({ length: 5000 }, (_, i) => ({ key: `0.n.k${i}`, value: new TextEncoder().encode(`v${i}`) }));
    await t.writeState("w", puts, []);
    const keys = puts.map((p) => p.key);
    expect((await t.getState("w", keys)).map((v) => new TextDecoder().decode(v))).toEqual(puts.map((_, i) => `v${i}`));
    await t.writeState("w", [{ key: "0.n.k0", value: new Uint8Array([1]) }], ["0.n.k1"]);
    expect(await t.getState("w", ["0.n.k0", "0.n.k1", "0.n.k2"])).toEqual([new Uint8Array([1]), undefined, new TextEncoder().encode("v2")]);
  });

  it("fails when the server does not store a put: too large for the bucket, or no bucket at all", async () => {
    await using server = await natsServer();
    await using nc = await connect(server);
    await new Kvm(nc).create("small", { history: 1, maxValueSize: 16 });
    const t = new JetStreamTransport(nc);
    const ok = Array.from({ length: 100 }, (_, i) => ({ key: `0.n.k${i}`, value: new Uint8Array(8) }));
    await expect(t.writeState("small", [...ok, { key: "0.n.big", value: new Uint8Array(64) }], [])).rejects.toThrow(/small: write not stored: .*message size exceeds/);
    await expect(t.writeState("missing", ok, [])).rejects.toThrow(/missing: write not stored/);
  });
});
