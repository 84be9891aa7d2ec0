/**
 * `eddy/client`: what applications import to send events into streams that eddy functions read.
 * The producer batches many events per message (the `json-lines` or `msgpack-batch` formats a
 * `fromStream` source decodes), partitions them with eddy's hash so partitioned sources read each
 * key's events from one subject, and pipelines acknowledged publishes with dedup ids (design note
 * ce, docs/guides/producing-events.md).
 *
 * @example
 * import { connect } from "@nats-io/transport-node";
 * import { createProducer } from "eddy/client";
 * const producer = await createProducer(nc, { stream: "ORDERS", subject: "orders.{partition}", partitions: 4, partitionBy: "customer" });
 * for (const order of orders) await producer.send(order);
 * await producer.close();
 */
export { createProducer, ProducerFailedError, type Producer, type ProducerFormat, type ProducerOptions, type ProducerStats } from "../nats/producer.ts";
export { partitionOf } from "../core/hash.ts";
