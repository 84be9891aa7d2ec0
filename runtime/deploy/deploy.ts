/**
 * `eddy deploy`, `eddy rollback`, `eddy undeploy`, `eddy ls`: deployments as records in NATS.
 *
 * Deploying bundles the module, loads and validates the bundle exactly as a worker would, checks
 * that it is compatible with the running version (same functions and partitions; every state
 * kept with the same kind and schema version, or a migration from it), stores the code by digest and only then publishes
 * the new version — so a bad module never replaces a good one.
 */
import type { NatsConnection } from "../nats/connection.ts";
import { buildJobGraph, type JobGraph } from "../core/job-graph.ts";
import { physicalPipeline } from "../actor/chain.ts";
import { ensureControlPlane, ensureJobStores, ensureJobTopology, ensureUpsertBuckets } from "../nats/topology.ts";
import type { StateDeclarations } from "../sdk/state.ts";
import { bundleModule, InvalidModuleError, loadPipelines, withDefaultPartitions } from "./bundle.ts";
import {
  currentDeployment,
  deploymentVersion,
  lastVersion,
  listDeployments,
  openDeployments,
  publishDeployment,
  putCode,
  reinstateDeployment,
  removeDeployment,
  type DeploymentRecord,
  type StateSignature,
} from "../nats/deployments.ts";
import { restoreSavepoint, restoreTargetOf } from "../nats/savepoints.ts";
import { createUserStream, streamFacts } from "../nats/streams.ts";
import { replicasOf } from "../nats/replicas.ts";
import { missingStreams, missingStreamsMessage, sinkStreamName, streamNeeds, type StreamToCreate } from "./stream-checks.ts";
import { InputError } from "../errors.ts";

/** The new version cannot take over the state of the running one; the message names what differs. */
export class IncompatibleDeploymentError extends InputError {
  override readonly name = "IncompatibleDeploymentError";
}

/** A source stream is missing or a sink subject is captured by no stream; the message says what to create. */
export class MissingStreamsError extends InputError {
  override readonly name = "MissingStreamsError";
}

/** The job has no deployment (or no such version). */
export class NoDeploymentError extends InputError {
  override readonly name = "NoDeploymentError";
}

/**
 * A state's signature as deployments record it. `migratesFrom` (the versions the declaration has
 * migrations from, ascending) is only present when there are any, so records of code without
 * migrations stay as they were.
 */
type SignedState = StateSignature[string] & { readonly migratesFrom?: readonly number[] };

/**
 * What a deployment records of each function of `graph`; `chained` names the functions that run
 * in their producer's actors (note ch), which have no actors or snapshots of their own.
 */
export function signatureOf(graph: JobGraph, chained: ReadonlySet<string> = new Set()): DeploymentRecord["functions"] {
  return graph.functions.map((f) => {
    const state: Record<string, SignedState> = {};
    for (const [name, decl] of Object.entries((f.spec.state ?? {}) as StateDeclarations)) {
      const migratesFrom = Object.keys(decl.migrations ?? {}).map(Number).sort((a, b) => a - b);
      state[name] = { kind: decl.kind, version: decl.version ?? 1, ...(migratesFrom.length === 0 ? {} : { migratesFrom }) };
    }
    const source = f.stream === undefined ? undefined : { stream: f.stream.stream, subjects: subjectsOf(f.stream.subject, f.partitions) };
    return { name: f.name, partitions: f.partitions, state: state as StateSignature, ...(source === undefined ? {} : { source }), ...(f.spec.upsert === undefined ? {} : { upsert: f.spec.upsert.bucket }), ...(chained.has(f.name) ? { chained: true } : {}) };
  });
}

/** Each partition's subject filter on a source's user stream. */
function subjectsOf(subject: string | ((p: number) => string) | undefined, partitions: number): string[] {
  return Array.from({ length: partitions }, (_, p) => (typeof subject === "function" ? subject(p) : subject ?? ">"));
}

/** Why `next` cannot replace `current`, or undefined when it can. */
export function incompatibility(current: DeploymentRecord["functions"], next: DeploymentRecord["functions"]): string | undefined {
  const names = (fs: DeploymentRecord["functions"]) => fs.map((f) => f.name).sort().join(", ");
  if (names(current) !== names(next)) return `functions differ: running [${names(current)}], new [${names(next)}]`;
  for (const f of current) {
    const n = next.find((x) => x.name === f.name)!;
    if (n.partitions !== f.partitions) return `function "${f.name}": partitions ${f.partitions} -> ${n.partitions} (state is partitioned; repartition it first)`;
    // Its checkpoints hold no snapshot of a chained function: restored with actors of its own, it
    // would find none (note ch). A savepoint's restore starts functions it lacks empty.
    if (f.chained === true && n.chained !== true) return `function "${f.name}" runs chained in its producer's actors and would get actors of its own (unchaining needs a savepoint: eddy stop --savepoint, then eddy deploy --from-savepoint)`;
    for (const [state, s] of Object.entries(f.state)) {
      const t = n.state[state];
      if (t === undefined) continue; // dropped state is simply no longer read
      if (t.kind !== s.kind) return `function "${f.name}", state "${state}": kind ${s.kind} -> ${t.kind}`;
      // A migration from the running version lets the new one read its values.
      if (t.version !== s.version && !((t as SignedState).migratesFrom ?? []).includes(s.version)) {
        return `function "${f.name}", state "${state}": schema version ${s.version} -> ${t.version} (no migration)`;
      }
    }
  }
  return undefined;
}

export interface DeployResult {
  readonly job: string;
  readonly version: number;
  readonly digest: string;
  readonly unchanged: boolean;
  /** User streams `--create-streams` created for this job. */
  readonly createdStreams?: readonly StreamToCreate[];
  /** The job was stopped and now runs its last version again (no new version). */
  readonly started?: boolean;
  /** With `fromSavepoint`: what the restore did (checkpoint it became, states migrated, dropped, skipped). */
  readonly restored?: {
    readonly savepoint: string;
    readonly checkpoint: number;
    readonly migrated: readonly unknown[];
    readonly skipped: readonly unknown[];
    readonly droppedStates: readonly unknown[];
    readonly emptyStates: readonly unknown[];
  };
}

export async function deployModule(
  nc: NatsConnection,
  path: string,
  options: { job?: string; partitions?: number; fromSavepoint?: string; skipState?: readonly string[]; createStreams?: boolean } = {},
): Promise<DeployResult[]> {
  if (options.partitions !== undefined && (!Number.isInteger(options.partitions) || options.partitions < 1 || options.partitions > 4096)) {
    throw new InvalidModuleError(`--partitions must be an integer in 1..4096`);
  }
  const bundle = await bundleModule(path);
  const loaded = await loadPipelines(bundle.code, path);
  if (options.job !== undefined && loaded.length > 1) throw new InvalidModuleError(`${path} exports ${loaded.length} pipelines; --job can name only one`);
  const store = await openDeployments(nc);
  const plans = loaded.map(({ pipeline }) => {
    const job = options.job ?? pipeline.name;
    let graph: JobGraph;
    try {
      graph = buildJobGraph({ ...withDefaultPartitions(pipeline, options.partitions), name: job });
    } catch (e) {
      throw new InvalidModuleError(`${path}: ${(e as Error).message}`, { cause: e });
    }
    // The functions that get actors, streams and snapshots: a chained function has none (note ch).
    const physical = physicalPipeline({ ...withDefaultPartitions(pipeline, options.partitions), name: job }).graph;
    const chained = new Set(graph.functions.map((f) => f.name).filter((name) => !physical.functions.some((f) => f.name === name)));
    return { job, pipeline: pipeline.name, functions: signatureOf(graph, chained), graph, physical };
  });
  if (options.fromSavepoint !== undefined && plans.length !== 1) throw new InvalidModuleError(`${path} exports ${plans.length} pipelines; --from-savepoint restores one job`);
  // Every check passes before anything is written. After an undeploy the job's state is still
  // there: the last version ever deployed is what a new one must be compatible with.
  const currents = await Promise.all(plans.map((p) => currentDeployment(store, p.job)));
  const lasts = await Promise.all(plans.map((p, i) => (currents[i] !== undefined ? Promise.resolve(currents[i]!.record) : lastVersion(store, p.job))));
  plans.forEach((p, i) => {
    const last = lasts[i];
    // From a savepoint, the savepoint's state is what the new version must read (checked below).
    const why = last === undefined || options.fromSavepoint !== undefined ? undefined : incompatibility(last.functions, p.functions);
    if (why !== undefined) {
      const running = currents[i] !== undefined ? `version ${last!.version} keeps running` : `its state is that of version ${last!.version}`;
      throw new IncompatibleDeploymentError(`cannot deploy ${path} as a new version of job "${p.job}" (${running}): ${why}`);
    }
  });
  // The user streams: sources must exist and sink subjects be captured, or the job would deploy
  // and then fail on the workers. Refused with what to create, or created with --create-streams.
  const needs = plans.flatMap((p) => streamNeeds(p.graph));
  const facts = await streamFacts(
    nc,
    needs.flatMap((n) => (n.kind === "source" ? [n.stream] : [])),
    needs.flatMap((n) => (n.kind === "sink" ? [n.subject] : [])),
    needs.flatMap((n) => (n.kind === "sink" ? [sinkStreamName(n.subject)] : [])),
  );
  const missing = missingStreams(needs, facts, facts.taken, replicasOf(nc));
  const createdStreams: StreamToCreate[] = [];
  if (missing.length > 0) {
    if (options.createStreams !== true || missing.some((m) => m.fix === undefined)) throw new MissingStreamsError(missingStreamsMessage(missing, replicasOf(nc)));
    for (const m of missing) {
      await createUserStream(nc, m.fix!);
      createdStreams.push(m.fix!);
    }
  }
  let restored: DeployResult["restored"];
  if (options.fromSavepoint !== undefined) {
    // Refuses (changing nothing) when the savepoint cannot be read by this code or the job runs.
    const r = await restoreSavepoint(nc, plans[0]!.job, options.fromSavepoint, restoreTargetOf(plans[0]!.physical), { skip: new Set(options.skipState ?? []) });
    restored = { savepoint: options.fromSavepoint, checkpoint: r.checkpoint, migrated: r.plan.migrated, skipped: r.plan.skipped, droppedStates: r.plan.droppedStates, emptyStates: r.plan.emptyStates };
  }
  // The job's own streams and buckets are created here, by whoever may deploy, so that workers
  // need no right to create or update streams (docs/security.md).
  await ensureControlPlane(nc);
  for (const p of plans) await ensureJobTopology(nc, p.physical);
  await putCode(store, bundle.digest, bundle.code);
  const results: DeployResult[] = [];
  const created = (job: string) => {
    const mine = createdStreams.filter((c) => missing.some((m) => m.fix === c && m.jobs.includes(job)));
    return mine.length === 0 ? {} : { createdStreams: mine };
  };
  for (const [i, p] of plans.entries()) {
    const current = currents[i];
    const same = (r: DeploymentRecord | undefined) => r !== undefined && r.digest === bundle.digest && r.pipeline === p.pipeline && r.partitions === options.partitions;
    if (restored === undefined && current !== undefined && same(current.record)) {
      results.push({ job: p.job, version: current.record.version, digest: bundle.digest, unchanged: true, ...created(p.job) });
      continue;
    }
    // The code the stopped job last ran: running it again is a start, not a new version.
    if (restored === undefined && current === undefined && same(lasts[i])) {
      await reinstateDeployment(store, lasts[i]!);
      results.push({ job: p.job, version: lasts[i]!.version, digest: bundle.digest, unchanged: true, started: true, ...created(p.job) });
      continue;
    }
    const record: DeploymentRecord = {
      job: p.job,
      version: (lasts[i]?.version ?? 0) + 1,
      digest: bundle.digest,
      pipeline: p.pipeline,
      source: path,
      deployedAt: Date.now(),
      functions: p.functions,
      ...(options.partitions === undefined ? {} : { partitions: options.partitions }),
    };
    await publishDeployment(store, record, current?.revision ?? 0);
    results.push({ job: p.job, version: record.version, digest: bundle.digest, unchanged: false, ...(restored === undefined ? {} : { restored }), ...created(p.job) });
  }
  return results;
}

/**
 * Runs a stopped job again (`eddy start`) from its last checkpoint: its last version becomes
 * current again — the same version, since the code did not change.
 */
export async function start(nc: NatsConnection, job: string): Promise<DeployResult> {
  const store = await openDeployments(nc);
  if ((await currentDeployment(store, job)) !== undefined) throw new NoDeploymentError(`job "${job}" is running already`);
  const last = await lastVersion(store, job);
  if (last === undefined) throw new NoDeploymentError(`job "${job}" was never deployed`);
  // Its object stores, if it was deployed before they were per job (its streams exist).
  await ensureJobStores(nc, job);
  await ensureUpsertBuckets(nc, last.functions.flatMap((f) => (f.upsert === undefined ? [] : [f.upsert])));
  await reinstateDeployment(store, last);
  return { job, version: last.version, digest: last.digest, unchanged: true, started: true };
}

/** Deploys the previous version's code again, as a new version. */
export async function rollback(nc: NatsConnection, job: string): Promise<DeployResult> {
  const store = await openDeployments(nc);
  const current = await currentDeployment(store, job);
  if (current === undefined) throw new NoDeploymentError(`job "${job}" is not deployed`);
  let previous: DeploymentRecord | undefined;
  for (let v = current.record.version - 1; v >= 1 && previous === undefined; v--) {
    const r = await deploymentVersion(store, job, v);
    if (r !== undefined && r.digest !== current.record.digest) previous = r;
  }
  if (previous === undefined) throw new NoDeploymentError(`job "${job}" has no earlier version with different code`);
  const why = incompatibility(current.record.functions, previous.functions);
  if (why !== undefined) throw new IncompatibleDeploymentError(`cannot roll job "${job}" back to version ${previous.version}: ${why}`);
  const record: DeploymentRecord = { ...previous, version: current.record.version + 1, deployedAt: Date.now(), source: `rollback to version ${previous.version}` };
  await ensureJobStores(nc, job);
  await ensureUpsertBuckets(nc, record.functions.flatMap((f) => (f.upsert === undefined ? [] : [f.upsert])));
  await publishDeployment(store, record, current.revision);
  return { job, version: record.version, digest: record.digest, unchanged: false };
}

export async function undeploy(nc: NatsConnection, job: string): Promise<void> {
  const store = await openDeployments(nc);
  if (!(await removeDeployment(store, job))) throw new NoDeploymentError(`job "${job}" is not deployed`);
}

export async function deployments(nc: NatsConnection): Promise<DeploymentRecord[]> {
  return listDeployments(await openDeployments(nc));
}
