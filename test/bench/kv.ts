/**
 * KV put rate, which bounds materialization and every load of many keys (design notes bg, bk):
 * `keys` puts of 8-byte values through `JetStreamTransport.writeState` (plain publishes, one
 * inbox for the acknowledgements: `AckedPublisher`), then as many through nats.js's `kv.put`, 1 024
 * in flight (what `writeState` did before), into a fresh bucket of a throwaway nats-server.
 */
import { Kvm } from "@nats-io/kv";
import { startLocalNatsServer } from "../../runtime/nats/local-server.ts";
import { connectNats } from "../../runtime/nats/connection.ts";
import { JetStreamTransport } from "../../runtime/nats/transport.ts";
import { WindowLimiter } from "../../runtime/nats/window-limiter.ts";

export interface KvBenchResult {
  readonly bench: "kv";
  readonly keys: number;
  readonly writeStatePutsPerSecond: number;
  readonly kvPutPutsPerSecond: number;
}

export async function benchKv(keys: number): Promise<KvBenchResult> {
  const server = await startLocalNatsServer();
  const nc = await connectNats(server.url, "eddy-bench-kv");
  try {
    const kv = await new Kvm(nc).create("kvbench", { history: 1 });
    const t = new JetStreamTransport(nc);
    const value = new Uint8Array(8);
    let t0 = performance.now();
    await t.writeState("kvbench", Array.from({ length: keys }, (_, i) => ({ key: `0.n.k${i}`, value })), []);
    const writeState = keys / ((performance.now() - t0) / 1000);
    t0 = performance.now();
    const window = new WindowLimiter(1024);
    for (let i = 0; i < keys; i++) await window.add(kv.put(`1.n.k${i}`, value));
    await window.drain();
    const kvPut = keys / ((performance.now() - t0) / 1000);
    return { bench: "kv", keys, writeStatePutsPerSecond: Math.round(writeState), kvPutPutsPerSecond: Math.round(kvPut) };
  } finally {
    await nc.close();
    await server.stop();
  }
}
