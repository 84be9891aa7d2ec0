/** `eddy nexmark generate|run|bench`: Nexmark events, queries and benchmarks. */
import * as Command from "effect/cli/Command";
import * as Flag from "effect/cli/Flag";
import * as Option from "effect/Option";
import { jsonFlag, natsFlag } from "../flags.ts";
import { exitWith, UsageError } from "../run.ts";

const nexmarkGenerate = Command.make(
  "generate",
  {
    events: Flag.Int("events").pipe(Flag.withDescription("number of events")),
    seed: Flag.Int("seed").pipe(Flag.withDescription("random seed (default: 1)"), Flag.withDefault(1)),
    out: Flag.String("out").pipe(Flag.withDescription("output file (default: stdout)"), Flag.optional),
  },
  ({ events, seed, out }) =>
    exitWith(async () => {
      if (events < 0) throw new UsageError("--events must be >= 0");
      const { runNexmarkGenerate } = await import("../nexmark-generate.ts");
      return runNexmarkGenerate({ events, seed, out: Option.getOrUndefined(out) });
    }),
).pipe(Command.withDescription("Write deterministic Nexmark events, one JSON event per line"));

const nexmarkRun = Command.make(
  "run",
  {
    query: Flag.String("query").pipe(Flag.withDescription("q0, q1, q2, q3, q4, q5, q7, q8 or q11")),
    input: Flag.String("input").pipe(Flag.withDescription("events, one JSON event per line")),
    out: Flag.String("out").pipe(Flag.withDescription("result rows, one JSON object per line")),
    nats: natsFlag("NATS server URL (default: start a local nats-server)"),
  },
  ({ query, input, out, nats }) =>
    exitWith(async () => {
      const { runNexmarkRun } = await import("../nexmark.ts");
      return runNexmarkRun({ query, input, out, natsUrl: Option.getOrUndefined(nats) });
    }),
).pipe(Command.withDescription("Run a Nexmark query on eddy over NATS until its input is exhausted"));

const nexmarkBench = Command.make(
  "bench",
  {
    query: Flag.String("query").pipe(Flag.withDescription("q0, q1, q2, q3, q4, q5, q7, q8 or q11")),
    events: Flag.Int("events").pipe(Flag.withDescription("number of generated events (default: 1000000)"), Flag.withDefault(1_000_000)),
    seed: Flag.Int("seed").pipe(Flag.withDescription("generator seed (default: 1)"), Flag.withDefault(1)),
    baseline: Flag.Boolean("baseline").pipe(Flag.withDescription("run the naive KV baseline instead (q5, q7)"), Flag.withDefault(false)),
    checkpointInterval: Flag.Int("checkpoint-interval").pipe(
      Flag.withDescription("milliseconds between checkpoints during the run (default: 10000)"),
      Flag.withDefault(10_000),
    ),
    ingest: Flag.String("ingest").pipe(
      Flag.withDescription("single: one JSON event per message; batched: 100 events per json-lines message, as eddy/client sends them (default: single)"),
      Flag.withDefault("single"),
    ),
    rounds: Flag.Int("rounds").pipe(
      Flag.withDescription("run the query this many times, each followed by one pass of the ceiling, and report the medians (default: 1)"),
      Flag.withDefault(1),
    ),
    json: jsonFlag("print one JSON line"),
    nats: natsFlag("NATS server URL (default: start a local nats-server, whose CPU is counted)"),
  },
  ({ query, events, seed, baseline, checkpointInterval, ingest, rounds, json, nats }) =>
    exitWith(async () => {
      if (ingest !== "single" && ingest !== "batched") throw new UsageError("--ingest must be single or batched");
      if (events <= 0) throw new UsageError("--events must be > 0");
      if (checkpointInterval <= 0) throw new UsageError("--checkpoint-interval must be > 0");
      const { runNexmarkBench, MAX_BENCH_ROUNDS } = await import("../nexmark.ts");
      if (rounds < 1 || rounds > MAX_BENCH_ROUNDS) throw new UsageError(`--rounds must be from 1 to ${MAX_BENCH_ROUNDS}`);
      if (baseline && rounds !== 1) throw new UsageError("--rounds applies to eddy's runs, not to --baseline");
      return runNexmarkBench({ query, events, seed, baseline, json, natsUrl: Option.getOrUndefined(nats), checkpointIntervalMs: checkpointInterval, ingest, rounds });
    }),
).pipe(Command.withDescription("Time a Nexmark query: events per core-second of eddy plus nats-server, against the ceiling"));

export const nexmark = Command.make("nexmark").pipe(
  Command.withDescription("Nexmark: generate events, run queries, benchmark"),
  Command.withSubcommands([nexmarkGenerate, nexmarkRun, nexmarkBench]),
);
