/**
 * A generic worker: runs whatever is deployed, with no code of its own.
 *
 * It watches the deployment records (`*.deploy` in the jobs bucket) and, for each job, fetches
 * the bundle from the code store by digest, loads and validates it, and hosts the job's actors
 * like a worker started with `--pipeline` (same heartbeat, assignment and checkpoint protocol).
 * When a new version is deployed the supervisor stops the job at a checkpoint and names the
 * version in the assignment (`codeVersion`); the worker then swaps the code — its actors, which
 * stopped at that checkpoint, start again from it with the new code, in the same generation. An
 * undeployed job is stopped. With `onlyJob` it runs that one job and ignores the others, so that
 * it can connect as that job's worker user (docs/security.md). Code whose bytes do not hash to the
 * record's digest is refused (getCode) and the refusal logged, retried until it is repaired.
 */
import * as Effect from "effect/Effect";
import { loadPipelines, withDefaultPartitions } from "../deploy/bundle.ts";
import type { NatsConnection } from "../nats/connection.ts";
import { removeHeartbeat } from "../nats/control-store.ts";
import { deploymentVersion, getCode, openDeployments, type DeploymentRecord } from "../nats/deployments.ts";
import { assignmentKey } from "../core/protocol.ts";
import { decodeControl, type ControlKind } from "../core/control-messages.ts";
import { countRejected } from "../metrics/rejections.ts";
import { startWorker, stateCacheBudgetOf, type StartedWorker, type WorkerOptions } from "./worker.ts";

export interface GenericWorker {
  readonly id: string;
  /** Jobs this worker runs, with the code version each runs. */
  jobs(): ReadonlyMap<string, { readonly version: number; readonly worker: StartedWorker }>;
}

export const makeGenericWorker = (nc: NatsConnection, options: Omit<WorkerOptions, "id" | "codeVersion" | "keepHeartbeatOnStop"> & { readonly id?: string; readonly onlyJob?: string } = {}) =>
  Effect.gen(function* () {
    const log = options.log ?? (() => undefined);
    const base = options.id ?? `w-${process.pid}-${Math.random().toString(36).slice(2, 6)}`;
    // One state cache budget for the process, whatever jobs it runs.
    const stateCache = stateCacheBudgetOf(options);
    const store = yield* Effect.tryPromise({ try: () => openDeployments(nc), catch: (e) => e as Error });
    const jobsKv = store.jobs;
    const hosts = new Map<string, { version: number; worker: StartedWorker; stopWatch: () => void }>();
    let queue: Promise<void> = Promise.resolve();
    let closed = false;
    const workerId = (job: string) => `${base}-${job}`;
    // What does not decode is counted, logged and skipped; a throw would end the watch loop.
    const decode = <K extends ControlKind>(kind: K, data: Uint8Array) => {
      const d = decodeControl(kind, data);
      if (d.ok) return d.value;
      countRejected(kind, d.reason, d.message, (line) => log(`worker ${base}: ${line}`));
      return undefined;
    };

    /** Starts (or swaps to) `version` of `job`. */
    const run = async (job: string, record: DeploymentRecord) => {
      const code = await getCode(store, record.digest);
      const loaded = await loadPipelines(code, `job ${job} version ${record.version}`);
      const found = loaded.find((l) => l.pipeline.name === record.pipeline);
      if (found === undefined) throw new Error(`job ${job} version ${record.version}: the bundle has no pipeline "${record.pipeline}"`);
      const old = hosts.get(job);
      if (old !== undefined) {
        old.stopWatch();
        hosts.delete(job);
        await old.worker.stop();
      }
      // The heartbeat outlives a swap (the same id goes on); it is removed when the job stops here.
      const worker = await startWorker(nc, { ...withDefaultPartitions(found.pipeline, record.partitions), name: job }, { ...options, stateCache, id: workerId(job), codeVersion: record.version, keepHeartbeatOnStop: true });
      const stopWatch = await watchAssignment(job, record.version);
      hosts.set(job, { version: record.version, worker, stopWatch });
      log(`worker ${base}: running job ${job} version ${record.version} (${record.digest.slice(0, 19)})`);
    };

    /** Swaps code when the supervisor assigns another version of it. */
    const watchAssignment = async (job: string, version: number) => {
      const watch = await jobsKv.watch({ key: assignmentKey(job) });
      void (async () => {
        for await (const e of watch) {
          if (e.operation !== "PUT" || e.value.length === 0) continue;
          const a = decode("assignment", e.value);
          if (a === undefined) continue;
          if (a.codeVersion !== undefined && a.codeVersion !== version) {
            enqueue(job, async () => {
              const record = await deploymentVersion(store, job, a.codeVersion!);
              if (record === undefined) throw new Error(`job ${job}: version ${a.codeVersion} is assigned but not recorded`);
              if (hosts.get(job)?.version !== record.version) await run(job, record);
            });
            break;
          }
        }
      })().catch((e) => log(`worker ${base}: watch of ${assignmentKey(job)} ended: ${(e as Error)?.message ?? e}`));
      return () => watch.stop();
    };

    const stopJob = async (job: string) => {
      const host = hosts.get(job);
      if (host === undefined) return;
      host.stopWatch();
      hosts.delete(job);
      await host.worker.stop();
      await removeHeartbeat(nc, job, workerId(job)).catch(() => undefined);
    };

    const enqueue = (job: string, f: () => Promise<void>) => {
      queue = queue.then(() => (closed ? undefined : f())).catch((e) => log(`worker ${base}: job ${job}: ${(e as Error).message}`));
      return queue;
    };

    // The newest deployment record seen per job, so that a failed start is retried while it holds.
    const latest = new Map<string, DeploymentRecord | undefined>();
    const onDeployment = (job: string, record: DeploymentRecord | undefined): Promise<void> => {
      latest.set(job, record);
      return enqueue(job, async () => {
        try {
          await apply(job, record);
        } catch (e) {
          log(`worker ${base}: job ${job} version ${record?.version}: ${(e as Error).message}; retrying in 2 s`);
          setTimeout(() => {
            if (!closed && latest.get(job) === record && !hosts.has(job)) void onDeployment(job, record);
          }, 2000).unref();
        }
      });
    };
    const apply = (job: string, record: DeploymentRecord | undefined) =>
      (async () => {
        if (record === undefined) {
          if (hosts.has(job)) {
            await stopJob(job);
            log(`worker ${base}: job ${job} undeployed, stopped`);
          }
          return;
        }
        if (hosts.has(job)) return; // a new version arrives through the assignment, at a checkpoint
        // Join with the code the job runs now, if the supervisor already assigned a version.
        const entry = await jobsKv.get(assignmentKey(job));
        const assigned = entry === null || entry.length === 0 || entry.operation !== "PUT" ? undefined : decode("assignment", entry.value)?.codeVersion;
        const current = assigned !== undefined && assigned !== record.version ? await deploymentVersion(store, job, assigned) : undefined;
        await run(job, current ?? record);
      })();

    yield* Effect.acquireRelease(
      Effect.tryPromise({
        try: async () => {
          const watch = await jobsKv.watch({ key: options.onlyJob === undefined ? "*.deploy" : `${options.onlyJob}.deploy` });
          void (async () => {
            for await (const e of watch) {
              const job = e.key.slice(0, -".deploy".length);
              if (e.operation !== "PUT" || e.value.length === 0) {
                void onDeployment(job, undefined);
                continue;
              }
              // A record that does not decode changes nothing: the job goes on with what it runs.
              const record = decode("deploy", e.value);
              if (record !== undefined) void onDeployment(job, record);
            }
          })().catch((e) => log(`worker ${base}: watch of deployments ended: ${(e as Error)?.message ?? e}`));
          return watch;
        },
        catch: (e) => e as Error,
      }),
      (watch) => Effect.sync(() => watch.stop()),
    );
    yield* Effect.addFinalizer(() =>
      Effect.promise(async () => {
        closed = true;
        await queue.catch(() => undefined);
        for (const job of [...hosts.keys()]) await stopJob(job).catch(() => undefined);
      }),
    );
    const worker: GenericWorker = { id: base, jobs: () => hosts };
    return worker;
  });
