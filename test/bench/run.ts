/**
 * `npm run bench -- <name> [--events <n>] [--keys <n>] [--dist zipf|uniform] [--cache-mb <n>] [--segments on|off] [--rules <n>] [--json]`: runs one
 * benchmark and prints its result, as one JSON line with --json. Benchmarks measure speed; tests
 * never do.
 */
import { parseArgs } from "node:util";
import { benchCheckpoint } from "./checkpoint.ts";
import { benchKv } from "./kv.ts";
import { benchPipeline } from "./pipeline.ts";
import { benchRecovery } from "./recovery.ts";
import { benchRestoreRequests } from "./restore-requests.ts";
import { benchRules } from "./rules.ts";
import { benchState, type KeyDistribution } from "./state.ts";

interface BenchOptions {
  readonly events: number;
  readonly keys: number;
  readonly dist: KeyDistribution;
  /** `--state-cache-mb` of the workers a benchmark starts (state only). */
  readonly cacheMb: number | undefined;
  /** Continuous upload of changes (checkpoint only; `--segments off` uploads at the barrier). */
  readonly segments: boolean;
  /** Most active rules (rules only: runs with 1, 10, 100 up to it). */
  readonly rules: number;
}

const benches: Record<string, (opts: BenchOptions) => Promise<object>> = {
  pipeline: ({ events }) => benchPipeline(events),
  checkpoint: ({ keys, segments }) => benchCheckpoint(keys, segments),
  kv: ({ keys }) => benchKv(keys),
  recovery: ({ keys }) => benchRecovery(keys),
  "restore-requests": async ({ keys }) => ({ bench: "restore-requests", points: await benchRestoreRequests([1_000_000, 3_000_000, 10_000_000].filter((n) => n < keys).concat(keys)) }),
  rules: ({ rules, keys, events }) => benchRules({ rules, keys, events }),
  state: ({ keys, events, dist, cacheMb }) => benchState({ keys, events, dist, ...(cacheMb === undefined ? {} : { cacheMb }) }),
};

const usage = `usage: npm run bench -- <${Object.keys(benches).join("|")}> [--events <n>] [--keys <n>] [--dist zipf|uniform] [--cache-mb <n>] [--segments on|off] [--rules <n>] [--json]`;
let parsed;
try {
  parsed = parseArgs({
    allowPositionals: true,
    options: {
      events: { type: "string", default: "100000" },
      keys: { type: "string", default: "100000" },
      dist: { type: "string", default: "zipf" },
      "cache-mb": { type: "string" },
      segments: { type: "string", default: "on" },
      rules: { type: "string", default: "100" },
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
if (bench === undefined || positionals.length > 1 || !Number.isInteger(events) || events <= 0 || !Number.isInteger(keys) || keys <= 0 || (dist !== "zipf" && dist !== "uniform") || (cacheMb !== undefined && !(cacheMb > 0)) || (values.segments !== "on" && values.segments !== "off") || !Number.isInteger(rules) || rules <= 0 || rules > 1000) {
  process.stderr.write(`${usage}\n`);
  process.exit(2);
}
const result = await bench({ events, keys, dist, cacheMb, segments: values.segments === "on", rules });
if (values.json) console.log(JSON.stringify(result));
else console.log(result);
