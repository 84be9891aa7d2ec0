/**
 * Which user streams a job needs before it can run, and what to create when they are missing.
 *
 * A job reads its sources from JetStream streams and publishes its sinks to subjects that must be
 * captured by a stream (exactly-once output relies on the stream's duplicate window). Neither is
 * created by the workers: user streams belong to the user. Without this check a job deploys, a
 * worker fails to start its source, and sink output is lost or retried forever. So `eddy deploy`
 * asks first and names, per missing thing, the stream to create with a ready `nats` command —
 * or creates them itself with `--create-streams`, using the defaults below.
 *
 * Pure: the NATS facts (which streams exist, which capture a subject) are gathered elsewhere.
 * A sink whose subject is a function of the record cannot be checked and is skipped.
 */
import type { JobGraph } from "../core/job-graph.ts";

/** Duplicate window of a created sink stream: JetStream's default, made explicit. */
export const SINK_DUPLICATE_WINDOW_MS = 120_000;

/** A stream a job needs. */
export type StreamNeed =
  | { readonly kind: "source"; readonly job: string; readonly fn: string; readonly stream: string; readonly subjects: readonly string[] }
  | { readonly kind: "sink"; readonly job: string; readonly fn: string; readonly subject: string; readonly exactlyOnce: boolean };

/** What NATS says about the needed streams and subjects. */
export interface StreamFacts {
  /** Names of the needed source streams that exist. */
  readonly existing: ReadonlySet<string>;
  /** Per sink subject, the streams that capture it (none: missing). */
  readonly capturing: ReadonlyMap<string, readonly string[]>;
}

/** A stream to create (or, if `exists`, a stream to add `subjects` to). */
export interface StreamToCreate {
  readonly name: string;
  readonly subjects: readonly string[];
  /** Set for streams that hold exactly-once sink output. */
  readonly duplicateWindowMs?: number;
  /** The stream exists and only the subjects are missing. */
  readonly exists: boolean;
}

/** One missing thing: what is missing, for whom, and the stream that fixes it. */
export interface MissingStream {
  readonly line: string;
  /** The jobs that need it. */
  readonly jobs: readonly string[];
  /** Undefined when eddy cannot know how to create it (a source that names no subject). */
  readonly fix?: StreamToCreate;
}

/** The streams and sink subjects `graph` needs. */
export function streamNeeds(graph: JobGraph): StreamNeed[] {
  const out: StreamNeed[] = [];
  for (const f of graph.functions) {
    if (f.stream !== undefined) {
      const s = f.stream.subject;
      const subjects = s === undefined ? [] : [...new Set(Array.from({ length: f.partitions }, (_, p) => (typeof s === "function" ? s(p) : s)))];
      out.push({ kind: "source", job: graph.job, fn: f.name, stream: f.stream.stream, subjects });
    }
    const sink = f.spec.sink;
    if (sink !== undefined && typeof sink.subject === "string") {
      out.push({ kind: "sink", job: graph.job, fn: f.name, subject: sink.subject, exactlyOnce: (sink.delivery ?? "exactly-once") === "exactly-once" });
    }
  }
  return out;
}

/** The stream name eddy proposes for a sink subject: its tokens upper-cased, joined by `_`. */
export function sinkStreamName(subject: string): string {
  const name = subject
    .split(".")
    .map((t) => t.replace(/[^A-Za-z0-9_-]/g, ""))
    .filter((t) => t !== "")
    .join("_")
    .toUpperCase();
  return name === "" ? "SINK" : name;
}

/**
 * What is missing, one entry per missing stream or uncaptured sink subject, in the order of the
 * needs; sink subjects that would get the same stream name share one stream.
 */
export function missingStreams(needs: readonly StreamNeed[], facts: StreamFacts, existingNames: ReadonlySet<string> = new Set(), replicas = 1): MissingStream[] {
  const out: MissingStream[] = [];
  const sinkStreams = new Map<string, { subjects: string[]; exactlyOnce: boolean; index: number; who: string[]; jobs: string[] }>();
  const seenSources = new Set<string>();
  for (const need of needs) {
    if (need.kind === "source") {
      if (facts.existing.has(need.stream) || seenSources.has(need.stream)) continue;
      seenSources.add(need.stream);
      const who = `source "${need.fn}" of job "${need.job}" reads stream ${need.stream}, which does not exist`;
      if (need.subjects.length === 0 || need.subjects.includes(">")) {
        out.push({ line: `${who}: create it with the subjects your producers publish to (nats stream add ${need.stream} --subjects '<subjects>' --storage file --retention limits --replicas ${replicas} --defaults); it names no subject eddy could use`, jobs: [need.job] });
      } else {
        out.push({ line: who, jobs: [need.job], fix: { name: need.stream, subjects: need.subjects, exists: false } });
      }
      continue;
    }
    if ((facts.capturing.get(need.subject) ?? []).length > 0) continue;
    const name = sinkStreamName(need.subject);
    const group = sinkStreams.get(name);
    const who = `sink "${need.fn}" of job "${need.job}" publishes to ${need.subject}, which no stream captures`;
    if (group === undefined) {
      sinkStreams.set(name, { subjects: [need.subject], exactlyOnce: need.exactlyOnce, index: out.length, who: [who], jobs: [need.job] });
      out.push({ line: who, jobs: [need.job] });
    } else {
      if (!group.subjects.includes(need.subject)) group.subjects.push(need.subject);
      group.exactlyOnce ||= need.exactlyOnce;
      group.who.push(who);
      if (!group.jobs.includes(need.job)) group.jobs.push(need.job);
    }
  }
  for (const [name, g] of sinkStreams) {
    const fix: StreamToCreate = { name, subjects: g.subjects, exists: existingNames.has(name), ...(g.exactlyOnce ? { duplicateWindowMs: SINK_DUPLICATE_WINDOW_MS } : {}) };
    out[g.index] = { line: g.who.join("; "), jobs: g.jobs, fix };
  }
  return out;
}

/** The `nats` CLI command that creates (or extends) the stream, with `replicas` replicas (what eddy uses on the server). */
export function natsCommand(s: StreamToCreate, replicas = 1): string {
  const subjects = s.subjects.join(",");
  if (s.exists) return `nats stream edit ${s.name} --subjects '<its subjects>,${subjects}'`;
  const dupe = s.duplicateWindowMs === undefined ? "" : ` --dupe-window ${Math.round(s.duplicateWindowMs / 1000)}s`;
  return `nats stream add ${s.name} --subjects '${subjects}' --storage file --retention limits --discard old --replicas ${replicas}${dupe} --defaults`;
}

/** The message of a refused deploy: one line per missing thing, each with the command that fixes it. */
export function missingStreamsMessage(missing: readonly MissingStream[], replicas = 1): string {
  const lines = missing.map((m) => `  ${m.line}${m.fix === undefined ? "" : `: ${natsCommand(m.fix, replicas)}`}`);
  return `${missing.length === 1 ? "a stream the job needs is" : `${missing.length} streams the job needs are`} missing (create them, or deploy with --create-streams):\n${lines.join("\n")}`;
}
