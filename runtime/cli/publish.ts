/**
 * `eddy publish`: events from a file or standard input, one JSON value per line, sent through
 * `eddy/client`'s producer (runtime/nats/producer.ts), so what a shell pipeline publishes is
 * batched and partitioned exactly as an application's producer would. A line that is not JSON
 * stops the command (the events before it are published and counted).
 */
import { createReadStream } from "node:fs";
import { createInterface } from "node:readline";
import { InputError } from "../errors.ts";
import { withNats } from "../nats/connection.ts";
import { createProducer, streamSubjects, type ProducerFormat } from "../nats/producer.ts";

export interface PublishOptions {
  readonly stream: string;
  /** A file, or `-`/undefined for standard input. */
  readonly file: string | undefined;
  readonly subject: string | undefined;
  readonly format: ProducerFormat;
  readonly maxBatch: number;
  readonly lingerMs: number;
  readonly partitionBy: string | undefined;
  readonly partitions: number;
  readonly json: boolean;
  readonly natsUrl: string | undefined;
}

/** A line of the input that is not JSON. */
export class BadLineError extends InputError {
  override readonly name = "BadLineError";
}

export async function runPublish(o: PublishOptions): Promise<number> {
  const from = o.file === undefined || o.file === "-" ? "stdin" : o.file;
  const input = from === "stdin" ? process.stdin : createReadStream(from);
  // A missing file is reported before connecting.
  await new Promise<void>((resolve, reject) => {
    if (input === process.stdin) return resolve();
    input.once("open", () => resolve());
    input.once("error", (e: Error) => reject(new InputError(`${from}: ${(e as NodeJS.ErrnoException).code === "ENOENT" ? "no such file" : e.message}`)));
  });
  return withNats(o.natsUrl, async (nc) => {
    let subject = o.subject;
    if (subject === undefined) {
      const subjects = await streamSubjects(nc, o.stream);
      if (subjects.length !== 1 || /[*>]/.test(subjects[0]!)) throw new InputError(`stream ${o.stream} has subjects ${subjects.join(", ") || "(none)"}: say which to publish to with --subject`);
      subject = subjects[0]!;
    }
    const producer = await createProducer(nc, {
      stream: o.stream,
      subject,
      format: o.format,
      maxBatch: o.maxBatch,
      lingerMs: o.lingerMs,
      partitions: o.partitions,
      ...(o.partitionBy === undefined ? {} : { partitionBy: o.partitionBy }),
    });
    const started = performance.now();
    let line = 0;
    try {
      for await (const text of createInterface({ input, crlfDelay: Infinity })) {
        line++;
        if (text.trim() === "") continue;
        let event: unknown;
        try {
          event = JSON.parse(text);
        } catch (e) {
          throw new BadLineError(`${from}:${line}: not JSON (${e instanceof Error ? e.message : String(e)})`);
        }
        try {
          await producer.send(event);
        } catch (e) {
          if (e instanceof RangeError) throw new BadLineError(`${from}:${line}: ${e.message}`);
          throw e;
        }
      }
    } finally {
      await producer.close();
    }
    const s = producer.stats();
    const seconds = (performance.now() - started) / 1000;
    if (o.json) console.log(JSON.stringify({ stream: o.stream, events: s.acked, messages: s.messages, retries: s.retries, backpressureWaits: s.backpressureWaits, seconds: Number(seconds.toFixed(3)) }));
    else console.log(`published ${s.acked} events in ${s.messages} messages to ${o.stream} (${s.retries} retries, ${s.backpressureWaits} backpressure waits, ${seconds.toFixed(2)} s)`);
    return 0;
  });
}
