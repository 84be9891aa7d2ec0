/**
 * `eddy checkpoints <job>`: the recent checkpoints of a job as the supervisor recorded them —
 * id, status, duration, alignment time, bytes and keys changed — newest first.
 */
import { connectNats, natsUrlOf } from "../nats/connection.ts";
import { jobSpecKey, type CheckpointRecord } from "../core/protocol.ts";
import { UnknownJobError } from "../nats/control.ts";
import { checkpointRecords, ensureControlStores } from "../nats/control-store.ts";

export interface CheckpointsOptions {
  readonly job: string;
  readonly natsUrl: string | undefined;
  readonly json: boolean;
  readonly limit: number;
}


export async function readCheckpoints(url: string, job: string): Promise<CheckpointRecord[]> {
  const nc = await connectNats(url, "eddy-cli");
  try {
    const stores = await ensureControlStores(nc);
    const spec = await stores.jobs.get(jobSpecKey(job));
    if (spec === null || spec.length === 0) throw new UnknownJobError(`job "${job}" is not known to the cluster at ${url}`);
    // Listed through stream info, not kv.keys(): records are purged while checkpoints run.
    return (await checkpointRecords(stores, job)).map((r) => r.value).sort((a, b) => b.id - a.id);
  } finally {
    await nc.close();
  }
}

const ms = (x: number | undefined) => (x === undefined ? "-" : x < 1000 ? `${Math.round(x)} ms` : `${(x / 1000).toFixed(2)} s`);
const bytes = (x: number | undefined) =>
  x === undefined ? "-" : x < 1024 ? `${x} B` : x < 1024 * 1024 ? `${(x / 1024).toFixed(1)} KiB` : `${(x / 1024 / 1024).toFixed(1)} MiB`;

export async function runCheckpoints(options: CheckpointsOptions): Promise<number> {
  const url = natsUrlOf(options.natsUrl);
  const records = (await readCheckpoints(url, options.job)).slice(0, options.limit);
  if (options.json) {
    console.log(JSON.stringify(records));
    return 0;
  }
  if (records.length === 0) {
    console.log(`job ${options.job}: no checkpoints yet`);
    return 0;
  }
  const rows = records.map((r) => [
    String(r.id),
    r.status + (r.stop ? " (stop)" : "") + (r.finished ? " (input ended)" : ""),
    String(r.generation),
    new Date(r.startedAt).toISOString().replace("T", " ").slice(0, 23),
    ms(r.durationMs),
    ms(r.alignmentMs),
    bytes(r.bytes),
    r.keysChanged === undefined ? "-" : String(r.keysChanged),
    r.reason ?? "",
  ]);
  const head = ["id", "status", "gen", "started (UTC)", "duration", "alignment", "size", "keys changed", "reason"];
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: string[]) => cells.map((c, i) => (i === 0 || i >= 4 && i <= 7 ? c.padStart(widths[i]!) : c.padEnd(widths[i]!))).join("  ").trimEnd();
  console.log(line(head));
  for (const r of rows) console.log(line(r));
  return 0;
}
