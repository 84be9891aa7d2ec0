/**
 * `npm run bench -- <name> [--events <n>] [--json]`: runs one benchmark and prints its result,
 * as one JSON line with --json. Benchmarks measure speed; tests never do.
 */
import { parseArgs } from "node:util";
import { benchCheckpoint } from "./checkpoint.ts";
import { benchPipeline } from "./pipeline.ts";

const benches: Record<string, (opts: { events: number; keys: number }) => Promise<object>> = {
  pipeline: ({ events }) => benchPipeline(events),
  checkpoint: ({ keys }) => benchCheckpoint(keys),
};

const { positionals, values } = parseArgs({
  allowPositionals: true,
  options: {
    events: { type: "string", default: "100000" },
    keys: { type: "string", default: "100000" },
    json: { type: "boolean", default: false },
  },
});
const name = positionals[0];
const bench = name === undefined ? undefined : benches[name];
const events = Number(values.events);
const keys = Number(values.keys);
if (bench === undefined || !Number.isInteger(events) || events <= 0 || !Number.isInteger(keys) || keys <= 0) {
  process.stderr.write(`usage: npm run bench -- <${Object.keys(benches).join("|")}> [--events <n>] [--keys <n>] [--json]\n`);
  process.exit(2);
}
const result = await bench({ events, keys });
if (values.json) console.log(JSON.stringify(result));
else console.log(result);
