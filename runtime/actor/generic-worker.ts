/**
 * A generic worker: runs whatever is deployed, with no code of its own.
 *
 * It watches the deployment records (`*.deploy` in the jobs bucket), fetches each job's bundle
 * from the code store by digest, loads and validates it, and hosts the job's actors like a worker
 * started with `--pipeline` (same heartbeat, assignment and checkpoint protocol). An undeployed
 * job is stopped. A new version of a job this worker already runs is picked up when the worker
 * starts again; switching running actors to new code at a checkpoint is the next step (see the
 * issue notes).
 */
import { Effect } from "effect";
import type { NatsConnection } from "@nats-io/transport-node";
import { loadPipelines } from "../deploy/bundle.ts";
import { getCode, openDeployments, type DeploymentRecord } from "../nats/deployments.ts";
import { JOBS_BUCKET } from "../core/protocol.ts";
import { Kvm } from "@nats-io/kv";
import { startWorker, type StartedWorker, type WorkerOptions } from "./worker.ts";

export interface GenericWorker {
  readonly id: string;
  /** Jobs this worker runs, with their versions. */
  jobs(): ReadonlyMap<string, { readonly version: number; readonly worker: StartedWorker }>;
}

const decoder = new TextDecoder();

export const makeGenericWorker = (nc: NatsConnection, options: Omit<WorkerOptions, "id"> & { readonly id?: string } = {}) =>
  Effect.gen(function* () {
    const log = options.log ?? (() => undefined);
    const base = options.id ?? `w-${process.pid}-${Math.random().toString(36).slice(2, 6)}`;
    const store = yield* Effect.tryPromise({ try: () => openDeployments(nc), catch: (e) => e as Error });
    const jobs = new Map<string, { version: number; worker: StartedWorker }>();
    let queue: Promise<void> = Promise.resolve();
    let closed = false;

    const apply = (job: string, record: DeploymentRecord | undefined) => {
      queue = queue
        .then(async () => {
          if (closed) return;
          const running = jobs.get(job);
          if (record === undefined) {
            if (running !== undefined) {
              jobs.delete(job);
              await running.worker.stop();
              log(`worker ${base}: job ${job} undeployed, stopped`);
            }
            return;
          }
          if (running !== undefined) {
            if (running.version !== record.version) log(`worker ${base}: job ${job} version ${record.version} deployed; running version ${running.version} until this worker restarts`);
            return;
          }
          const code = await getCode(store, record.digest);
          const loaded = await loadPipelines(code, `job ${job} version ${record.version}`);
          const found = loaded.find((l) => l.pipeline.name === record.pipeline);
          if (found === undefined) throw new Error(`job ${job} version ${record.version}: the bundle has no pipeline "${record.pipeline}"`);
          const worker = await startWorker(nc, { ...found.pipeline, name: job }, { ...options, id: `${base}-${job}` });
          jobs.set(job, { version: record.version, worker });
          log(`worker ${base}: running job ${job} version ${record.version} (${record.digest.slice(0, 19)})`);
        })
        .catch((e) => log(`worker ${base}: job ${job}: ${(e as Error).message}`));
      return queue;
    };

    const kv = yield* Effect.tryPromise({ try: () => new Kvm(nc).open(JOBS_BUCKET), catch: (e) => e as Error });
    yield* Effect.acquireRelease(
      Effect.tryPromise({
        try: async () => {
          const watch = await kv.watch({ key: "*.deploy" });
          void (async () => {
            for await (const e of watch) {
              const job = e.key.slice(0, -".deploy".length);
              void apply(job, e.operation === "PUT" && e.value.length > 0 ? (JSON.parse(decoder.decode(e.value)) as DeploymentRecord) : undefined);
            }
          })().catch(() => undefined);
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
        await Promise.all([...jobs.values()].map((j) => j.worker.stop()));
        jobs.clear();
      }),
    );
    const worker: GenericWorker = { id: base, jobs: () => jobs };
    return worker;
  });
