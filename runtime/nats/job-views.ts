/**
 * What the cluster knows about its jobs, read from the jobs bucket alone for `eddy ls`,
 * `eddy status` and `eddy checkpoints`: the state the supervisor recorded (`<job>.status`), how
 * the job runs (deployed code, a pipeline module, or not at all), its generation, restarts, last
 * exception and last checkpoint. Works whether the job runs, is parked, stopped, FAILED or
 * undeployed — anything that left a key behind is known; only a name nothing was ever stored
 * under is not.
 */
import type { NatsConnection } from "@nats-io/transport-node";
import {
  assignmentKey,
  checkpointKey,
  jobSpecKey,
  JOBS_BUCKET,
  latestKey,
  statusKey,
  type JobSpecRecord,
  type JobStatusRecord,
  type RestartRecord,
} from "../core/protocol.ts";
import { ensureControlStores, listKeys, readDecoded, type ControlStores, type Versioned } from "./control-store.ts";
import type { ControlKind, ControlRecord } from "../core/control-messages.ts";
import { deploymentKey, deploymentVersionKey, type DeploymentRecord } from "./deployments.ts";
import { UnknownJobError } from "./control.ts";

/** A job's state: the supervisor's life-cycle states, or UNDEPLOYED for one only its state is left of. */
export type JobViewState = JobStatusRecord["state"] | "UNDEPLOYED";

/** One job as `eddy ls` and `eddy status` show it. */
export interface JobView {
  readonly job: string;
  readonly state: JobViewState;
  /** Runs deployed code (`eddy deploy`), a pipeline module (`eddy worker --pipeline`), or nothing runs it. */
  readonly mode: "deployed" | "pipeline" | "none";
  /** The current deployment, if any. */
  readonly deployment: DeploymentRecord | null;
  /** The last version ever deployed (the current one, or what `eddy start` would run again). */
  readonly lastVersion: number | null;
  readonly generation: number;
  /** Restarts after failures since the job was created or last started again. */
  readonly restarts: number;
  readonly lastException: RestartRecord | null;
  /** The failures within the supervisor's failure-rate window, oldest first (those that did not decode left out). */
  readonly recentRestarts: readonly RestartRecord[];
  /** Why the job FAILED (while it is FAILED). */
  readonly failure: RestartRecord | null;
  /** While RESTARTING after a failure: when the restart is due. */
  readonly nextRestartAt: number | null;
  readonly lastCheckpoint: {
    readonly id: number;
    readonly generation: number;
    readonly committedAt: number;
    readonly durationMs: number | null;
    readonly stop: boolean;
    readonly savepoint: string | null;
  } | null;
  /** Functions and partitions: from the spec, else the last deployment, else the status record. */
  readonly functions: ReadonlyArray<{ readonly name: string; readonly partitions: number }>;
  /** The job's spec, if one is stored (a job that runs or is meant to). */
  readonly spec: JobSpecRecord | null;
  /** When the supervisor last wrote the status record. */
  readonly statusUpdatedAt: number | null;
  /**
   * Records of the job that do not decode (`<key>: <why>`), shown as absent above: someone who
   * can write the jobs bucket wrote them. The supervisor replaces most at its next poll or commit.
   */
  readonly damaged: readonly string[];
}

/** Key suffixes that make a job known. Job names are subject tokens, so the first token is the name. */
const KNOWN = /^([^.]+)\.(spec|assignment|latest|status|deploy|deploy\.\d+|ckpt\.\d+)$/;

/** Names of every job the jobs bucket holds anything of, and of those that are deployed or have a spec. */
async function jobNames(stores: ControlStores): Promise<{ all: string[]; active: Set<string> }> {
  const all = new Set<string>();
  const active = new Set<string>();
  for (const key of await listKeys(stores, JOBS_BUCKET)) {
    const m = KNOWN.exec(key);
    if (m === null) continue;
    all.add(m[1]!);
    if (m[2] === "spec" || m[2] === "deploy") active.add(m[1]!);
  }
  return { all: [...all].sort(), active };
}

const num = (x: unknown): number | null => (typeof x === "number" && Number.isFinite(x) ? x : null);
/** A restart record as stored, keeping only fields of the right type (anyone with access can write it). */
const record = (x: unknown): RestartRecord | null => {
  if (typeof x !== "object" || x === null) return null;
  const r = x as Record<string, unknown>;
  if (typeof r.reason !== "string" || typeof r.at !== "number") return null;
  return {
    reason: r.reason,
    at: r.at,
    ...(typeof r.function === "string" ? { function: r.function } : {}),
    ...(typeof r.partition === "number" ? { partition: r.partition } : {}),
    ...(typeof r.worker === "string" ? { worker: r.worker } : {}),
  };
};

const STATES: ReadonlySet<string> = new Set(["CREATED", "RUNNING", "RESTARTING", "PARKED", "STOPPED", "FAILED", "FINISHED"]);

async function lastDeployedVersion(stores: ControlStores, job: string): Promise<number | null> {
  let max = 0;
  for (const key of await listKeys(stores, JOBS_BUCKET, `${job}.deploy.*`)) {
    const v = Number(key.slice(`${job}.deploy.`.length));
    if (Number.isSafeInteger(v) && v > max) max = v;
  }
  return max === 0 ? null : max;
}

/** The view of one job, or `undefined` if nothing of it is stored. */
async function viewOf(stores: ControlStores, job: string, known: boolean): Promise<JobView | undefined> {
  const damaged: string[] = [];
  /** A record that decodes (control-messages.ts); one that does not shows as absent and is listed in `damaged`. */
  const readValid = async <K extends ControlKind>(key: string, kind: K): Promise<Versioned<ControlRecord<K>> | undefined> => {
    const r = await readDecoded(stores.jobs, key, kind);
    if (r !== undefined && !r.decoded.ok) damaged.push(`${key}: ${r.decoded.message}`);
    return r?.decoded.ok ? { value: r.decoded.value, revision: r.revision } : undefined;
  };
  const spec = await readValid(jobSpecKey(job), "spec");
  const deployed = (await readValid(deploymentKey(job), "deploy")) as Versioned<DeploymentRecord> | undefined;
  const status = (await readValid(statusKey(job), "status")) as Versioned<Partial<JobStatusRecord>> | undefined;
  const latest = await readValid(latestKey(job), "latest");
  const assignment = await readValid(assignmentKey(job), "assignment");
  const lastVersion = deployed?.value.version ?? (await lastDeployedVersion(stores, job));
  if (!known && spec === undefined && deployed === undefined && status === undefined && latest === undefined && assignment === undefined && lastVersion === null) return undefined;
  const s = status?.value;
  const l = latest?.value;
  const ckpt = l === undefined ? undefined : (await readValid(checkpointKey(job, l.id), "checkpoint"))?.value;
  const stopped = l?.stop === true && l.handoff !== true;
  let state: JobViewState;
  if (spec !== undefined) state = typeof s?.state === "string" && STATES.has(s.state) ? s.state : "CREATED";
  else if (deployed !== undefined) state = "CREATED"; // deployed; no worker has taken it up yet
  else if (stopped) state = "STOPPED";
  else state = "UNDEPLOYED";
  const lastDeployment = deployed?.value ?? (lastVersion === null ? undefined : ((await readValid(deploymentVersionKey(job, lastVersion), "deploy"))?.value as DeploymentRecord | undefined));
  const functions =
    spec !== undefined && Array.isArray(spec.value.functions) ? spec.value.functions.map((f) => ({ name: f.name, partitions: f.partitions }))
    : Array.isArray(lastDeployment?.functions) ? lastDeployment.functions.map((f) => ({ name: f.name, partitions: f.partitions }))
    : Array.isArray(s?.functions) ? s.functions.filter((f) => typeof f?.name === "string" && Number.isSafeInteger(f.partitions) && f.partitions > 0 && f.partitions <= 4096).map((f) => ({ name: f.name, partitions: f.partitions }))
    : [];
  return {
    job,
    state,
    mode: deployed !== undefined ? "deployed" : spec !== undefined ? "pipeline" : "none",
    deployment: deployed?.value ?? null,
    lastVersion,
    generation: assignment?.value.generation ?? num(s?.generation) ?? 0,
    restarts: num(s?.restarts) ?? 0,
    lastException: record(s?.lastException),
    recentRestarts: Array.isArray(s?.recentRestarts) ? s.recentRestarts.flatMap((r) => record(r) ?? []) : [],
    failure: state === "FAILED" ? record(s?.failed?.cause) : null,
    nextRestartAt: state === "RESTARTING" ? num(s?.nextRestartAt) : null,
    lastCheckpoint:
      l === undefined ? null : (
        {
          id: l.id,
          generation: l.generation,
          committedAt: l.committedAt,
          durationMs: ckpt?.id === l.id ? (ckpt.durationMs ?? null) : null,
          stop: stopped,
          savepoint: ckpt?.id === l.id ? (ckpt.savepoint ?? null) : null,
        }
      ),
    functions,
    spec: spec?.value ?? null,
    statusUpdatedAt: num(s?.updatedAt),
    damaged,
  };
}

/** One job's view; rejects with {@link UnknownJobError} if the cluster holds nothing of it. */
export async function readJobView(nc: NatsConnection, job: string): Promise<JobView> {
  const stores = await ensureControlStores(nc);
  const view = await viewOf(stores, job, false);
  if (view === undefined) throw new UnknownJobError(`job "${job}" is not known to the cluster (nothing of it is stored in ${JOBS_BUCKET})`);
  return view;
}

/**
 * Every job that is deployed or has a spec (one that runs, or is meant to: also PARKED, FAILED,
 * FINISHED); with `all`, also jobs only their state is left of (stopped or undeployed).
 */
export async function listJobViews(nc: NatsConnection, options: { readonly all?: boolean } = {}): Promise<JobView[]> {
  const stores = await ensureControlStores(nc);
  const { all, active } = await jobNames(stores);
  const out: JobView[] = [];
  for (const job of all) {
    // A deleted spec or deployment is still listed (a delete marker): the view tells.
    if (options.all !== true && !active.has(job)) continue;
    const view = await viewOf(stores, job, true);
    if (view !== undefined && (options.all === true || view.spec !== null || view.deployment !== null)) out.push(view);
  }
  return out;
}
