/**
 * `eddy status <job>`: one look at a job from NATS alone — deployed version, generation, last
 * checkpoint, and per function and partition: the owning worker, the lag (records not processed
 * under a committed checkpoint, runtime/nats/lag.ts) and the committed
 * watermark with its lag behind wall time. Works whether or not the job is running.
 */
import { Kvm } from "@nats-io/kv";
import { connectNats, natsUrlOf } from "../nats/connection.ts";
import { UnknownJobError } from "../nats/control.ts";
import { currentDeployment, openDeployments } from "../nats/deployments.ts";
import { partitionLags } from "../nats/lag.ts";
import { watermarkKey } from "../core/kv-keys.ts";
import { stateBucket } from "../core/naming.ts";
import { actorId, assignmentKey, jobSpecKey, type Assignment, type JobSpecRecord } from "../core/protocol.ts";
import { decodeValue } from "../core/wire.ts";
import { checkpointRecords, ensureControlStores, readJson } from "../supervisor/control-store.ts";

export interface PartitionStatus {
  readonly function: string;
  readonly partition: number;
  readonly owner: string | null;
  readonly lag: number;
  readonly watermark: number | null;
  readonly watermarkLagSeconds: number | null;
}

export interface JobStatus {
  readonly job: string;
  readonly deployedVersion: number | null;
  readonly generation: number;
  readonly lastCheckpoint: { id: number; committedAt: number; durationMs: number } | null;
  readonly partitions: PartitionStatus[];
}

export async function jobStatus(url: string, job: string, now = Date.now()): Promise<JobStatus> {
  const nc = await connectNats(url, "eddy-cli");
  try {
    const stores = await ensureControlStores(nc);
    const spec = await readJson<JobSpecRecord>(stores.jobs, jobSpecKey(job));
    if (spec === undefined) throw new UnknownJobError(`job "${job}" is not known to the cluster at ${url}`);
    const assignment = await readJson<Assignment>(stores.jobs, assignmentKey(job));
    const deployment = await currentDeployment(await openDeployments(nc), job);
    const committed = (await checkpointRecords(stores, job)).map((r) => r.value).filter((r) => r.status === "committed").sort((a, b) => b.id - a.id)[0];
    const kvm = new Kvm(nc);
    const lags = new Map((await partitionLags(nc, spec.value)).map((l) => [actorId(l.function, l.partition), l.lag]));
    const partitions: PartitionStatus[] = [];
    for (const f of spec.value.functions) {
      const kv = await kvm.open(stateBucket(job, f.name));
      for (let p = 0; p < f.partitions; p++) {
        const wmEntry = await kv.get(watermarkKey(p)).catch(() => null);
        const wm = wmEntry === null || wmEntry.length === 0 ? null : ((decodeValue(wmEntry.value) as { out: number | null }).out ?? null);
        partitions.push({
          function: f.name,
          partition: p,
          owner: assignment?.value.owners[actorId(f.name, p)] ?? null,
          lag: lags.get(actorId(f.name, p)) ?? 0,
          watermark: wm,
          watermarkLagSeconds: wm === null || !Number.isFinite(wm) ? null : Math.round((now - wm) / 100) / 10,
        });
      }
    }
    return {
      job,
      deployedVersion: deployment?.record.version ?? null,
      generation: assignment?.value.generation ?? 0,
      lastCheckpoint: committed === undefined ? null : { id: committed.id, committedAt: committed.completedAt ?? 0, durationMs: committed.durationMs ?? 0 },
      partitions,
    };
  } finally {
    await nc.close();
  }
}

const iso = (ms: number | null) => (ms === null ? "-" : !Number.isFinite(ms) ? (ms > 0 ? "end of input" : "-") : new Date(ms).toISOString().replace("T", " ").slice(0, 23));

export async function runStatus(o: { job: string; natsUrl: string | undefined; json: boolean }): Promise<number> {
  const s = await jobStatus(natsUrlOf(o.natsUrl), o.job);
  if (o.json) {
    console.log(JSON.stringify(s));
    return 0;
  }
  const ckpt = s.lastCheckpoint === null ? "none yet" : `${s.lastCheckpoint.id}, ${((Date.now() - s.lastCheckpoint.committedAt) / 1000).toFixed(1)} s ago, took ${s.lastCheckpoint.durationMs} ms`;
  console.log(`job ${s.job}: ${s.deployedVersion === null ? "not deployed (run with --pipeline)" : `version ${s.deployedVersion}`}, generation ${s.generation}, last checkpoint ${ckpt}`);
  const head = ["function", "partition", "owner", "lag", "watermark (UTC)", "watermark lag"];
  const rows = s.partitions.map((p) => [p.function, String(p.partition), p.owner ?? "-", String(p.lag), iso(p.watermark), p.watermarkLagSeconds === null ? "-" : `${p.watermarkLagSeconds} s`]);
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  for (const r of [head, ...rows]) console.log(r.map((c, i) => (i === 1 || i === 3 ? c.padStart(widths[i]!) : c.padEnd(widths[i]!))).join("  ").trimEnd());
  return 0;
}
