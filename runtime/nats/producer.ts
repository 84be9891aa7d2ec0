/**
 * `eddy/client`'s producer (design note ce): applications that care about throughput send many
 * events per JetStream message, as Kafka producers send record batches. Events are buffered per
 * partition subject (`core/producer-batches.ts` decides partition and message boundaries), a
 * buffer is published when full or after `lingerMs`, and publishes are pipelined — up to
 * `maxInFlight` messages unacknowledged — with a `Nats-Msg-Id` per message, so a publish retried
 * after a lost acknowledgement is dropped by the stream's duplicate window instead of stored
 * twice, and `Nats-Expected-Stream`, so a subject captured by another stream is refused. `send`
 * waits while the window is full: that wait is the backpressure, counted in `stats()`.
 */
import { randomBytes } from "node:crypto";
import type { NatsConnection } from "@nats-io/transport-node";
import { encodedHeaders } from "./encoded-headers.ts";
import { jetstreamManager } from "@nats-io/jetstream";
import { AckedPublisher, PublishAckTimeoutError } from "./acked-publisher.ts";
import { InvalidArgumentError, TransientError } from "../errors.ts";
import { Batcher, batched, fieldKey, positiveInt, subjectTemplate, type ProducerFormat, type ReadyBatch } from "../core/producer-batches.ts";

export type { ProducerFormat } from "../core/producer-batches.ts";

/** Options of `createProducer`. */
export interface ProducerOptions {
  /** The JetStream stream the messages must be stored in (checked on every publish). */
  readonly stream: string;
  /**
   * Subject of the messages; with `partitions > 1` a function of the partition, or a template
   * where `{partition}` stands for it (`"orders.{partition}"`), matching the source's
   * `fromStream(stream, { partitions, subject: (p) => … })`.
   */
  readonly subject: string | ((partition: number) => string);
  /** How events are written (default `json-lines`; `json`/`msgpack` send one event per message). */
  readonly format?: ProducerFormat;
  /** Most events per message (default 100). */
  readonly maxBatch?: number;
  /** Most bytes per message (default: the server's max payload less 4 KiB for headers). */
  readonly maxBatchBytes?: number;
  /** How long a partial batch waits for more events before it is sent (default 5 ms). */
  readonly lingerMs?: number;
  /** The partition key of an event: a field name or a function (required with `partitions > 1`). */
  readonly partitionBy?: string | ((event: unknown) => string);
  /** Number of partitions (default 1): an event goes to `partitionOf(key, partitions)`. */
  readonly partitions?: number;
  /** Most messages published and not yet acknowledged (default 64). */
  readonly maxInFlight?: number;
  /** Attempts per message before the producer fails (default 5); retries keep the message id. */
  readonly maxAttempts?: number;
  /** Acknowledgement timeout per publish (default 5000 ms). */
  readonly ackTimeoutMs?: number;
}

/** What a producer did so far. */
export interface ProducerStats {
  /** Events accepted by `send`. */
  readonly events: number;
  /** Events in acknowledged messages. */
  readonly acked: number;
  /** Messages acknowledged. */
  readonly messages: number;
  /** Messages published and not yet acknowledged. */
  readonly inFlight: number;
  /** Events buffered, not yet published. */
  readonly buffered: number;
  /** Publishes retried after a timeout (the stream drops a duplicate by its message id). */
  readonly retries: number;
  /** Times `send` waited because `maxInFlight` messages were unacknowledged. */
  readonly backpressureWaits: number;
  /** Milliseconds `send` spent waiting in all. */
  readonly backpressureMs: number;
}

/** A batching, partitioning, pipelined producer of events into one stream. */
export interface Producer {
  /**
   * Buffers `event` for its partition. Resolves at once while fewer than `maxInFlight` messages
   * are unacknowledged, else when one is (backpressure); rejects for an event without a
   * partition key or too large for a message, and once a publish failed for good.
   */
  send(event: unknown): Promise<void>;
  /** Publishes every buffered event and waits until every message is acknowledged. */
  flush(): Promise<void>;
  /** Flushes, then stops; the connection stays open (it is the caller's). */
  close(): Promise<void>;
  stats(): ProducerStats;
}

/** A publish failed for good (after `maxAttempts`, or refused by the server). */
export class ProducerFailedError extends TransientError {
  override readonly name = "ProducerFailedError";
}

const HEADER_ROOM = 4096;

/** Creates a producer on `nc` (validated options; throws `InvalidArgumentError`). */
export async function createProducer(nc: NatsConnection, options: ProducerOptions): Promise<Producer> {
  const format = options.format ?? "json-lines";
  if (!["json-lines", "msgpack-batch", "json", "msgpack"].includes(format)) throw new InvalidArgumentError(`format must be json-lines, msgpack-batch, json or msgpack, got ${JSON.stringify(format)}`);
  const partitions = positiveInt("partitions", options.partitions ?? 1);
  const maxBatch = batched(format) ? positiveInt("maxBatch", options.maxBatch ?? 100) : 1;
  const maxInFlight = positiveInt("maxInFlight", options.maxInFlight ?? 64);
  const maxAttempts = positiveInt("maxAttempts", options.maxAttempts ?? 5);
  const lingerMs = options.lingerMs ?? 5;
  if (!Number.isFinite(lingerMs) || lingerMs < 0) throw new InvalidArgumentError(`lingerMs must be a finite number ≥ 0, got ${lingerMs}`);
  const serverMax = nc.info?.max_payload ?? 1024 * 1024;
  const maxBatchBytes = positiveInt("maxBatchBytes", options.maxBatchBytes ?? Math.max(1024, serverMax - HEADER_ROOM));
  if (maxBatchBytes > serverMax) throw new InvalidArgumentError(`maxBatchBytes ${maxBatchBytes} is more than the server's max payload ${serverMax}`);
  if (partitions > 1 && options.partitionBy === undefined) throw new InvalidArgumentError(`with ${partitions} partitions, partitionBy must say each event's partition key`);
  const subjectOf = typeof options.subject === "function" ? options.subject : subjectTemplate(options.subject, partitions);
  const keyOf = options.partitionBy === undefined ? undefined : typeof options.partitionBy === "string" ? fieldKey(options.partitionBy) : options.partitionBy;
  // The stream must exist: otherwise every publish would time out or land elsewhere.
  const jsm = await jetstreamManager(nc);
  await jsm.streams.info(options.stream).catch((e: unknown) => {
    throw new InvalidArgumentError(`stream ${options.stream}: ${e instanceof Error ? e.message : String(e)}`);
  });
  const batcher = new Batcher({ format, maxBatch, maxBatchBytes, partitions, subjectOf, ...(keyOf === undefined ? {} : { keyOf }) });
  const publisher = new AckedPublisher(nc, options.ackTimeoutMs ?? 5000);
  const id = randomBytes(6).toString("base64url");
  let next = 0;
  let inFlight = 0;
  let failure: unknown;
  let closed = false;
  const counts = { events: 0, acked: 0, messages: 0, retries: 0, backpressureWaits: 0, backpressureMs: 0 };
  let waiters: Array<() => void> = [];
  const wake = () => {
    const w = waiters;
    waiters = [];
    for (const f of w) f();
  };
  let timer: ReturnType<typeof setTimeout> | undefined;

  const publish = (batch: ReadyBatch): void => {
    const h = encodedHeaders({ "Nats-Expected-Stream": options.stream }, `${id}-${(next++).toString(36)}`);
    inFlight++;
    const attempt = (n: number): void => {
      publisher.publish({ subject: batch.subject, data: batch.data, headers: h }).then(
        () => {
          inFlight--;
          counts.messages++;
          counts.acked += batch.events;
          wake();
        },
        (e: unknown) => {
          if (e instanceof PublishAckTimeoutError && n < maxAttempts && failure === undefined) {
            counts.retries++;
            attempt(n + 1);
            return;
          }
          inFlight--;
          failure ??= new ProducerFailedError(`publishing to ${batch.subject} failed${n > 1 ? ` after ${n} attempts` : ""}: ${e instanceof Error ? e.message : String(e)}`, { cause: e });
          wake();
        },
      );
    };
    attempt(1);
  };

  const schedule = (): void => {
    if (timer !== undefined || closed) return;
    const oldest = batcher.oldest();
    if (oldest === undefined) return;
    timer = setTimeout(() => {
      timer = undefined;
      for (const b of batcher.due(Date.now(), lingerMs)) publish(b);
      schedule();
    }, Math.max(0, oldest + lingerMs - Date.now()));
  };

  const waitForWindow = async (): Promise<void> => {
    if (inFlight < maxInFlight) return;
    counts.backpressureWaits++;
    const start = performance.now();
    while (inFlight >= maxInFlight && failure === undefined) await new Promise<void>((r) => waiters.push(r));
    counts.backpressureMs += performance.now() - start;
  };

  const producer: Producer = {
    async send(event) {
      if (failure !== undefined) throw failure;
      if (closed) throw new InvalidArgumentError("the producer is closed");
      await waitForWindow();
      if (failure !== undefined) throw failure;
      const ready = batcher.add(event, Date.now());
      counts.events++;
      for (const b of ready) publish(b);
      schedule();
    },
    async flush() {
      if (timer !== undefined) clearTimeout(timer);
      timer = undefined;
      for (const b of batcher.drain()) publish(b);
      while (inFlight > 0) await new Promise<void>((r) => waiters.push(r));
      if (failure !== undefined) throw failure;
    },
    async close() {
      if (closed) return;
      try {
        await producer.flush();
      } finally {
        closed = true;
        if (timer !== undefined) clearTimeout(timer);
        publisher.close();
      }
    },
    stats: () => ({ ...counts, inFlight, buffered: batcher.buffered }),
  };
  return producer;
}

/** The subjects `stream` captures (what `eddy publish` defaults to when the stream has one). */
export async function streamSubjects(nc: NatsConnection, stream: string): Promise<string[]> {
  const jsm = await jetstreamManager(nc);
  const info = await jsm.streams.info(stream).catch((e: unknown) => {
    throw new InvalidArgumentError(`stream ${stream}: ${e instanceof Error ? e.message : String(e)}`);
  });
  return [...(info.config.subjects ?? [])];
}
