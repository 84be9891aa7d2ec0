/**
 * `npm run bench -- <name> [--events <n>] [--keys <n>] [--dist zipf|uniform] [--cache-mb <n>] [--load preload|job] [--warm] [--segments on|off] [--rules <n>] [--rate <n>] [--seconds <n>] [--delivery at-least-once|exactly-once] [--checkpoint-interval <ms>] [--profile <dir>] [--gc] [--hot <share>] [--modes <m,...>] [--rounds <n>] [--json]`: runs one
 * benchmark and prints its result, as one JSON line with --json. Benchmarks measure speed; tests
 * never do.
 */
import { parseArgs } from "node:util";
import { benchChaining } from "./chaining.ts";
import { benchCheckpoint } from "./checkpoint.ts";
import { benchKv } from "./kv.ts";
import { benchLatency } from "./latency.ts";
import type { SinkDelivery } from "./latency-workload.ts";
import { benchPipeline } from "./pipeline.ts";
import { benchRecovery } from "./recovery.ts";
import { benchRestoreRequests } from "./restore-requests.ts";
import { benchRules } from "./rules.ts";
import { benchSkew, SKEW_MODES, type SkewMode } from "./skew.ts";
import { benchState, type KeyDistribution } from "./state.ts";
import { defaultLoadMode, type LoadMode } from "./preload-state.ts";

interface BenchOptions {
  readonly events: number;
  readonly keys: number;
  readonly dist: KeyDistribution;
  /** `--state-cache-mb` of the workers a benchmark starts (state only). */
  readonly cacheMb: number | undefined;
  /** How recovery and state get their keys' state (default: preloaded into KV from 1 M keys, else counted by the job). */
  readonly load: LoadMode | undefined;
  /** The updates once untimed before the timed pass (state only). */
  readonly warm: boolean;
  /** Continuous upload of changes (checkpoint only; `--segments off` uploads at the barrier). */
  readonly segments: boolean;
  /** Most active rules (rules only: runs with 1, 10, 100 up to it). */
  readonly rules: number;
  /** Offered events per second (latency only). */
  readonly rate: number;
  /** Seconds measured at that rate (latency only). */
  readonly seconds: number;
  /** Sink delivery (latency only; default: both, exactly-once at 100 ms and 1 s checkpoints). */
  readonly delivery: SinkDelivery | undefined;
  /** The supervisor's checkpoint interval (latency only). */
  readonly checkpointIntervalMs: number | undefined;
  /** Timed rounds, alternating the order of the jobs (chaining: default 2; skew: default 1). */
  readonly rounds: number | undefined;
  /** Directory for CPU profiles of the workers (latency, state) or of each timed run (chaining). */
  readonly profileDir: string | undefined;
  /** Share of views on the hot page (skew only). */
  readonly hot: number;
  /** The ways the skewed job runs (skew only; default: all). */
  readonly modes: readonly SkewMode[] | undefined;
  /** Log the worker's garbage collections and report those of each measured part (latency only). */
  readonly gc: boolean;
}

const benches: Record<string, (opts: BenchOptions) => Promise<object>> = {
  pipeline: ({ events }) => benchPipeline(events),
  chaining: ({ events, rounds, profileDir }) => benchChaining(events, rounds, profileDir),
  checkpoint: ({ keys, segments }) => benchCheckpoint(keys, segments),
  kv: ({ keys }) => benchKv(keys),
  latency: ({ rate, seconds, delivery, checkpointIntervalMs, profileDir, gc }) =>
    benchLatency({
      rate,
      seconds,
      gc,
      ...(delivery === undefined ? {} : { delivery }),
      ...(checkpointIntervalMs === undefined ? {} : { checkpointIntervalMs }),
      ...(profileDir === undefined ? {} : { profileDir }),
    }),
  recovery: ({ keys, load }) => benchRecovery(keys, load ?? defaultLoadMode(keys)),
  "restore-requests": async ({ keys }) => ({ bench: "restore-requests", points: await benchRestoreRequests([1_000_000, 3_000_000, 10_000_000].filter((n) => n < keys).concat(keys)) }),
  rules: ({ rules, keys, events }) => benchRules({ rules, keys, events }),
  skew: ({ events, hot, modes, rounds }) => benchSkew({ events, hot, ...(modes === undefined ? {} : { modes }), ...(rounds === undefined ? {} : { rounds }) }),
  state: ({ keys, events, dist, cacheMb, load, warm, profileDir }) =>
    benchState({ keys, events, dist, warm, ...(cacheMb === undefined ? {} : { cacheMb }), ...(load === undefined ? {} : { load }), ...(profileDir === undefined ? {} : { profileDir }) }),
};

const usage = `usage: npm run bench -- <${Object.keys(benches).join("|")}> [--events <n>] [--keys <n>] [--dist zipf|uniform] [--cache-mb <n>] [--load preload|job] [--warm] [--segments on|off] [--rules <n>] [--rate <n>] [--seconds <n>] [--delivery at-least-once|exactly-once] [--checkpoint-interval <ms>] [--profile <dir>] [--gc] [--hot <share>] [--modes ${SKEW_MODES.join(",")}] [--rounds <n>] [--json]`;
let parsed;
try {
  parsed = parseArgs({
    allowPositionals: true,
    options: {
      events: { type: "string", default: "100000" },
      keys: { type: "string", default: "100000" },
      dist: { type: "string", default: "zipf" },
      "cache-mb": { type: "string" },
      load: { type: "string" },
      warm: { type: "boolean", default: false },
      segments: { type: "string", default: "on" },
      rules: { type: "string", default: "100" },
      rate: { type: "string", default: "10000" },
      seconds: { type: "string", default: "10" },
      delivery: { type: "string" },
      "checkpoint-interval": { type: "string" },
      profile: { type: "string" },
      gc: { type: "boolean", default: false },
      hot: { type: "string", default: "0.5" },
      modes: { type: "string" },
      rounds: { type: "string" },
      json: { type: "boolean", default: false },
    },
  });
} catch (e) {
  process.stderr.write(`${(e as Error).message}\n${usage}\n`);
  process.exit(2);
}
const { positionals, values } = parsed;
const name = positionals[0];
const bench = name === undefined ? undefined : benches[name];
const events = Number(values.events);
const keys = Number(values.keys);
const dist = values.dist;
const rules = Number(values.rules);
const cacheMb = values["cache-mb"] === undefined ? undefined : Number(values["cache-mb"]);
const load = values.load;
const rate = Number(values.rate);
const seconds = Number(values.seconds);
const delivery = values.delivery;
const hot = Number(values.hot);
const rounds = values.rounds === undefined ? undefined : Number(values.rounds);
const modes = values.modes?.split(",");
const modesOk = modes === undefined || (modes.length > 0 && modes.every((m) => (SKEW_MODES as readonly string[]).includes(m)));
const checkpointIntervalMs = values["checkpoint-interval"] === undefined ? undefined : Number(values["checkpoint-interval"]);
const latencyOk =
  Number.isInteger(rate) && rate > 0 && rate <= 1_000_000 && Number.isInteger(seconds) && seconds > 0 && seconds <= 3600 &&
  (delivery === undefined || delivery === "at-least-once" || delivery === "exactly-once") &&
  (checkpointIntervalMs === undefined || (Number.isInteger(checkpointIntervalMs) && checkpointIntervalMs > 0));
if (!latencyOk || !modesOk || !(hot >= 0 && hot <= 1) || (rounds !== undefined && (!Number.isInteger(rounds) || rounds < 1 || rounds > 20)) || bench === undefined || positionals.length > 1 || !Number.isInteger(events) || events <= 0 || !Number.isInteger(keys) || keys <= 0 || (dist !== "zipf" && dist !== "uniform") || (cacheMb !== undefined && !(cacheMb > 0)) || (load !== undefined && load !== "preload" && load !== "job") || (values.segments !== "on" && values.segments !== "off") || !Number.isInteger(rules) || rules <= 0 || rules > 1000) {
  process.stderr.write(`${usage}\n`);
  process.exit(2);
}
const result = await bench({ events, keys, dist, cacheMb, load: load as LoadMode | undefined, warm: values.warm, segments: values.segments === "on", rules, rate, seconds, delivery: delivery as SinkDelivery | undefined, checkpointIntervalMs, profileDir: values.profile, hot, modes: modes as SkewMode[] | undefined, rounds, gc: values.gc });
if (values.json) console.log(JSON.stringify(result));
else console.log(result);
