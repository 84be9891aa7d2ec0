import { startLocalNatsCluster } from "./runtime/nats/local-server.ts";
import { connect } from "@nats-io/transport-node";
import { jetstreamManager, jetstream } from "@nats-io/jetstream";
import { Kvm } from "@nats-io/kv";
const c = await startLocalNatsCluster({ size: 3 });
const nc = await connect({ servers: c.urls as string[], maxReconnectAttempts: -1, reconnectTimeWait: 250 });
nc.closed().then(() => console.log("closed"));
(async () => { for await (const s of nc.status()) console.log("status", s.type, (s as any).server ?? ""); })();
const jsm = await jetstreamManager(nc);
await jsm.streams.add({ name: "S", subjects: ["s.>"], num_replicas: 3 });
const leader = (await jsm.streams.info("S")).cluster!.leader!;
console.log("connected to", nc.info!.server_name, "leader", leader);
const js = jetstream(nc, { timeout: 2000 });
const errs = new Map<string, number>();
let ok = 0;
const t0 = Date.now();
const ps: Promise<void>[] = [];
for (let i = 0; i < 3000; i++) {
  if (i === 500) { const idx = c.servers.findIndex((_, j) => c.serverName(j) === leader); await c.servers[idx]!.kill(); console.log("killed", leader, Date.now() - t0); }
  ps.push(js.publish("s.a", String(i), { msgID: `m${i}` }).then(() => { ok++; }, (e) => { const k = `${(e as Error).name}: ${(e as Error).message}`; errs.set(k, (errs.get(k) ?? 0) + 1); }));
  if (ps.length % 200 === 0) await Promise.all(ps.slice(-200));
}
await Promise.all(ps);
console.log("ok", ok, "errs", [...errs], Date.now() - t0);
console.log(JSON.stringify((await jsm.streams.info("S")).cluster), (await jsm.streams.info("S")).state.messages);
const kv = await new Kvm(nc).create("L", { history: 1, replicas: 3 });
const r = await kv.create("k", "a");
const kl = (await jsm.streams.info("KV_L")).cluster!.leader!;
const idx = c.servers.findIndex((_, j) => c.serverName(j) === kl);
await c.servers[idx]!.kill(); console.log("killed kv leader", kl);
const t1 = Date.now();
try { console.log("update", await kv.update("k", "b", r)); } catch (e) { console.log("update err", (e as Error).name, (e as Error).message, Date.now() - t1); }
await new Promise((r) => setTimeout(r, 3000));
try { console.log("update2", await kv.update("k", "b", r)); } catch (e) { console.log("update2 err", (e as Error).name, (e as Error).message, Date.now() - t1); }
await nc.close();
await c.stop();
