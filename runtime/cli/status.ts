/**
 * `eddy status <job>` and `eddy ls`: a look at jobs from NATS alone. `status` shows the job's
 * state (as the supervisor recorded it), how it runs, its generation, restarts, last exception
 * and last checkpoint, the replica health of its streams (leader, lagging replicas: replica-health.ts),
 * and per function and partition the owning worker, the input lag (records not processed
 * under a committed checkpoint, runtime/nats/lag.ts), the committed watermark with its lag behind wall time, and what
 * the actor's read loop awaits now (asked of the workers, as the console does). Works for running, parked, stopped, FAILED
 * and undeployed jobs. The reading is in runtime/nats/job-views.ts; this module formats it.
 */
import { connectNats, natsUrlOf, withNats, type NatsConnection } from "../nats/connection.ts";
import { listJobViews, readJobView, type JobView, type JobViewState } from "../nats/job-views.ts";
import { partitionLags } from "../nats/lag.ts";
import { committedWatermarks } from "../nats/committed-state.ts";
import { actorId, assignmentKey, type RestartRecord } from "../core/protocol.ts";
import { ensureControlStores, readJson } from "../nats/control-store.ts";
import { jobStreams, streamsReplicaHealth, type StreamReplicaHealth } from "../nats/replica-health.ts";
import { chainsOf, liveSampleOf } from "../core/console-view.ts";
import { requestLiveStats } from "../nats/live-stats.ts";

export interface PartitionStatus {
  readonly function: string;
  readonly partition: number;
  readonly owner: string | null;
  /** Messages not yet read; `null` if it cannot be told (the job's spec is gone, a stream is missing). */
  readonly lag: number | null;
  readonly watermark: number | null;
  readonly watermarkLagSeconds: number | null;
  /**
   * What the actor's read loop awaits now, as its worker answers a live request (`eddy status`
   * only; null: no worker answered for it). The console shows the same per partition.
   */
  readonly now?: string | null;
}

export interface JobStatus {
  readonly job: string;
  readonly state: JobViewState;
  readonly mode: JobView["mode"];
  readonly deployedVersion: number | null;
  readonly generation: number;
  readonly restarts: number;
  readonly lastException: RestartRecord | null;
  /** The failures within the supervisor's failure-rate window, oldest first. */
  readonly recentRestarts: readonly RestartRecord[];
  readonly failure: RestartRecord | null;
  readonly nextRestartAt: number | null;
  readonly lastCheckpoint: { id: number; committedAt: number; durationMs: number; stop: boolean; savepoint: string | null } | null;
  readonly partitions: PartitionStatus[];
  /** The replicas of the job's streams (those that exist): leader, current and lagging followers. */
  readonly streams: StreamReplicaHealth[];
  /** Records that do not decode (`<key>: <why>`), shown as absent: see JobView.damaged. */
  readonly damaged: readonly string[];
  /** Per function made by liveRules(): its active rules as `id@version` (as last committed; design note bu). */
  readonly rules: ReadonlyArray<{ readonly function: string; readonly active: readonly string[] | null }>;
  /** The job's operator chains, head first (design note ch): each runs in its head's actors. */
  readonly chains: ReadonlyArray<readonly string[]>;
  /** Per function with live parameters (`eddy params`): those in force as last committed (null: unreadable). */
  readonly parameters: ReadonlyArray<{ readonly function: string; readonly active: Readonly<Record<string, unknown>> | null }>;
}

export async function jobStatus(url: string, job: string, now = Date.now()): Promise<JobStatus> {
  const nc = await connectNats(url, "eddy-cli");
  try {
    const status = await readJobStatus(nc, job, now);
    return { ...status, partitions: await withLiveSteps(nc, job, status.partitions) };
  } finally {
    await nc.close();
  }
}

/**
 * The partitions with what each actor's read loop awaits, asked of the workers that own them (a
 * second at most; a worker that does not answer leaves its partitions at null).
 */
async function withLiveSteps(nc: NatsConnection, job: string, partitions: readonly PartitionStatus[]): Promise<PartitionStatus[]> {
  const owners = new Set(partitions.map((p) => p.owner).filter((o) => o !== null));
  const live = liveSampleOf(await requestLiveStats(nc, job, { expected: owners.size, maxWaitMs: 1_000 }));
  return partitions.map((p) => ({ ...p, now: live.get(`${p.function}/${p.partition}`)?.stats.step ?? null }));
}

/** `jobStatus` over a connection the caller keeps (the console asks every second). */
export async function readJobStatus(nc: NatsConnection, job: string, now = Date.now()): Promise<JobStatus> {
  const view = await readJobView(nc, job);
  const stores = await ensureControlStores(nc);
  const assignment = await readJson(stores.jobs, assignmentKey(job), "assignment");
  const partitions: PartitionStatus[] = [];
  const lags = view.spec === null ? undefined : new Map((await partitionLags(nc, view.spec)).map((l) => [actorId(l.function, l.partition), l.lag]));
  for (const fn of view.functions) {
    const watermarks = await committedWatermarks(nc, job, fn.name, fn.partitions);
    for (let p = 0; p < fn.partitions; p++) {
      const wm = watermarks[p] ?? null;
      partitions.push({
        function: fn.name,
        partition: p,
        owner: assignment?.value.owners[actorId(fn.name, p)] ?? null,
        lag: lags === undefined ? null : (lags.get(actorId(fn.name, p)) ?? null),
        watermark: wm,
        watermarkLagSeconds: wm === null || !Number.isFinite(wm) ? null : Math.round((now - wm) / 100) / 10,
      });
    }
  }
  const streams = await streamsReplicaHealth(nc, jobStreams(job, view.spec?.functions ?? view.functions));
  const rules: Array<{ function: string; active: string[] | null }> = [];
  if (view.spec !== null) {
    const { activeRuleSummary, liveRulesFunctions } = await import("./rules.ts");
    for (const fn of liveRulesFunctions(view.spec.functions)) rules.push({ function: fn, active: await activeRuleSummary(nc, job, fn).catch(() => null) });
  }
  const parameters: Array<{ function: string; active: Record<string, unknown> | null }> = [];
  if (view.spec !== null) {
    const { activeParameters, parameterReaders } = await import("./params.ts");
    for (const fn of parameterReaders(view.spec.functions)) parameters.push({ function: fn, active: await activeParameters(nc, job, fn).catch(() => null) });
  }
  const c = view.lastCheckpoint;
  return {
    job,
    state: view.state,
    mode: view.mode,
    deployedVersion: view.deployment?.version ?? null,
    generation: view.generation,
    restarts: view.restarts,
    lastException: view.lastException,
    recentRestarts: view.recentRestarts,
    failure: view.failure,
    nextRestartAt: view.nextRestartAt,
    lastCheckpoint: c === null ? null : { id: c.id, committedAt: c.committedAt, durationMs: c.durationMs ?? 0, stop: c.stop, savepoint: c.savepoint },
    partitions,
    streams,
    damaged: view.damaged,
    rules,
    parameters,
    chains: view.spec === null ? [] : chainsOf(view.spec),
  };
}

const iso = (ms: number | null) => (ms === null ? "-" : !Number.isFinite(ms) ? (ms > 0 ? "end of input" : "-") : new Date(ms).toISOString().replace("T", " ").slice(0, 23));
const ago = (ms: number, now: number) => `${((now - ms) / 1000).toFixed(1)} s ago`;

/** `function/partition on worker, <time>: reason` — where and when a failure happened. */
export function describeException(e: RestartRecord, now = Date.now()): string {
  const where = [e.function === undefined ? undefined : `${e.function}${e.partition === undefined ? "" : `/${e.partition}`}`, e.worker === undefined ? undefined : `on ${e.worker}`].filter((x) => x !== undefined).join(" ");
  return `${where === "" ? "" : `${where}, `}${iso(e.at)} (${ago(e.at, now)}): ${e.reason}`;
}

/** How a job runs, for people. */
const howItRuns = (s: { mode: JobView["mode"]; deployedVersion: number | null }) =>
  s.mode === "deployed" ? `version ${s.deployedVersion}` : s.mode === "pipeline" ? "run with --pipeline (not deployed)" : "not deployed";

/** The state line shared by `eddy status` and `eddy checkpoints`. */
export function describeState(s: Pick<JobStatus, "state" | "generation" | "restarts" | "lastException" | "failure" | "nextRestartAt" | "lastCheckpoint">, now = Date.now()): string[] {
  const lines = [`state ${s.state}, ${s.restarts} restart${s.restarts === 1 ? "" : "s"} after failures`];
  if (s.state === "RESTARTING" && s.nextRestartAt !== null) lines[0] += `, next restart ${s.nextRestartAt > now ? `in ${((s.nextRestartAt - now) / 1000).toFixed(1)} s` : "due"}`;
  if (s.state === "STOPPED" && s.lastCheckpoint !== null) lines[0] += ` at checkpoint ${s.lastCheckpoint.id}${s.lastCheckpoint.savepoint === null ? "" : `, savepoint ${s.lastCheckpoint.savepoint}`}`;
  if (s.failure !== null) lines.push(`failed: ${describeException(s.failure, now)}`);
  else if (s.lastException !== null) lines.push(`last exception: ${describeException(s.lastException, now)}`);
  return lines;
}

export async function runStatus(o: { job: string; natsUrl: string | undefined; json: boolean }): Promise<number> {
  const s = await jobStatus(natsUrlOf(o.natsUrl), o.job);
  if (o.json) {
    console.log(JSON.stringify(s));
    return 0;
  }
  const now = Date.now();
  const ckpt = s.lastCheckpoint === null ? "none yet" : `${s.lastCheckpoint.id}, ${ago(s.lastCheckpoint.committedAt, now)}, took ${s.lastCheckpoint.durationMs} ms`;
  console.log(`job ${s.job}: ${howItRuns(s)}, generation ${s.generation}, last checkpoint ${ckpt}`);
  for (const line of describeState(s, now)) console.log(line);
  for (const d of s.damaged) console.log(`damaged record (shown as absent): ${d}`);
  const head = ["function", "partition", "owner", "lag", "watermark (UTC)", "watermark lag", "now"];
  const rows = s.partitions.map((p) => [p.function, String(p.partition), p.owner ?? "-", p.lag === null ? "-" : String(p.lag), iso(p.watermark), p.watermarkLagSeconds === null ? "-" : `${p.watermarkLagSeconds} s`, p.now ?? "-"]);
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  for (const r of [head, ...rows]) console.log(r.map((c, i) => (i === 1 || i === 3 ? c.padStart(widths[i]!) : c.padEnd(widths[i]!))).join("  ").trimEnd());
  for (const c of s.chains) console.log(`chain: ${c.join(" → ")} (runs in the actors of ${c[0]})`);
  for (const line of describeReplicas(s.streams)) console.log(line);
  for (const r of s.rules) console.log(`rules of ${r.function}: ${r.active === null ? "unknown (broadcast state unreadable)" : r.active.length === 0 ? "none active" : r.active.join(", ")}`);
  for (const p of s.parameters) console.log(`parameters of ${p.function}: ${p.active === null ? "unknown (broadcast state unreadable)" : Object.keys(p.active).length === 0 ? "none set" : Object.entries(p.active).map(([k, v]) => `${k}=${JSON.stringify(v)}`).join(", ")}`);
  return 0;
}

/**
 * The replica health of a job's streams for people: one line when every stream has one copy (a
 * single server), else a row per stream with its leader and the replicas that are behind or down.
 */
export function describeReplicas(streams: readonly StreamReplicaHealth[]): string[] {
  if (streams.length === 0) return [];
  if (streams.every((s) => s.replicas <= 1 && s.health === "ok")) return [`streams: ${streams.length}, 1 replica each (a lost server or disk loses their data)`];
  const head = ["stream", "current", "leader", "health", "behind or down"];
  const rows = streams.map((s) => [
    s.stream,
    `${(s.leader === null ? 0 : 1) + s.current.length}/${s.replicas}`,
    s.leader ?? "-",
    s.health,
    s.lagging.map((l) => `${l.name} (${l.offline ? "offline" : l.lag === null ? "behind" : `${l.lag} behind`})`).join(", ") || "-",
  ]);
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  return [head, ...rows].map((r) => r.map((c, i) => (i === 1 ? c.padStart(widths[i]!) : c.padEnd(widths[i]!))).join("  ").trimEnd());
}

/** `eddy ls [--all]`: one line per job with its state; JSON is the list of views. */
export async function runLs(o: { natsUrl: string | undefined; json: boolean; all?: boolean }): Promise<number> {
  const list = await withNats(o.natsUrl, (nc) => listJobViews(nc, { all: o.all === true }));
  if (o.json) {
    console.log(JSON.stringify(list));
    return 0;
  }
  if (list.length === 0) {
    console.log(o.all === true ? "no jobs" : "no jobs deployed or running (eddy ls --all lists stopped and undeployed ones)");
    return 0;
  }
  const now = Date.now();
  const rows = list.map((v) => [
    v.job,
    v.deployment !== null ? String(v.deployment.version) : v.mode === "pipeline" ? "pipeline" : v.lastVersion === null ? "-" : `(${v.lastVersion})`,
    v.deployment?.digest.slice(0, 19) ?? "-",
    v.state,
    String(v.generation),
    String(v.restarts),
    v.lastCheckpoint === null ? "-" : `${v.lastCheckpoint.id} (${ago(v.lastCheckpoint.committedAt, now)})`,
    v.functions.map((f) => `${f.name}×${f.partitions}`).join(" "),
  ]);
  const head = ["job", "version", "code", "state", "gen", "restarts", "last checkpoint", "functions"];
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  for (const r of [head, ...rows]) console.log(r.map((c, i) => c.padEnd(widths[i]!)).join("  ").trimEnd());
  return 0;
}
