/**
 * What the supervisor reports about jobs: checkpoint statistics, generation and input lag, as
 * Prometheus metrics and as the single `lag` figure KEDA's metrics-api trigger scales workers on.
 *
 * Lag is computed from NATS alone, so any supervisor (leader or standby) can answer: for a source,
 * the messages of its stream after the position of the last committed checkpoint; for any other
 * function, the messages in its input stream — committed input is purged there, so what is left
 * is the backlog since the last commit, plus the last barrier and watermark updates of each
 * producer (a handful per partition, negligible against any scaling threshold). For a
 * multi-partition source the stream's last sequence stands for every partition's, which
 * overestimates lag on skewed inputs.
 */
import type { NatsConnection } from "@nats-io/transport-node";
import { Kvm } from "@nats-io/kv";
import { jetstreamManager } from "@nats-io/jetstream";
import { positionKey } from "../core/kv-keys.ts";
import { inputStream, stateBucket } from "../core/naming.ts";
import { assignmentKey, type Assignment, type JobSpecRecord } from "../core/protocol.ts";
import { decodeValue } from "../core/wire.ts";
import { MetricsText } from "../metrics/prometheus.ts";
import { ensureControlStores, listJobs, readJson, readSpec } from "../nats/control-store.ts";
import type { Supervisor } from "./supervisor.ts";

/** Messages waiting to be processed by `spec`'s job (see the module notes). */
export async function jobLag(nc: NatsConnection, spec: JobSpecRecord): Promise<number> {
  const jsm = await jetstreamManager(nc);
  const kvm = new Kvm(nc);
  let lag = 0;
  for (const f of spec.functions) {
    if (f.stream !== undefined) {
      const last = (await jsm.streams.info(f.stream)).state.last_seq;
      const kv = await kvm.open(stateBucket(spec.job, f.name));
      for (let p = 0; p < f.partitions; p++) {
        const e = await kv.get(positionKey(p)).catch(() => null);
        const next = e === null || e.length === 0 ? 1 : (decodeValue(e.value) as number);
        lag += Math.max(0, last - next + 1);
      }
    } else {
      lag += (await jsm.streams.info(inputStream(spec.job, f.name))).state.messages;
    }
  }
  return lag;
}

export interface JobReport {
  readonly job: string;
  readonly lag: number;
  readonly generation: number;
}

export async function jobReports(nc: NatsConnection): Promise<JobReport[]> {
  const stores = await ensureControlStores(nc);
  const out: JobReport[] = [];
  for (const job of await listJobs(stores)) {
    const spec = await readSpec(stores.jobs, job);
    if (spec === undefined) continue;
    const assignment = await readJson<Assignment>(stores.jobs, assignmentKey(job));
    out.push({ job, lag: await jobLag(nc, spec.value).catch(() => 0), generation: assignment?.value.generation ?? 0 });
  }
  return out;
}

export async function supervisorMetrics(nc: NatsConnection, supervisor: Pick<Supervisor, "id" | "isLeader" | "checkpoints">, now = Date.now()): Promise<string> {
  const m = new MetricsText();
  m.add("eddy_supervisor_leader", "gauge", "1 while this supervisor holds the leader lease.", { supervisor: supervisor.id }, supervisor.isLeader() ? 1 : 0);
  for (const r of await jobReports(nc)) {
    const l = { job: r.job };
    m.add("eddy_job_lag_messages", "gauge", "Input messages not yet covered by a committed checkpoint.", l, r.lag);
    m.add("eddy_job_generation", "gauge", "Current generation of the job (bumped by every recovery).", l, r.generation);
    const records = await supervisor.checkpoints(r.job).catch(() => []);
    const committed = records.filter((c) => c.status === "committed").sort((a, b) => b.id - a.id)[0];
    m.add("eddy_checkpoints_aborted", "gauge", "Aborted checkpoints among the retained records.", l, records.filter((c) => c.status === "aborted").length);
    if (committed !== undefined) {
      m.add("eddy_checkpoint_last_id", "gauge", "Id of the last committed checkpoint.", l, committed.id);
      m.add("eddy_checkpoint_duration_seconds", "gauge", "Duration of the last committed checkpoint.", l, (committed.durationMs ?? 0) / 1000);
      m.add("eddy_checkpoint_alignment_seconds", "gauge", "Longest barrier alignment of the last committed checkpoint.", l, (committed.alignmentMs ?? 0) / 1000);
      m.add("eddy_checkpoint_age_seconds", "gauge", "Time since the last checkpoint committed.", l, (now - (committed.completedAt ?? now)) / 1000);
      m.add("eddy_checkpoint_bytes", "gauge", "Size of the last committed checkpoint's deltas.", l, committed.bytes ?? 0);
    }
  }
  return m.render();
}

/** The figure KEDA scales workers on: total lag over every job. */
export async function scalingLag(nc: NatsConnection): Promise<{ lag: number; jobs: JobReport[] }> {
  const jobs = await jobReports(nc);
  return { lag: jobs.reduce((n, j) => n + j.lag, 0), jobs };
}
