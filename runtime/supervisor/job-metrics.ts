/**
 * What the supervisor reports about jobs: checkpoint statistics, generation and input lag, as
 * Prometheus metrics and as the single `lag` figure KEDA's metrics-api trigger scales workers on.
 *
 * Lag is computed from NATS alone (runtime/nats/lag.ts), so any supervisor (leader or standby)
 * can answer: the records — data and state writes, not barriers or watermark updates — that the
 * job's partitions have not processed under a committed checkpoint. An idle job's lag is 0, which
 * is what lets KEDA's activation threshold of 0 scale workers to zero.
 */
import type { NatsConnection } from "../nats/connection.ts";
import { jobLag } from "../nats/lag.ts";
import { assignmentKey, JOBS_BUCKET, statusKey, type JobSpecRecord, type JobStatusRecord } from "../core/protocol.ts";
import { deploymentKey, specOfDeployment, type DeploymentRecord } from "../nats/deployments.ts";
import { MetricsText } from "../metrics/prometheus.ts";
import { addRejectionMetrics } from "../metrics/rejections.ts";
import { ensureControlStores, listJobs, listKeys, readDecoded, readSpec } from "../nats/control-store.ts";
import type { Supervisor } from "./supervisor.ts";

export { jobLag };

export interface JobReport {
  readonly job: string;
  readonly lag: number;
  readonly generation: number;
  /** FAILED: the supervisor will not run it until it is started again, so its lag wakes no worker. */
  readonly failed: boolean;
}

/**
 * Every job the cluster knows: those a worker wrote a spec for, and those deployed without one
 * yet (no worker has run them since), whose spec comes from the deployment record. An undeployed
 * job has neither (undeploy deletes its spec) and no longer counts.
 */
export async function jobReports(nc: NatsConnection): Promise<JobReport[]> {
  const stores = await ensureControlStores(nc);
  const specs = new Map<string, JobSpecRecord>();
  for (const job of await listJobs(stores)) {
    const spec = await readSpec(stores.jobs, job);
    if (spec !== undefined) specs.set(job, spec.value);
  }
  for (const key of await listKeys(stores, JOBS_BUCKET, deploymentKey("*"))) {
    const job = key.slice(0, -deploymentKey("").length);
    if (specs.has(job)) continue;
    // Records are decoded (control-messages.ts): anyone who can write the bucket can write garbage.
    const record = await readDecoded(stores.jobs, key, "deploy").catch(() => undefined);
    const spec = record === undefined || !record.decoded.ok ? undefined : specOfDeployment(record.decoded.value as DeploymentRecord);
    if (spec !== undefined) specs.set(job, spec);
  }
  const out: JobReport[] = [];
  for (const [job, spec] of [...specs].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) {
    const assignment = await readDecoded(stores.jobs, assignmentKey(job), "assignment");
    const status = await readDecoded(stores.jobs, statusKey(job), "status").catch(() => undefined);
    const generation = assignment?.decoded.ok ? assignment.decoded.value.generation : 0;
    out.push({ job, lag: await jobLag(nc, spec).catch(() => 0), generation, failed: status?.decoded.ok === true && (status.decoded.value as Partial<JobStatusRecord>).state === "FAILED" });
  }
  return out;
}

export async function supervisorMetrics(nc: NatsConnection, supervisor: Pick<Supervisor, "id" | "isLeader" | "checkpoints">, at?: number): Promise<string> {
  const m = new MetricsText();
  m.add("eddy_supervisor_leader", "gauge", "1 while this supervisor holds the leader lease.", { supervisor: supervisor.id }, supervisor.isLeader() ? 1 : 0);
  for (const r of await jobReports(nc)) {
    const l = { job: r.job };
    m.add("eddy_job_lag_messages", "gauge", "Input records (data and state writes) not yet processed under a committed checkpoint.", l, r.lag);
    m.add("eddy_job_generation", "gauge", "Current generation of the job (bumped by every recovery).", l, r.generation);
    const records = await supervisor.checkpoints(r.job).catch(() => []);
    const committed = records.filter((c) => c.status === "committed").sort((a, b) => b.id - a.id)[0];
    m.add("eddy_checkpoints_aborted", "gauge", "Aborted checkpoints among the retained records.", l, records.filter((c) => c.status === "aborted").length);
    // Read the clock after the records: counting the lag takes a while, and a checkpoint that
    // committed meanwhile must not come out with a negative age.
    const now = at ?? Date.now();
    if (committed !== undefined) {
      m.add("eddy_checkpoint_last_id", "gauge", "Id of the last committed checkpoint.", l, committed.id);
      m.add("eddy_checkpoint_duration_seconds", "gauge", "Duration of the last committed checkpoint.", l, (committed.durationMs ?? 0) / 1000);
      m.add("eddy_checkpoint_alignment_seconds", "gauge", "Longest barrier alignment of the last committed checkpoint.", l, (committed.alignmentMs ?? 0) / 1000);
      m.add("eddy_checkpoint_age_seconds", "gauge", "Time since the last checkpoint committed.", l, Math.max(0, now - (committed.completedAt ?? now)) / 1000);
      m.add("eddy_checkpoint_bytes", "gauge", "Size of the last committed checkpoint's deltas.", l, committed.bytes ?? 0);
    }
  }
  addRejectionMetrics(m);
  return m.render();
}

/**
 * The figure KEDA scales workers on: total lag over every job that can run. A FAILED job's input
 * waits for `eddy start`; counting it would keep (or bring) workers up that have nothing to do.
 */
export async function scalingLag(nc: NatsConnection): Promise<{ lag: number; jobs: JobReport[] }> {
  const jobs = await jobReports(nc);
  return { lag: jobs.reduce((n, j) => n + (j.failed ? 0 : j.lag), 0), jobs };
}
