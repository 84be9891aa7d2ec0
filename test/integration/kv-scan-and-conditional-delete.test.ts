/**
 * What the KV sweep of expired TTL state (design note bt) needs from a real nats-server:
 * `JetStreamTransport.scanState` walks every live entry of a filter — more than one pull's worth,
 * skipping deletions — with the revision each was stored at, and `deleteStateIf` deletes an
 * entry only while it is still that revision.
 */
import { describe, expect, it } from "vitest";
import { Kvm } from "@nats-io/kv";
import { JetStreamTransport } from "../../runtime/nats/transport.ts";
import { connect, natsServer } from "../support/nats-server.ts";

const v = (s: string) => new TextEncoder().encode(s);

describe("scanning KV and deleting conditionally", () => {
  it("scans every live entry of a filter with its revision, and deletes one only while it is unchanged", async () => {
    await using server = await natsServer();
    await using nc = await connect(server);
    const kv = await new Kvm(nc).create("sweep", { history: 1 });
    for (let i = 0; i < 700; i++) await kv.put(`0.s.k${i}`, v(`v${i}`));
    await kv.put("0.other.k0", v("not scanned"));
    await kv.put("1.s.k0", v("another partition"));
    await kv.delete("0.s.k5");
    const transport = new JetStreamTransport(nc);

    const scanned = new Map<string, { value: string; revision: number }>();
    for await (const e of transport.scanState("sweep", "0.s.>")) scanned.set(e.key, { value: new TextDecoder().decode(e.value), revision: e.revision });
    expect(scanned.size).toBe(699);
    expect(scanned.has("0.s.k5")).toBe(false);
    expect(scanned.get("0.s.k7")).toEqual({ value: "v7", revision: (await kv.get("0.s.k7"))!.revision });

    // Unchanged since the scan: deleted.
    expect(await transport.deleteStateIf("sweep", "0.s.k7", scanned.get("0.s.k7")!.revision)).toBe(true);
    expect((await kv.get("0.s.k7"))?.operation).toBe("DEL");
    // Written again since the scan: kept.
    await kv.put("0.s.k8", v("new"));
    expect(await transport.deleteStateIf("sweep", "0.s.k8", scanned.get("0.s.k8")!.revision)).toBe(false);
    expect((await kv.get("0.s.k8"))?.string()).toBe("new");

    // A scan of nothing ends at once.
    const none = [];
    for await (const e of transport.scanState("sweep", "9.s.>")) none.push(e);
    expect(none).toEqual([]);
  });
});
