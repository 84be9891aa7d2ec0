/** `eddy publish <stream> [file.ndjson|-]`: send JSON events into a stream through `eddy/client`'s producer. */
import * as Argument from "effect/cli/Argument";
import * as Command from "effect/cli/Command";
import * as Flag from "effect/cli/Flag";
import * as Option from "effect/Option";
import { jsonFlag, natsFlag } from "../flags.ts";
import { exitWith, UsageError } from "../run.ts";

const FORMATS = ["json-lines", "msgpack-batch", "json", "msgpack"] as const;

export const publishCommand = Command.make(
  "publish",
  {
    stream: Argument.String("stream").pipe(Argument.withDescription("the JetStream stream to publish into")),
    file: Argument.String("file").pipe(Argument.withDescription("events, one JSON value per line; - or absent: standard input"), Argument.optional),
    subject: Flag.String("subject").pipe(
      Flag.withDescription("subject of the messages; {partition} stands for the partition (default: the stream's only subject)"),
      Flag.optional,
    ),
    format: Flag.String("format").pipe(Flag.withDescription("json-lines, msgpack-batch (many events per message), json or msgpack (one)"), Flag.withDefault("json-lines")),
    maxBatch: Flag.Int("max-batch").pipe(Flag.withDescription("most events per message (default: 100)"), Flag.withDefault(100)),
    lingerMs: Flag.Int("linger-ms").pipe(Flag.withDescription("how long a partial batch waits for more events (default: 5)"), Flag.withDefault(5)),
    partitionBy: Flag.String("partition-by").pipe(Flag.withDescription("field of each event whose value picks its partition (eddy's hash)"), Flag.optional),
    partitions: Flag.Int("partitions").pipe(Flag.withDescription("number of partitions (default: 1)"), Flag.withDefault(1)),
    json: jsonFlag("print the summary as JSON"),
    nats: natsFlag(),
  },
  ({ stream, file, subject, format, maxBatch, lingerMs, partitionBy, partitions, json, nats }) =>
    exitWith(async () => {
      if (!(FORMATS as readonly string[]).includes(format)) throw new UsageError(`--format must be one of ${FORMATS.join(", ")}`);
      if (maxBatch < 1) throw new UsageError("--max-batch must be >= 1");
      if (lingerMs < 0) throw new UsageError("--linger-ms must be >= 0");
      if (partitions < 1 || partitions > 4096) throw new UsageError("--partitions must be in 1..4096");
      const by = Option.getOrUndefined(partitionBy);
      const subj = Option.getOrUndefined(subject);
      if (partitions > 1 && by === undefined) throw new UsageError("--partitions > 1 needs --partition-by <field>");
      if (partitions > 1 && subj?.includes("{partition}") !== true) throw new UsageError("--partitions > 1 needs a --subject naming {partition}, e.g. orders.{partition}");
      const { runPublish } = await import("../publish.ts");
      return runPublish({
        stream,
        file: Option.getOrUndefined(file),
        subject: subj,
        format: format as (typeof FORMATS)[number],
        maxBatch,
        lingerMs,
        partitionBy: by,
        partitions,
        json,
        natsUrl: Option.getOrUndefined(nats),
      });
    }),
).pipe(Command.withDescription("Publish JSON events (one per line) into a stream, batched and partitioned as eddy/client does"));
