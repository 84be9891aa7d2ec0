// A small NATS client for docs/guides/deploying-and-scaling.md and the counter pipeline of
// test/fixtures/counter.ts, written with the plain @nats-io libraries:
//   npx node docs/examples/counter/client.ts setup                 create the COUNTER_IN and COUNTER_OUT streams
//   npx node docs/examples/counter/client.ts publish ann bob ann   publish one click per user name to counter.in
//   npx node docs/examples/counter/client.ts read                  print every message of COUNTER_OUT
// The server URL comes from NATS_URL (default nats://127.0.0.1:4222).
import { connect } from "@nats-io/transport-node";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";

const nc = await connect({ servers: process.env.NATS_URL ?? "nats://127.0.0.1:4222" });
const js = jetstream(nc);
const [command, ...args] = process.argv.slice(2);

if (command === "setup") {
  const jsm = await jetstreamManager(nc);
  await jsm.streams.add({ name: "COUNTER_IN", subjects: ["counter.in"] });
  await jsm.streams.add({ name: "COUNTER_OUT", subjects: ["counter.out"] });
  console.log("created streams COUNTER_IN (counter.in) and COUNTER_OUT (counter.out)");
} else if (command === "publish") {
  for (const user of args) await js.publish("counter.in", JSON.stringify({ user }));
  console.log(`published ${args.length} clicks`);
} else if (command === "read") {
  // An ordered consumer from the first message; stop once nothing is pending.
  const consumer = await js.consumers.get(args[0] ?? "COUNTER_OUT");
  if ((await consumer.info(true)).num_pending > 0) {
    for await (const m of await consumer.consume()) {
      const id = m.headers?.get("Nats-Msg-Id");
      console.log(`${m.seq} ${m.string()}${id ? `  [Nats-Msg-Id=${id}]` : ""}`);
      if (m.info.pending === 0) break;
    }
  }
} else {
  console.error("usage: client.ts setup | publish <user>... | read [stream]");
  process.exitCode = 2;
}
await nc.close();
