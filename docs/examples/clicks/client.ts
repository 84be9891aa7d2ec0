// A small NATS client for docs/getting-started.md, written with the plain @nats-io libraries:
//   npx node docs/examples/clicks/client.ts setup                 create the CLICKS and COUNTS streams
//   npx node docs/examples/clicks/client.ts publish ann bob ann   publish one click per user name
//   npx node docs/examples/clicks/client.ts publish-raw '{oops'   publish a payload as it is
//   npx node docs/examples/clicks/client.ts read COUNTS           print every message of a stream
//   npx node docs/examples/clicks/client.ts state eddy_clicks_count   print a KV bucket (msgpack values)
// The server URL comes from NATS_URL (default nats://127.0.0.1:4222).
import { connect } from "@nats-io/transport-node";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { Kvm } from "@nats-io/kv";
import { unpack } from "msgpackr";

const nc = await connect({ servers: process.env.NATS_URL ?? "nats://127.0.0.1:4222" });
const js = jetstream(nc);
const [command, ...args] = process.argv.slice(2);

if (command === "setup") {
  const jsm = await jetstreamManager(nc);
  await jsm.streams.add({ name: "CLICKS", subjects: ["clicks.>"] });
  await jsm.streams.add({ name: "COUNTS", subjects: ["counts.>"] });
  console.log("created streams CLICKS (clicks.>) and COUNTS (counts.>)");
} else if (command === "publish") {
  for (const user of args) await js.publish("clicks.web", JSON.stringify({ user, page: "/home" }));
  console.log(`published ${args.length} clicks`);
} else if (command === "publish-raw") {
  for (const payload of args) await js.publish("clicks.web", payload);
  console.log(`published ${args.length} messages`);
} else if (command === "read") {
  // An ordered consumer from the first message; stop once nothing is pending.
  const consumer = await js.consumers.get(args[0] ?? "COUNTS");
  if ((await consumer.info(true)).num_pending > 0) {
    for await (const m of await consumer.consume()) {
      const headers = m.headers ? [...m.headers.keys()].map((k) => `${k}=${m.headers!.get(k)}`).join(" ") : "";
      console.log(`${m.seq} ${m.subject} ${m.string()}${headers ? "  [" + headers + "]" : ""}`);
      if (m.info.pending === 0) break;
    }
  }
} else if (command === "state") {
  // eddy stores state values as plain msgpack, readable by any client.
  const kv = await new Kvm(nc).open(args[0] ?? "eddy_clicks_count");
  const keys: string[] = [];
  for await (const k of await kv.keys()) keys.push(k);
  for (const k of keys.sort()) {
    const e = await kv.get(k);
    if (e !== null && e.length > 0) console.log(`${k} = ${JSON.stringify(unpack(e.value))}`);
  }
} else {
  console.error("usage: client.ts setup | publish <user>... | publish-raw <payload>... | read <stream> | state <bucket>");
  process.exitCode = 2;
}
await nc.close();
