/**
 * What the web console (`eddy ui`) shows, computed from the raw figures: the job graph from the
 * job's spec record, per-function and per-partition rows from the committed status and the
 * workers' live replies, a job's row on the jobs page, and the validation of everything the
 * browser sends. The console's server only gathers the figures and the browser only draws them;
 * the decisions in between live here, pure, so that they are tested with plain data.
 *
 * Everything here reads records other processes wrote (the spec, stats replies, checkpoint
 * records) and requests a browser sent: anything missing or malformed is shown as absent, and a
 * bad request is refused with a reason, never a throw that could take the server down.
 */
import type { ActorCheckpointFigures, CheckpointRecord } from "./protocol.ts";
import { actorRates, pressureOf, type LiveActorStats, type Pressure, type WorkerStatsReply } from "./live-stats.ts";

// ---------------------------------------------------------------------------------------------
// The job graph.
// ---------------------------------------------------------------------------------------------

/** The parts of a job spec record the graph is drawn from (protocol.ts `JobSpecRecord`). */
export interface GraphSpec {
  readonly functions: ReadonlyArray<{
    readonly name: string;
    readonly partitions: number;
    readonly isSource: boolean;
    readonly stream?: string;
    readonly inputs?: ReadonlyArray<{ readonly fn: string; readonly output?: string; readonly broadcast?: boolean }>;
    /** The functions chained into this one, after it (protocol.ts `JobSpecRecord`, design note ch). */
    readonly chain?: readonly string[];
  }>;
}

/**
 * The operator chains of a spec record, head first (design note ch). Names that are not strings
 * are left out: the record may have been written by someone else.
 */
export function chainsOf(spec: GraphSpec): string[][] {
  return spec.functions.flatMap((f) => {
    const rest = Array.isArray(f.chain) ? f.chain.filter((n): n is string => typeof n === "string") : [];
    return rest.length === 0 ? [] : [[f.name, ...rest]];
  });
}

/** A node of the graph: a function, or a user stream that a source function reads. */
export interface GraphNode {
  readonly id: string;
  readonly kind: "function" | "stream";
  readonly label: string;
  /** Functions only. */
  readonly partitions?: number;
  readonly isSource?: boolean;
  /** The functions chained into this one, after it (they have no node of their own). */
  readonly chain?: readonly string[];
}

/** An edge: records flowing from `from` to `to` (an internal stream, or the user stream a source reads). */
export interface GraphEdge {
  readonly from: string;
  readonly to: string;
  /** The side output it carries, if not the main output. */
  readonly output?: string;
  readonly broadcast?: boolean;
}

export interface JobGraphModel {
  readonly nodes: readonly GraphNode[];
  readonly edges: readonly GraphEdge[];
  /** True when the spec predates recorded inputs: functions are shown without edges between them. */
  readonly edgesUnknown: boolean;
}

/** The id of a stream node (function ids are their names, which hold no `:`). */
export const streamNodeId = (stream: string) => `stream:${stream}`;

/**
 * Nodes and edges from a spec record. Inputs naming a function that is not in the spec are left
 * out (a record someone else wrote may be inconsistent); so are duplicate edges.
 */
export function graphOf(spec: GraphSpec): JobGraphModel {
  const names = new Set(spec.functions.map((f) => f.name));
  const nodes: GraphNode[] = [];
  const edges: GraphEdge[] = [];
  const seen = new Set<string>();
  const edge = (e: GraphEdge) => {
    const k = `${e.from}\u0000${e.to}\u0000${e.output ?? ""}`;
    if (!seen.has(k)) {
      seen.add(k);
      edges.push(e);
    }
  };
  const streams = new Set<string>();
  let edgesUnknown = false;
  for (const f of spec.functions) {
    const chain = chainsOf({ functions: [f] })[0]?.slice(1);
    // A chain is one node: its functions run fused in the head's actors (design note ch).
    nodes.push({ id: f.name, kind: "function", label: chain === undefined ? f.name : [f.name, ...chain].join(" → "), partitions: f.partitions, isSource: f.isSource, ...(chain === undefined ? {} : { chain }) });
    if (f.isSource && f.stream !== undefined) {
      if (!streams.has(f.stream)) {
        streams.add(f.stream);
        nodes.push({ id: streamNodeId(f.stream), kind: "stream", label: f.stream });
      }
      edge({ from: streamNodeId(f.stream), to: f.name });
    }
    if (f.inputs === undefined) {
      if (!f.isSource) edgesUnknown = true;
      continue;
    }
    for (const i of f.inputs) {
      if (!names.has(i.fn)) continue;
      edge({ from: i.fn, to: f.name, ...(i.output === undefined ? {} : { output: i.output }), ...(i.broadcast === true ? { broadcast: true } : {}) });
    }
  }
  return { nodes, edges, edgesUnknown };
}

// ---------------------------------------------------------------------------------------------
// Live figures per partition and per function.
// ---------------------------------------------------------------------------------------------

/** A partition as `eddy status` reads it (runtime/cli/status.ts `PartitionStatus`). */
export interface CommittedPartition {
  readonly function: string;
  readonly partition: number;
  readonly owner: string | null;
  /** Records not processed under a committed checkpoint. */
  readonly lag: number | null;
  readonly watermark: number | null;
}

/** One row of a function's partition table. */
export interface PartitionRow {
  readonly function: string;
  readonly partition: number;
  readonly owner: string | null;
  /** The worker that answered for it live, if any. */
  readonly liveWorker: string | null;
  /** Committed lag (records not processed under a committed checkpoint). */
  readonly lag: number | null;
  /** The actor's own view: input messages waiting after the last one it read. */
  readonly liveLag: number | null;
  /** The live watermark if a worker answered, else the committed one; "end" at the end of input. */
  readonly watermark: number | "end" | null;
  readonly watermarkLagMs: number | null;
  readonly recordsInPerSecond: number | null;
  readonly recordsOutPerSecond: number | null;
  readonly busyMsPerSecond: number | null;
  readonly backpressuredMsPerSecond: number | null;
  readonly idleMsPerSecond: number | null;
  readonly pressure: Pressure | null;
  readonly cacheHitRate: number | null;
  readonly stateBytes: number | null;
  readonly heldBytes: number | null;
  /** What its read loop awaits now, as the actor said (live only; null from workers before it). */
  readonly step: string | null;
}

/** The live figures of each actor, `<fn>/<partition>` → figures and the worker and time of the sample. */
export type LiveSample = ReadonlyMap<string, { readonly worker: string; readonly at: number; readonly stats: LiveActorStats }>;

/** The replies of one request as one sample; an actor two workers claim is taken from the later reply. */
export function liveSampleOf(replies: readonly WorkerStatsReply[]): LiveSample {
  const out = new Map<string, { worker: string; at: number; stats: LiveActorStats }>();
  for (const r of replies) {
    for (const a of r.actors) {
      const id = `${a.fn}/${a.partition}`;
      const prev = out.get(id);
      if (prev === undefined || prev.at <= r.at) out.set(id, { worker: r.worker, at: r.at, stats: a });
    }
  }
  return out;
}

/**
 * The partition table: every partition the committed status knows, with the live figures of the
 * actor that runs it (rates against the previous sample of the same worker; none on the first).
 */
export function partitionRows(committed: readonly CommittedPartition[], now: LiveSample, before: LiveSample | undefined, wallNow: number): PartitionRow[] {
  return committed.map((p) => {
    const live = now.get(`${p.function}/${p.partition}`);
    const prev = before?.get(`${p.function}/${p.partition}`);
    const comparable = live !== undefined && prev !== undefined && prev.worker === live.worker && live.at > prev.at;
    const rates = live === undefined ? undefined : actorRates(comparable ? prev.stats : undefined, live.stats, comparable ? live.at - prev.at : 0);
    const watermark: number | "end" | null = live !== undefined ? live.stats.watermark : p.watermark === null || !Number.isFinite(p.watermark) ? (p.watermark !== null && p.watermark > 0 ? "end" : null) : p.watermark;
    return {
      function: p.function,
      partition: p.partition,
      owner: p.owner,
      liveWorker: live?.worker ?? null,
      lag: p.lag,
      liveLag: live?.stats.lag ?? null,
      watermark,
      watermarkLagMs: typeof watermark === "number" ? Math.max(0, wallNow - watermark) : null,
      recordsInPerSecond: comparable && rates !== undefined ? rates.recordsInPerSecond : null,
      recordsOutPerSecond: comparable && rates !== undefined ? rates.recordsOutPerSecond : null,
      busyMsPerSecond: live?.stats.busyMsPerSecond ?? null,
      backpressuredMsPerSecond: live?.stats.backpressuredMsPerSecond ?? null,
      idleMsPerSecond: live?.stats.idleMsPerSecond ?? null,
      pressure: live === undefined ? null : pressureOf(live.stats),
      cacheHitRate: rates?.cacheHitRate ?? null,
      stateBytes: live?.stats.cacheBytes ?? null,
      heldBytes: live?.stats.heldBytes ?? null,
      step: live?.stats.step ?? null,
    };
  });
}

/** A function as a node of the graph and a line of its summary. */
export interface FunctionSummary {
  readonly function: string;
  readonly partitions: number;
  /** Partitions a worker answered for. */
  readonly livePartitions: number;
  readonly recordsInPerSecond: number;
  readonly recordsOutPerSecond: number;
  readonly maxLag: number | null;
  /** The largest watermark lag over its partitions (the slowest partition holds the watermark back). */
  readonly maxWatermarkLagMs: number | null;
  /** Averages over the live partitions. */
  readonly busyMsPerSecond: number | null;
  readonly backpressuredMsPerSecond: number | null;
  readonly idleMsPerSecond: number | null;
  /** The worst partition's: one backpressured partition marks the function, as in Flink. */
  readonly pressure: Pressure | null;
  readonly stateBytes: number | null;
  /**
   * What its backpressured partitions' read loops await (distinct, sorted): for a function that
   * is itself the cause, the thing outside the graph it waits on — a commit of its held sink
   * output, acknowledgements of its publishes, materialization.
   */
  readonly waitingFor: readonly string[];
}

const PRESSURE_RANK: Record<Pressure, number> = { idle: 0, ok: 1, busy: 2, backpressured: 3 };

/** Per function, in the order the functions are given, from its partition rows. */
export function functionSummaries(functions: ReadonlyArray<{ readonly name: string; readonly partitions: number }>, rows: readonly PartitionRow[]): FunctionSummary[] {
  return functions.map((f) => {
    const mine = rows.filter((r) => r.function === f.name);
    const live = mine.filter((r) => r.pressure !== null);
    const sum = (xs: ReadonlyArray<number | null>) => xs.reduce<number>((a, x) => a + (x ?? 0), 0);
    const max = (xs: ReadonlyArray<number | null>) => {
      const known = xs.filter((x): x is number => x !== null);
      return known.length === 0 ? null : Math.max(...known);
    };
    const avg = (xs: ReadonlyArray<number | null>) => (live.length === 0 ? null : Math.round(sum(xs) / live.length));
    let pressure: Pressure | null = null;
    for (const r of live) if (pressure === null || PRESSURE_RANK[r.pressure!] > PRESSURE_RANK[pressure]) pressure = r.pressure;
    return {
      function: f.name,
      partitions: f.partitions,
      livePartitions: live.length,
      recordsInPerSecond: sum(mine.map((r) => r.recordsInPerSecond)),
      recordsOutPerSecond: sum(mine.map((r) => r.recordsOutPerSecond)),
      maxLag: max(mine.map((r) => (r.liveLag !== null ? Math.max(r.liveLag, r.lag ?? 0) : r.lag))),
      maxWatermarkLagMs: max(mine.map((r) => r.watermarkLagMs)),
      busyMsPerSecond: avg(live.map((r) => r.busyMsPerSecond)),
      backpressuredMsPerSecond: avg(live.map((r) => r.backpressuredMsPerSecond)),
      idleMsPerSecond: avg(live.map((r) => r.idleMsPerSecond)),
      pressure,
      stateBytes: live.length === 0 ? null : sum(live.map((r) => r.stateBytes)),
      waitingFor: [...new Set(live.filter((r) => r.pressure === "backpressured" && r.step !== null).map((r) => r.step!))].sort(),
    };
  });
}

/**
 * Where backpressure comes from: the busy functions directly downstream of a backpressured one
 * (Flink's reading: follow the backpressured chain to the first busy operator), or, when a
 * backpressured function has no busy successor, the function itself (it waits on something
 * outside the graph: its sink's commit, the publish window, materialization).
 */
export function backpressureCauses(graph: JobGraphModel, summaries: readonly FunctionSummary[]): string[] {
  const by = new Map(summaries.map((s) => [s.function, s]));
  const causes = new Set<string>();
  for (const s of summaries) {
    if (s.pressure !== "backpressured") continue;
    const next = graph.edges.filter((e) => e.from === s.function).map((e) => by.get(e.to)).filter((x) => x !== undefined);
    const busy = next.filter((n) => n.pressure === "busy");
    if (busy.length > 0) for (const b of busy) causes.add(b.function);
    else if (!next.some((n) => n.pressure === "backpressured")) causes.add(s.function);
  }
  return [...causes];
}

// ---------------------------------------------------------------------------------------------
// Jobs page and checkpoints.
// ---------------------------------------------------------------------------------------------

/** A job on the jobs page. */
export interface JobRow {
  readonly job: string;
  readonly state: string;
  readonly version: number | null;
  readonly generation: number;
  /** Restarts of the job's actors from a checkpoint, whatever the cause: see {@link restartsOf}. */
  readonly restarts: number;
  /** Of those, the restarts after failures the restart strategy counted (`eddy status`'s figure). */
  readonly failureRestarts: number;
  /** Records per second read by the source functions (null: no live figures). */
  readonly throughput: number | null;
  readonly maxLag: number | null;
  readonly lastCheckpointId: number | null;
  readonly lastCheckpointAgeMs: number | null;
  readonly functions: number;
}

/**
 * Restarts as Flink's `numRestarts` counts them: every generation after the first restarted the
 * job's actors from its last committed checkpoint — after a failure, a lost worker (its actors
 * move to the others) or a start after a stop. eddy's own `restarts` counts only those after
 * failures (the restart strategy's budget, which a vanished worker does not spend); it is never
 * larger than the generations, but a status record someone else wrote could say so.
 */
export function restartsOf(view: { readonly generation: number; readonly restarts: number }): number {
  return Math.max(view.restarts, view.generation > 1 ? view.generation - 1 : 0);
}

export function jobRow(
  view: { readonly job: string; readonly state: string; readonly version: number | null; readonly generation: number; readonly restarts: number; readonly lastCheckpoint: { readonly id: number; readonly committedAt: number } | null; readonly functions: ReadonlyArray<{ readonly name: string; readonly isSource?: boolean }> },
  summaries: readonly FunctionSummary[] | undefined,
  now: number,
): JobRow {
  const sources = new Set(view.functions.filter((f) => f.isSource === true).map((f) => f.name));
  const live = summaries?.filter((s) => s.livePartitions > 0) ?? [];
  const lags = summaries?.map((s) => s.maxLag).filter((x): x is number => x !== null) ?? [];
  return {
    job: view.job,
    state: view.state,
    version: view.version,
    generation: view.generation,
    restarts: restartsOf(view),
    failureRestarts: view.restarts,
    throughput: live.length === 0 ? null : live.filter((s) => sources.has(s.function)).reduce((a, s) => a + s.recordsInPerSecond, 0),
    maxLag: lags.length === 0 ? null : Math.max(...lags),
    lastCheckpointId: view.lastCheckpoint?.id ?? null,
    lastCheckpointAgeMs: view.lastCheckpoint === null ? null : Math.max(0, now - view.lastCheckpoint.committedAt),
    functions: view.functions.length,
  };
}

/**
 * A checkpoint record as stored (protocol.ts `CheckpointRecord`), read defensively: the console
 * shows records of other versions too, so a status it does not know and actors' figures with
 * fields missing are kept rather than refused.
 */
export type CheckpointLike = Omit<CheckpointRecord, "status" | "perActor"> & {
  readonly status: string;
  readonly perActor?: Readonly<Record<string, Partial<ActorCheckpointFigures>>>;
};

/** One actor's part of a checkpoint. */
export interface CheckpointActorRow {
  readonly actor: string;
  readonly alignmentMs: number | null;
  /** From the aligned barrier until it was forwarded: the actor handled nothing else. */
  readonly syncMs: number | null;
  /** Storing the last segment and the manifest, in the background. */
  readonly uploadMs: number | null;
  /** Waiting for the acknowledgement of what it published before the barrier, in the background. */
  readonly ackWaitMs: number | null;
  readonly bytes: number | null;
  readonly keysChanged: number | null;
}

/** A line of the checkpoint history. */
export interface CheckpointRow {
  readonly id: number;
  readonly status: string;
  /** What kind of checkpoint: "periodic", "stop", "handoff", "savepoint <id>", "restore of <id>". */
  readonly kind: string;
  readonly generation: number;
  readonly startedAt: number;
  readonly durationMs: number | null;
  readonly alignmentMs: number | null;
  /**
   * Duration minus the longest alignment: what the snapshots and their acknowledgement took
   * after the barriers met (an upper bound on the synchronous part; see the console guide).
   */
  readonly afterAlignmentMs: number | null;
  readonly bytes: number | null;
  readonly keysChanged: number | null;
  readonly actors: number | null;
  readonly reason: string | null;
  /** The longest synchronous part of any actor (null: the actors did not report timings). */
  readonly syncMs: number | null;
  /** The longest asynchronous part (upload + ack wait) of any actor. */
  readonly asyncMs: number | null;
  /** Per actor, slowest (sync + async) first; empty when the record has none. */
  readonly perActor: readonly CheckpointActorRow[];
}

const finite = (x: number | undefined) => (typeof x === "number" && Number.isFinite(x) ? x : null);

export function checkpointRow(r: CheckpointLike): CheckpointRow {
  const duration = finite(r.durationMs);
  const alignment = finite(r.alignmentMs);
  const perActor: CheckpointActorRow[] = Object.entries(r.perActor !== null && typeof r.perActor === "object" ? r.perActor : {})
    .filter(([, a]) => a !== null && typeof a === "object")
    .map(([actor, a]) => ({ actor, alignmentMs: finite(a.alignmentMs), syncMs: finite(a.syncMs), uploadMs: finite(a.uploadMs), ackWaitMs: finite(a.ackWaitMs), bytes: finite(a.bytes), keysChanged: finite(a.keysChanged) }));
  const total = (a: CheckpointActorRow) => (a.syncMs ?? 0) + (a.uploadMs ?? 0) + (a.ackWaitMs ?? 0);
  perActor.sort((a, b) => total(b) - total(a) || (a.actor < b.actor ? -1 : 1));
  const timed = perActor.filter((a) => a.syncMs !== null);
  const kind = r.restoredFrom !== undefined ? `restore of ${r.restoredFrom}` : r.savepoint !== undefined ? `savepoint ${r.savepoint}` : r.stop === true ? "stop" : r.handoff === true ? "handoff" : "periodic";
  return {
    id: r.id,
    status: r.status,
    kind,
    generation: r.generation,
    startedAt: r.startedAt,
    durationMs: duration,
    alignmentMs: alignment,
    afterAlignmentMs: duration === null || alignment === null ? null : Math.max(0, duration - alignment),
    bytes: finite(r.bytes),
    keysChanged: finite(r.keysChanged),
    actors: finite(r.actors),
    reason: typeof r.reason === "string" ? r.reason : null,
    syncMs: timed.length === 0 ? null : Math.max(...timed.map((a) => a.syncMs!)),
    asyncMs: timed.length === 0 ? null : Math.max(...timed.map((a) => (a.uploadMs ?? 0) + (a.ackWaitMs ?? 0))),
    perActor,
  };
}

// ---------------------------------------------------------------------------------------------
// Requests from the browser.
// ---------------------------------------------------------------------------------------------

/** A request refused; `reason` is shown to whoever sent it. */
export interface Refusal {
  readonly ok: false;
  readonly reason: string;
}
export type Checked<T> = { readonly ok: true; readonly value: T } | Refusal;

const NAME = /^[A-Za-z0-9_-]{1,200}$/;
const refuse = (reason: string): Refusal => ({ ok: false, reason });

/** A job or function name as eddy allows them (subject tokens: `[A-Za-z0-9_-]+`). */
export function checkName(what: "job" | "function" | "state", value: string | null | undefined): Checked<string> {
  if (value === null || value === undefined || value === "") return refuse(`${what}: missing`);
  if (!NAME.test(value)) return refuse(`${what}: ${JSON.stringify(value.slice(0, 60))} is not a name (letters, digits, _ and - only)`);
  return { ok: true, value };
}

/** A state key: any non-empty text up to 1024 bytes without lone surrogates (what a key selector may return). */
export function checkKey(what: "key" | "subkey" | "prefix", value: string | null | undefined, allowEmpty = false): Checked<string> {
  if (value === null || value === undefined || (value === "" && !allowEmpty)) return refuse(`${what}: missing`);
  if (!value.isWellFormed()) return refuse(`${what}: not well-formed text`);
  if (new TextEncoder().encode(value).length > 1024) return refuse(`${what}: longer than 1024 bytes`);
  return { ok: true, value };
}

/** A state read or listing, as the state page asks for it. */
export type StateQuery =
  | { readonly op: "get"; readonly fn: string; readonly state: string; readonly key: string; readonly subkey?: string; readonly committed: boolean }
  | { readonly op: "scan"; readonly fn: string; readonly state?: string; readonly prefix?: string; readonly committed: boolean; readonly limit: number };

/** The query of `GET /api/jobs/<job>/state?…` (op=get|scan, fn, state, key, subkey, prefix, limit, committed=1). */
export function checkStateQuery(params: URLSearchParams): Checked<StateQuery> {
  const fn = checkName("function", params.get("fn"));
  if (!fn.ok) return fn;
  const committed = params.get("committed") === "1" || params.get("committed") === "true";
  const op = params.get("op") ?? "get";
  if (op === "get") {
    const state = checkName("state", params.get("state"));
    if (!state.ok) return state;
    const key = checkKey("key", params.get("key"));
    if (!key.ok) return key;
    const sub = params.get("subkey");
    if (sub !== null && sub !== "") {
      const subkey = checkKey("subkey", sub);
      if (!subkey.ok) return subkey;
      return { ok: true, value: { op, fn: fn.value, state: state.value, key: key.value, subkey: subkey.value, committed } };
    }
    return { ok: true, value: { op, fn: fn.value, state: state.value, key: key.value, committed } };
  }
  if (op === "scan") {
    const s = params.get("state");
    let state: string | undefined;
    if (s !== null && s !== "") {
      const c = checkName("state", s);
      if (!c.ok) return c;
      state = c.value;
    }
    const p = params.get("prefix");
    let prefix: string | undefined;
    if (p !== null && p !== "") {
      const c = checkKey("prefix", p);
      if (!c.ok) return c;
      prefix = c.value;
    }
    const l = params.get("limit");
    const limit = l === null || l === "" ? 100 : Number(l);
    if (!Number.isSafeInteger(limit) || limit < 1 || limit > 1000) return refuse("limit: not a whole number from 1 to 1000");
    return { ok: true, value: { op, fn: fn.value, committed, limit, ...(state === undefined ? {} : { state }), ...(prefix === undefined ? {} : { prefix }) } };
  }
  return refuse(`op: ${JSON.stringify(op.slice(0, 20))} is neither get nor scan`);
}

/** A state write from the state page (admin only). */
export type StateWrite =
  | { readonly op: "put"; readonly fn: string; readonly state: string; readonly key: string; readonly subkey?: string; readonly value: unknown }
  | { readonly op: "delete"; readonly fn: string; readonly state: string; readonly key: string; readonly subkey?: string };

/** The JSON body of `POST /api/jobs/<job>/state`: `{op: "put"|"delete", fn, state, key, subkey?, value?, confirm: true}`. */
export function checkStateWrite(body: string): Checked<StateWrite> {
  let v: unknown;
  try {
    v = JSON.parse(body);
  } catch {
    return refuse("body: not JSON");
  }
  if (v === null || typeof v !== "object" || Array.isArray(v)) return refuse("body: not an object");
  const b = v as Record<string, unknown>;
  if (b.confirm !== true) return refuse("confirm: a write must be confirmed (confirm: true)");
  const str = (x: unknown) => (typeof x === "string" ? x : undefined);
  const fn = checkName("function", str(b.fn));
  if (!fn.ok) return fn;
  const state = checkName("state", str(b.state));
  if (!state.ok) return state;
  const key = checkKey("key", str(b.key));
  if (!key.ok) return key;
  let subkey: string | undefined;
  if (b.subkey !== undefined && b.subkey !== null && b.subkey !== "") {
    const c = checkKey("subkey", str(b.subkey));
    if (!c.ok) return c;
    subkey = c.value;
  }
  const base = { fn: fn.value, state: state.value, key: key.value, ...(subkey === undefined ? {} : { subkey }) };
  if (b.op === "delete") return { ok: true, value: { op: "delete", ...base } };
  if (b.op === "put") {
    if (!("value" in b)) return refuse("value: missing");
    return { ok: true, value: { op: "put", ...base, value: b.value } };
  }
  return refuse("op: neither put nor delete");
}
