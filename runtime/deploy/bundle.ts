/**
 * Turning a pipeline module into deployable code and back.
 *
 * `bundleModule` bundles a module and everything it imports (the SDK included) into one ES
 * module with esbuild, so a worker needs nothing but the bundle; the bundle is named by the
 * SHA-256 of its bytes. `loadPipelines` imports a bundle and returns the pipelines it exports,
 * validated: a module that does not load, exports no pipeline or defines an invalid one is
 * rejected here, before it can replace a deployed version.
 */
import { createHash } from "node:crypto";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { build } from "esbuild";
import { buildJobGraph, type JobGraph } from "../core/job-graph.ts";
import type { PipelineSpec } from "../sdk/function.ts";
import { InputError } from "../errors.ts";

/** The module cannot be deployed; the message says why (fix the module and deploy again). */
export class InvalidModuleError extends InputError {
  override readonly name = "InvalidModuleError";
}

export interface Bundle {
  readonly code: Uint8Array;
  /** `sha256-<hex>` of the code. */
  readonly digest: string;
}

export function digestOf(code: Uint8Array): string {
  return "sha256-" + createHash("sha256").update(code).digest("hex");
}

export async function bundleModule(path: string): Promise<Bundle> {
  let result;
  try {
    result = await build({
      entryPoints: [resolve(path)],
      bundle: true,
      format: "esm",
      platform: "node",
      target: "node24",
      write: false,
      logLevel: "silent",
      // Code with side effects at import time would run in every worker; keep the output plain.
      minify: false,
      legalComments: "none",
    });
  } catch (e) {
    const errors = (e as { errors?: Array<{ text: string; location?: { file: string; line: number } }> }).errors;
    const first = errors?.[0];
    const where = first?.location ? ` (${first.location.file}:${first.location.line})` : "";
    throw new InvalidModuleError(`cannot bundle ${path}: ${first?.text ?? (e as Error).message}${where}`, { cause: e });
  }
  const code = result.outputFiles[0]!.contents;
  return { code, digest: digestOf(code) };
}

/** A loaded, validated pipeline with its graph. */
export interface LoadedPipeline {
  readonly pipeline: PipelineSpec;
  readonly graph: JobGraph;
}

/** Pipelines a module's namespace exports: `default` (a pipeline or an array) or `pipeline`. */
export function pipelinesOf(mod: Record<string, unknown>, what: string): PipelineSpec[] {
  const exported = mod.default ?? mod.pipeline;
  const list = (Array.isArray(exported) ? exported : [exported]) as Array<PipelineSpec | undefined>;
  if (list.length === 0 || list.some((p) => p === undefined || typeof p !== "object" || !Array.isArray(p.functions))) {
    throw new InvalidModuleError(`${what} does not export a pipeline (export default definePipeline({...}))`);
  }
  return list as PipelineSpec[];
}

/** Imports bundled code and validates every pipeline it exports. */
export async function loadPipelines(code: Uint8Array, what = "the module"): Promise<LoadedPipeline[]> {
  // A file, not a data: URL, so stack traces of user code point somewhere readable.
  const dir = await mkdtemp(join(tmpdir(), "eddy-code-"));
  const file = join(dir, `${digestOf(code)}.mjs`);
  try {
    await writeFile(file, code);
    let mod: Record<string, unknown>;
    try {
      mod = await import(pathToFileURL(file).href);
    } catch (e) {
      throw new InvalidModuleError(`${what} fails to load: ${(e as Error).message}`, { cause: e });
    }
    return pipelinesOf(mod, what).map((pipeline) => {
      try {
        return { pipeline, graph: buildJobGraph(pipeline) };
      } catch (e) {
        throw new InvalidModuleError(`${what}: ${(e as Error).message}`, { cause: e });
      }
    });
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/**
 * Gives every keyed, non-source function that does not set its own partition count `partitions`
 * partitions (`eddy deploy --partitions`).
 */
export function withDefaultPartitions(pipeline: PipelineSpec, partitions: number | undefined): PipelineSpec {
  if (partitions === undefined) return pipeline;
  return {
    ...pipeline,
    functions: pipeline.functions.map((f) => {
      const source = !Array.isArray(f.input) && (f.input as { kind: string }).kind === "stream";
      return f.key !== undefined && f.partitions === undefined && !source ? { ...f, partitions } : f;
    }),
  };
}
