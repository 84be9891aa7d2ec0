/**
 * `eddy worker`: load a pipeline module, connect to NATS and host the pipeline's actors until
 * SIGINT/SIGTERM, then stop every actor and exit; the supervisor moves its partitions to other
 * workers, which restore them from the last committed checkpoint.
 */
import { Effect } from "effect";
import { waitForSignal } from "../dev/wait-for-signal.ts";
import { pathToFileURL } from "node:url";
import { resolve } from "node:path";
import type { PipelineSpec } from "../sdk/function.ts";
import { connectNats } from "../nats/connection.ts";
import { makeWorker } from "./worker.ts";
import { makeGenericWorker } from "./generic-worker.ts";

export interface RunWorkerOptions {
  /** Module with the pipeline(s) to run; without it the worker runs whatever is deployed. */
  readonly pipeline: string | undefined;
  readonly natsUrl: string | undefined;
  readonly job: string | undefined;
}

/** The module does not export a pipeline; fix the module. */
export class InvalidPipelineModuleError extends Error {
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
  const pipelines = options.pipeline === undefined ? [] : await loadPipelines(options.pipeline, options.job);
  const url = options.natsUrl ?? process.env.EDDY_NATS_URL ?? "nats://127.0.0.1:4222";
  const program = Effect.gen(function* () {
    const nc = yield* Effect.acquireRelease(
      Effect.tryPromise({ try: () => connectNats(url, `eddy-worker-${process.pid}`), catch: (e) => e as Error }),
      (nc) => Effect.promise(() => nc.drain().catch(() => undefined)),
    );
    const base = `w-${process.pid}-${Math.random().toString(36).slice(2, 6)}`;
    const log = (line: string) => console.error(line);
    if (options.pipeline === undefined) {
      yield* makeGenericWorker(nc, { id: base, log });
      console.error(`eddy worker ${base}: running deployed jobs, NATS ${url}; Ctrl-C to stop`);
    } else {
      for (const pipeline of pipelines) yield* makeWorker(nc, pipeline, { id: `${base}-${pipeline.name}`, log });
      console.error(`eddy worker ${base}: jobs ${pipelines.map((p) => p.name).join(", ")}, NATS ${url}; Ctrl-C to stop`);
    }
    const signal = yield* waitForSignal;
    console.error(`eddy worker ${base}: ${signal}, stopping (the supervisor reassigns its partitions)`);
  }).pipe(Effect.scoped);
  await Effect.runPromise(program);
  return 0;
}
