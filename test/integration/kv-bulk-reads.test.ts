/**
 * State reads of keys not in memory on a real nats-server: `JetStreamTransport.getState` asks the
 * bucket's leader for the last message of each key in bulk over one inbox
 * (runtime/nats/leader-gets.ts) instead of a nats.js request per key, and answers what `kv.get`
 * would: a value, or nothing for a key never written, deleted or purged.
 */
import { describe, expect, it } from "vitest";
import { Kvm } from "@nats-io/kv";
import { JetStreamTransport } from "../../runtime/nats/transport.ts";
import { GetTimeoutError, LeaderGets } from "../../runtime/nats/leader-gets.ts";
import { connect, natsServer } from "../support/nats-server.ts";

const v = (s: string) => new TextEncoder().encode(s);
const text = (b: Uint8Array | undefined) => (b === undefined ? undefined : new TextDecoder().decode(b));

describe("bulk KV reads", () => {
  it("reads thousands of keys, more than the window in flight, as kv.get would", async () => {
    await using server = await natsServer();
    await using nc = await connect(server);
    const kv = await new Kvm(nc).create("reads", { history: 1 });
    for (let i = 0; i < 1200; i++) await kv.put(`0.s.k${i}`, v(`v${i}`));
    await kv.put("0.s.deleted", v("x"));
    await kv.delete("0.s.deleted");
    await kv.put("0.s.purged", v("x"));
    await kv.purge("0.s.purged");
    await kv.put("0.s.empty", new Uint8Array(0));
    await kv.put("0.s.twice", v("first"));
    await kv.put("0.s.twice", v("second"));
    const keys = [...Array.from({ length: 1200 }, (_, i) => `0.s.k${1199 - i}`), "0.s.never", "0.s.deleted", "0.s.purged", "0.s.empty", "0.s.twice"];
    const got = await new JetStreamTransport(nc).getState("reads", keys);
    expect(got).toHaveLength(keys.length);
    for (let i = 0; i < 1200; i++) expect(text(got[i])).toBe(`v${1199 - i}`);
    expect(got.slice(1200).map(text)).toEqual([undefined, undefined, undefined, "", "second"]);
    // kv.get, the reference.
    for (const [i, key] of keys.entries()) {
      const e = await kv.get(key);
      expect(text(got[i])).toBe(e === null || e.operation !== "PUT" ? undefined : e.string());
    }
  });

  it("refuses a key KV does not accept before asking, and says a lookup bucket is missing", async () => {
    await using server = await natsServer();
    await using nc = await connect(server);
    await new Kvm(nc).create("reads", { history: 1 });
    const transport = new JetStreamTransport(nc);
    await expect(transport.getState("reads", ["bad key"])).rejects.toThrow(/invalid key/i);
    expect(await transport.readLookup("no-such-bucket", ["a"])).toBeUndefined();
  });

  it("fails a get nothing answers as a timeout, and later gets still work", async () => {
    await using server = await natsServer();
    await using nc = await connect(server);
    await new Kvm(nc).create("reads", { history: 1 });
    const reader = new LeaderGets(nc, { timeoutMs: 300, apiPrefix: "silent.api" });
    const silent = nc.subscribe("silent.api.>");
    try {
      await expect(reader.lastBySubject("KV_reads", ["$KV.reads.a"], 8)).rejects.toThrow(GetTimeoutError);
    } finally {
      silent.unsubscribe();
      reader.close();
    }
    const good = new LeaderGets(nc);
    try {
      expect(await good.lastBySubject("KV_reads", ["$KV.reads.a"], 8)).toEqual([undefined]);
    } finally {
      good.close();
    }
  });
});
