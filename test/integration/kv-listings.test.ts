/**
 * `JetStreamTransport.listState` against a real nats-server: a listing is a "last per subject"
 * consumer, which nats-server 2.9 creates by walking every key of the bucket (design note bs), so
 * listings get a long API timeout of their own and fail with an error that names the listing
 * and says why, instead of nats.js's bare "TIMEOUT" after 5 s.
 */
import { describe, expect, it } from "vitest";
import { Kvm } from "@nats-io/kv";
import { JetStreamTransport, ListingTimeoutError, LISTING_TIMEOUT_MS } from "../../runtime/nats/transport.ts";
import { connect, natsServer } from "../support/nats-server.ts";

const value = new Uint8Array([1]);

describe("KV listings", () => {
  it("list the keys matching a filter with their last values, without deleted keys", async () => {
    await using server = await natsServer();
    await using nc = await connect(server);
    await new Kvm(nc).create("l", { history: 1 });
    const t = new JetStreamTransport(nc);
    await t.writeState("l", [...["a", "b", "c"].map((k) => ({ key: `0._tk.${k}`, value })), { key: "0.n.x", value }], []);
    await t.writeState("l", [{ key: "0._tk.a", value: new Uint8Array([2]) }], ["0._tk.b"]);
    const listed = await t.listState("l", "0._tk.*");
    expect(listed.map((e) => [e.key, [...e.value]]).sort()).toEqual([
      ["0._tk.a", [2]],
      ["0._tk.c", [1]],
    ]);
    expect(await t.countState("l", "0.n.>")).toBe(1);
  });

  it("wait far longer than the JetStream API's 5 s by default, and fail with a ListingTimeoutError that names the listing", async () => {
    expect(LISTING_TIMEOUT_MS).toBeGreaterThanOrEqual(60_000);
    await using server = await natsServer();
    await using nc = await connect(server);
    await new Kvm(nc).create("slow", { history: 1 });
    // Enough keys that walking them takes the server longer than the 1 ms allowed below.
    await new JetStreamTransport(nc).writeState("slow", Array.from({ length: 50_000 }, (_, i) => ({ key: `0.n.k${i}`, value })), []);
    const t = new JetStreamTransport(nc, { listingTimeoutMs: 1 });
    const failure = await t.listState("slow", "0._tk.*").then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(failure).toBeInstanceOf(ListingTimeoutError);
    expect((failure as Error).message).toMatch(/^listing 0\._tk\.\* of KV bucket slow: no answer from nats-server in \d+ s .*walks every key of the bucket/);
    await expect(t.countState("slow", "0.n.>")).rejects.toBeInstanceOf(ListingTimeoutError);
  });
});
