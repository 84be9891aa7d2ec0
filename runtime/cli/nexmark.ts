/**
 * `eddy nexmark run` and `eddy nexmark bench`: a Nexmark query on eddy over NATS, from a file of
 * events to a file of result rows, or timed on generated events with the CPU of eddy and
 * nats-server counted.
 */
import { writeFile } from "node:fs/promises";
import { QUERIES, type QueryName } from "../../functions/nexmark/model.ts";
import { benchNaive, benchQuery, readEventsFile, runQuery, UnknownQueryError, type Ingest } from "../../functions/nexmark/harness.ts";

export { MAX_BENCH_ROUNDS } from "../../functions/nexmark/harness.ts";

export function parseQuery(q: string): QueryName {
  if (!(QUERIES as readonly string[]).includes(q)) throw new UnknownQueryError(`unknown query "${q}"; eddy implements ${QUERIES.join(", ")}`);
  return q as QueryName;
}

export async function runNexmarkRun(options: { query: string; input: string; out: string; natsUrl: string | undefined }): Promise<number> {
  const q = parseQuery(options.query);
  const events = await readEventsFile(options.input);
  const rows = await runQuery(q, events, options.natsUrl);
  await writeFile(options.out, rows.map((r) => JSON.stringify(r)).join("\n") + (rows.length > 0 ? "\n" : ""));
  process.stderr.write(`eddy nexmark: ${q} over ${events.length} events -> ${rows.length} rows in ${options.out}\n`);
  return 0;
}

export async function runNexmarkBench(options: {
  query: string;
  events: number;
  seed: number;
  json: boolean;
  baseline: boolean;
  natsUrl: string | undefined;
  checkpointIntervalMs: number;
  /** One event per message (default) or batches of 100 JSON lines (design note ce). */
  ingest?: Ingest;
  /** Runs of the query, each followed by one ceiling pass; the medians are reported (default 1). */
  rounds?: number;
}): Promise<number> {
  const q = parseQuery(options.query);
  if (options.baseline && options.ingest === "batched") throw new UnknownQueryError("the naive baseline reads one event per message; drop --ingest batched");
  if (options.baseline && q !== "q5" && q !== "q7") throw new UnknownQueryError("the naive baseline exists for q5 and q7");
  const result = options.baseline ? await benchNaive(q as "q5" | "q7", options.events, options.seed, options.natsUrl) : await benchQuery(q, options.events, options.seed, options.natsUrl, options.checkpointIntervalMs, options.ingest ?? "single", options.rounds ?? 1);
  if (options.json) console.log(JSON.stringify(result));
  else for (const [k, v] of Object.entries(result)) console.log(`${k.padEnd(28)} ${k === "rounds" ? JSON.stringify(v) : v}`);
  return result.correct ? 0 : 1;
}
