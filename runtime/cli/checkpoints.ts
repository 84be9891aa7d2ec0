/**
 * `eddy checkpoints <job>`: the recent checkpoints of a job as the supervisor recorded them —
 * id, status, duration, alignment time, bytes and keys changed — newest first — followed by the
 * job's state, restarts and last exception. Works for stopped, parked, FAILED and undeployed jobs.
 */
import { connectNats, natsUrlOf, type NatsConnection } from "../nats/connection.ts";
import type { CheckpointRecord } from "../core/protocol.ts";
import { readJobView, type JobView } from "../nats/job-views.ts";
import { checkpointRecords, ensureControlStores } from "../nats/control-store.ts";
import { describeState } from "./status.ts";

export interface CheckpointsOptions {
  readonly job: string;
  readonly natsUrl: string | undefined;
  readonly json: boolean;
  readonly limit: number;
}


/** The job's checkpoint records, newest first, and its view; works for jobs that do not run too. */
export async function readCheckpoints(url: string, job: string): Promise<{ view: JobView; records: CheckpointRecord[] }> {
  const nc = await connectNats(url, "eddy-cli");
  try {
    return { view: await readJobView(nc, job), records: await readCheckpointRecords(nc, job) };
  } finally {
    await nc.close();
  }
}

/** The job's checkpoint records, newest first. Rejects with UnknownJobError only if nothing of the job is stored. */
export async function readCheckpointRecords(nc: NatsConnection, job: string): Promise<CheckpointRecord[]> {
  const stores = await ensureControlStores(nc);
  // Listed through stream info, not kv.keys(): records are purged while checkpoints run.
  return (await checkpointRecords(stores, job)).map((r) => r.value).sort((a, b) => b.id - a.id);
}

const ms = (x: number | undefined) => (x === undefined ? "-" : x < 1000 ? `${Math.round(x)} ms` : `${(x / 1000).toFixed(2)} s`);
const bytes = (x: number | undefined) =>
  x === undefined ? "-" : x < 1024 ? `${x} B` : x < 1024 * 1024 ? `${(x / 1024).toFixed(1)} KiB` : `${(x / 1024 / 1024).toFixed(1)} MiB`;

export async function runCheckpoints(options: CheckpointsOptions): Promise<number> {
  const url = natsUrlOf(options.natsUrl);
  const { view, records: all } = await readCheckpoints(url, options.job);
  const records = all.slice(0, options.limit);
  if (options.json) {
    console.log(JSON.stringify(records));
    return 0;
  }
  // The table comes first (scripts read its head); the job's state follows it.
  const footer = () => {
    const last = view.lastCheckpoint === null ? "none" : `${view.lastCheckpoint.id} (generation ${view.lastCheckpoint.generation})`;
    console.log(`job ${view.job}: generation ${view.generation}, last committed checkpoint ${last}`);
    for (const line of describeState({ ...view, lastCheckpoint: view.lastCheckpoint === null ? null : { ...view.lastCheckpoint, durationMs: view.lastCheckpoint.durationMs ?? 0 } })) console.log(line);
  };
  if (records.length === 0) {
    console.log(`job ${options.job}: no checkpoints yet`);
    footer();
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
  footer();
  return 0;
}
