// Orders per customer, read from batches: a producer (`eddy publish`, or `createProducer` of
// eddy/client) sends many orders per JSON-lines message, partitioned by customer with eddy's
// hash onto orders.<partition>. Used by docs/guides/producing-events.md; run it with
//   npx eddy worker --pipeline docs/examples/orders/pipeline.ts --nats nats://127.0.0.1:4222
import { defineFunction, definePipeline, defineSink, fromFunction, fromStream, valueState } from "../../../runtime/sdk/index.ts";

interface Order {
  readonly customer: string;
  readonly amount: number;
}

// A partitioned, keyed source: partition p reads orders.p, where the producer put every order
// whose customer hashes to p; each event of a batch is keyed (and dead-lettered) on its own.
const orders = defineFunction({
  name: "orders",
  input: fromStream("ORDERS", { partitions: 4, subject: (p) => `orders.${p}`, format: "json-lines" }),
  key: (o: Order) => o.customer,
  state: { total: valueState<number>() },
  process(ctx, o: Order) {
    ctx.emit({ customer: ctx.key, total: ctx.state.total.update((t) => (t ?? 0) + o.amount) });
  },
});

export default definePipeline({
  name: "orders",
  functions: [orders, defineSink({ name: "totals", input: fromFunction(orders), subject: "order-totals" })],
});
