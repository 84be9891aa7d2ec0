/**
 * `eddy auth render <module>…`: the per-job NATS users of the jobs a module defines, rendered
 * before the module is deployed (the server must know a job's worker user before its workers
 * connect). What each job needs is read from its graph as `eddy deploy` builds it: functions,
 * source streams and subjects, sink subjects. A sink whose subject is computed per record cannot
 * be named from the code; `--sink` adds such subjects (patterns allowed) to every job rendered.
 */
import { buildJobGraph, type JobGraph } from "../core/job-graph.ts";
import { renderAuthConfig, type JobAccess } from "../nats/auth-config.ts";
import { bundleModule, InvalidModuleError, loadPipelines, withDefaultPartitions } from "./bundle.ts";
import { streamNeeds } from "./stream-checks.ts";

/** What the users of `graph`'s job must reach, plus `extraSinks`. */
export function jobAccessOf(graph: JobGraph, extraSinks: readonly string[] = []): JobAccess {
  const needs = streamNeeds(graph);
  return {
    job: graph.job,
    functions: graph.functions.map((f) => {
      const source = needs.find((n) => n.kind === "source" && n.fn === f.name);
      return source?.kind === "source" ? { name: f.name, source: { stream: source.stream, subjects: source.subjects } } : { name: f.name };
    }),
    sinks: [...new Set([...needs.flatMap((n) => (n.kind === "sink" ? [n.subject] : [])), ...upsertSubjects(graph), ...extraSinks])],
    ...lookupsOf(graph),
  };
}

/** The subjects upsert sinks publish to: their buckets' streams (design note bv). */
function upsertSubjects(graph: JobGraph): string[] {
  return graph.functions.flatMap((f) => (f.spec.upsert === undefined ? [] : [`$KV.${f.spec.upsert.bucket}.>`]));
}

/** The KV buckets the job's functions look up (design note by), if any. */
function lookupsOf(graph: JobGraph): { lookups?: string[] } {
  const lookups = [...new Set(graph.functions.flatMap((f) => (f.spec.lookup === undefined ? [] : [f.spec.lookup.bucket])))];
  return lookups.length === 0 ? {} : { lookups };
}

/** The jobs of the modules at `paths` (as `eddy deploy` would name them). */
export async function jobAccessOfModules(paths: readonly string[], opts: { readonly sinks?: readonly string[] } = {}): Promise<JobAccess[]> {
  const out: JobAccess[] = [];
  for (const path of paths) {
    const loaded = await loadPipelines((await bundleModule(path)).code, path);
    for (const { pipeline } of loaded) {
      let graph: JobGraph;
      try {
        graph = buildJobGraph(withDefaultPartitions(pipeline, undefined));
      } catch (e) {
        throw new InvalidModuleError(`${path}: ${(e as Error).message}`, { cause: e });
      }
      out.push(jobAccessOf(graph, opts.sinks));
    }
  }
  return out;
}

/** Prints the `authorization` block for the jobs of `paths`; returns the exit code. */
export async function runAuthRender(paths: readonly string[], opts: { readonly sinks?: readonly string[] } = {}): Promise<number> {
  process.stdout.write(renderAuthConfig(await jobAccessOfModules(paths, opts)));
  return 0;
}
