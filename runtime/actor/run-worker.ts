/**
 * `eddy worker`: load a pipeline module, connect to NATS and host the pipeline's actors until
 * SIGINT/SIGTERM, then stop every actor and exit; the supervisor moves its partitions to other
 * workers, which restore them from the last committed checkpoint.
 */
import * as Effect from "effect/Effect";
import { waitForSignal } from "../process/wait-for-signal.ts";
import { pathToFileURL } from "node:url";
import { resolve } from "node:path";
import type { PipelineSpec } from "../sdk/function.ts";
import { connectNats, natsUrlOf, redactNatsUrl } from "../nats/connection.ts";
import { makeWorker, stateCacheBudgetOf, type Worker } from "./worker.ts";
import { actorMetrics } from "../metrics/actor-metrics.ts";
import { metricsHostFrom, metricsPortFrom, startMetricsServer } from "../metrics/server.ts";
import { makeGenericWorker } from "./generic-worker.ts";
import { InputError } from "../errors.ts";
import { limitHeapGrowth } from "../process/heap-growth.ts";

export interface RunWorkerOptions {
  /** Module with the pipeline(s) to run; without it the worker runs whatever is deployed. */
  readonly pipeline: string | undefined;
  readonly natsUrl: string | undefined;
  readonly job: string | undefined;
  /** Port of /metrics and /healthz (default: $EDDY_METRICS_PORT, else none). */
  readonly metricsPort?: number | undefined;
  /** Address of that endpoint (default: $EDDY_METRICS_HOST, else 127.0.0.1). */
  readonly metricsHost?: string | undefined;
  /** Memory for actor state in MiB, shared by all actors of the process (default: $EDDY_STATE_CACHE_MB, else 256). */
  readonly stateCacheMb?: number | undefined;
}

/** `eddy worker`'s exit status when actors did not stop in time (EX_SOFTWARE: an internal error). */
export const STUCK_ACTORS_EXIT_CODE = 70;

/** The module does not export a pipeline; fix the module. */
export class InvalidPipelineModuleError extends InputError {
  override readonly name = "InvalidPipelineModuleError";
}

/**
 * Loads a module whose default export (or `pipeline` export) is a pipeline or an array of
 * pipelines (a worker can host several jobs).
 */
export async function loadPipelines(path: string, job?: string): Promise<PipelineSpec[]> {
  let mod: Record<string, unknown>;
  try {
    mod = await import(pathToFileURL(resolve(path)).href);
  } catch (e) {
    throw new InvalidPipelineModuleError(`cannot load ${path}: ${(e as Error).message}`, { cause: e });
  }
  const exported = mod.default ?? mod.pipeline;
  const list = (Array.isArray(exported) ? exported : [exported]) as Array<PipelineSpec | undefined>;
  if (list.length === 0 || list.some((p) => p === undefined || typeof p !== "object" || !Array.isArray(p.functions))) {
    throw new InvalidPipelineModuleError(`${path} does not export a pipeline (export default definePipeline({...}))`);
  }
  const pipelines = list as PipelineSpec[];
  if (job === undefined) return pipelines;
  if (pipelines.length > 1) throw new InvalidPipelineModuleError(`${path} exports several pipelines; --job cannot rename them`);
  return [{ ...pipelines[0]!, name: job }];
}

export async function runWorker(options: RunWorkerOptions): Promise<number> {
  limitHeapGrowth();
  const pipelines = options.pipeline === undefined ? [] : await loadPipelines(options.pipeline, options.job);
  const url = natsUrlOf(options.natsUrl);
  const program = Effect.gen(function* () {
    const nc = yield* Effect.acquireRelease(
      Effect.tryPromise({ try: () => connectNats(url, `eddy-worker-${process.pid}`), catch: (e) => e as Error }),
      (nc) => Effect.promise(() => nc.drain().catch(() => undefined)),
    );
    const base = `w-${process.pid}-${Math.random().toString(36).slice(2, 6)}`;
    const log = (line: string) => console.error(line);
    // A stop that never ends would hold this worker's actors for good while its heartbeat goes
    // on (worker-stops.ts): exit, so that the heartbeat expires and they are recovered elsewhere.
    const onStuckActors = (message: string) => {
      console.error(`${message}; exiting (status ${STUCK_ACTORS_EXIT_CODE}) so that the supervisor recovers them on other workers`);
      process.exit(STUCK_ACTORS_EXIT_CODE);
    };
    let hosted: () => Worker[];
    const stateCache = stateCacheBudgetOf(options.stateCacheMb === undefined ? {} : { stateCacheMb: options.stateCacheMb });
    if (options.pipeline === undefined) {
      const generic = yield* makeGenericWorker(nc, { id: base, log, onStuckActors, stateCache, ...(options.job === undefined ? {} : { onlyJob: options.job }) });
      hosted = () => [...generic.jobs().values()].map((j) => j.worker);
      console.error(`eddy worker ${base}: running ${options.job === undefined ? "deployed jobs" : `deployed job ${options.job}`}, NATS ${redactNatsUrl(url)}; Ctrl-C to stop`);
    } else {
      const workers: Worker[] = [];
      for (const pipeline of pipelines) workers.push(yield* makeWorker(nc, pipeline, { id: `${base}-${pipeline.name}`, log, onStuckActors, stateCache }));
      hosted = () => workers;
      console.error(`eddy worker ${base}: jobs ${pipelines.map((p) => p.name).join(", ")}, NATS ${redactNatsUrl(url)}; Ctrl-C to stop`);
    }
    const port = metricsPortFrom(options.metricsPort);
    if (port !== undefined) {
      const server = yield* Effect.acquireRelease(
        Effect.tryPromise({ try: () => startMetricsServer(port, () => actorMetrics(hosted().map((w) => ({ job: w.graph.job, stats: w.stats() }))), {}, metricsHostFrom(options.metricsHost)), catch: (e) => e as Error }),
        (s) => Effect.promise(() => s.close()),
      );
      console.error(`eddy worker ${base}: metrics on ${server.host}:${server.port}/metrics`);
    }
    const signal = yield* waitForSignal;
    console.error(`eddy worker ${base}: ${signal}, handing its partitions over at a checkpoint (a second signal stops at once)`);
    const left = yield* Effect.promise(() => Promise.all(hosted().map((w) => w.leave())));
    console.error(`eddy worker ${base}: ${left.every(Boolean) ? "partitions handed over" : "handover timed out; the supervisor recovers them"}, stopping`);
  }).pipe(Effect.scoped);
  await Effect.runPromise(program);
  return 0;
}
