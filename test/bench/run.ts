/**
 * `npm run bench -- <name> [--events <n>] [--keys <n>] [--dist zipf|uniform] [--json]`: runs one
 * benchmark and prints its result, as one JSON line with --json. Benchmarks measure speed; tests
 * never do.
 */
import { parseArgs } from "node:util";
import { benchCheckpoint } from "./checkpoint.ts";
import { benchPipeline } from "./pipeline.ts";
import { benchRecovery } from "./recovery.ts";
import { benchState, type KeyDistribution } from "./state.ts";

interface BenchOptions {
  readonly events: number;
  readonly keys: number;
  readonly dist: KeyDistribution;
}

const benches: Record<string, (opts: BenchOptions) => Promise<object>> = {
  pipeline: ({ events }) => benchPipeline(events),
  checkpoint: ({ keys }) => benchCheckpoint(keys),
  recovery: ({ keys }) => benchRecovery(keys),
  state: ({ keys, events, dist }) => benchState({ keys, events, dist }),
};

const usage = `usage: npm run bench -- <${Object.keys(benches).join("|")}> [--events <n>] [--keys <n>] [--dist zipf|uniform] [--json]`;
let parsed;
try {
  parsed = parseArgs({
    allowPositionals: true,
    options: {
      events: { type: "string", default: "100000" },
      keys: { type: "string", default: "100000" },
      dist: { type: "string", default: "zipf" },
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
if (bench === undefined || positionals.length > 1 || !Number.isInteger(events) || events <= 0 || !Number.isInteger(keys) || keys <= 0 || (dist !== "zipf" && dist !== "uniform")) {
  process.stderr.write(`${usage}\n`);
  process.exit(2);
}
const result = await bench({ events, keys, dist });
if (values.json) console.log(JSON.stringify(result));
else console.log(result);
