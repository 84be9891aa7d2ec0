// A small NATS client for docs/guides/producing-events.md, with the plain @nats-io libraries:
//   npx node docs/examples/orders/client.ts setup    create the ORDERS and ORDER_TOTALS streams
//   npx node docs/examples/orders/client.ts totals   print each customer's latest total
//   npx node docs/examples/orders/client.ts batches  print how ORDERS holds the orders
// The server URL comes from NATS_URL (default nats://127.0.0.1:4222).
import { connect } from "@nats-io/transport-node";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";

const nc = await connect({ servers: process.env.NATS_URL ?? "nats://127.0.0.1:4222" });
const js = jetstream(nc);
const [command] = process.argv.slice(2);

/** Every message of `stream`, in order. */
async function* messages(stream: string) {
  const consumer = await js.consumers.get(stream);
  if ((await consumer.info(true)).num_pending === 0) return;
  for await (const m of await consumer.consume()) {
    yield m;
    if (m.info.pending === 0) break;
  }
}

if (command === "setup") {
  const jsm = await jetstreamManager(nc);
  await jsm.streams.add({ name: "ORDERS", subjects: ["orders.*"] });
  await jsm.streams.add({ name: "ORDER_TOTALS", subjects: ["order-totals"] });
  console.log("created streams ORDERS (orders.*) and ORDER_TOTALS (order-totals)");
} else if (command === "totals") {
  const totals = new Map<string, number>();
  for await (const m of messages("ORDER_TOTALS")) {
    const row = m.json<{ customer: string; total: number }>();
    totals.set(row.customer, row.total);
  }
  for (const [customer, total] of [...totals].sort()) console.log(`${customer} ${total}`);
} else if (command === "batches") {
  for await (const m of messages("ORDERS")) console.log(`${m.subject}: ${m.string().split("\n").length} orders`);
} else {
  console.error("usage: client.ts setup | totals | batches");
  process.exitCode = 2;
}
await nc.close();
