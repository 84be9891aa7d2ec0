/**
 * A typed client of a function's keyed state: `stateClient(nc, job, fn)`.
 *
 * It routes every request by the key's partition straight to the subject the owning worker
 * serves (`eddy.q.<job>.<fn>.<p>.<op>`), retries while ownership moves (no responder), and reads
 * `committed` state from the KV bucket itself, so those reads work with the job stopped. Writes
 * carry an id, so a retried write is applied once, and resolve when the actor has applied them —
 * or, when no actor runs the partition (the job stopped, restarting, handed over), once they are
 * queued in the input log, saying so: a write is applied, queued, or refused, never lost.
 */
import { randomUUID } from "node:crypto";
import { createInbox, headers as natsHeaders, PermissionViolationError, type Msg, type NatsConnection } from "@nats-io/transport-node";
import { jetstream } from "@nats-io/jetstream";
import { Kvm, type KV } from "@nats-io/kv";
import { partitionOf } from "../core/hash.ts";
import { HEADER, inputSubject, stateBucket, stateServiceSubject, type StateOperation } from "../core/naming.ts";
import { jobSpecKey, JOBS_BUCKET } from "../core/protocol.ts";
import { decodeControl, type ControlRecord } from "../core/control-messages.ts";
import { writeOps, type Consistency, type GetReply, type ScanEntry, type ScanReply, type WriteOutcome, type WriteRequest } from "../core/state-queries.ts";
import { checkWindowWrites, encodeStateWrite, validateStateWrite, type StateWriteOp, type WindowLayout } from "../core/state-writes.ts";
import { watermarkKey } from "../core/kv-keys.ts";
import { decodeValue } from "../core/wire.ts";
import type { StateDeclarations } from "../sdk/state.ts";
import { getCommitted, getCommittedBroadcast, scanCommitted, scanCommittedBroadcast } from "./committed-state.ts";
import { deploymentKey, lastVersion, openDeployments, type DeploymentRecord } from "./deployments.ts";
import { InputError, TransientError } from "../errors.ts";
import { replicasOf } from "./replicas.ts";
import { createRacing } from "./racing-creation.ts";

/** Options of a read. */
export interface ReadOptions {
  /** One entry of a map state. */
  readonly subkey?: string;
  /** `live` (default): the owning actor's memory; `committed`: the last materialized checkpoint, from KV. */
  readonly consistency?: Consistency;
  /**
   * Read the function's broadcast state instead (design note bq): `state` names a broadcast state
   * and `key` its entry (`subkey` is not used). Live reads ask partition 0, which holds it whole.
   */
  readonly broadcast?: boolean;
}

/** Options of a scan. */
export interface ScanOptions {
  readonly state?: string;
  readonly prefix?: string;
  readonly consistency?: Consistency;
  /** Entries per request (default 100). */
  readonly pageSize?: number;
  /** List the function's broadcast state instead: `key` is an entry's sub-key (design note bq). */
  readonly broadcast?: boolean;
}

/** What became of a put or delete. */
export interface WriteReceipt {
  /** The owning actor applied it (visible to live reads). */
  readonly applied: boolean;
  readonly partition: number;
  /** When not applied: why it waits in the input log. */
  readonly queued?: string;
}

/** Options of a raw write. */
export interface WriteOptions {
  /** Wait until every partition's actor applied it (default true). */
  readonly wait?: boolean;
}

/**
 * Queryable and writable state of one function.
 * @example
 * const counts = await stateClient(nc, "pageviews", "count");
 * await counts.put("views", "/home", 42);              // resolves once applied, in order with the data
 * const live = await counts.get<number>("views", "/home");
 * for await (const e of counts.scan({ prefix: "/docs", consistency: "committed" })) console.log(e.key, e.value);
 */
export interface StateClient {
  readonly job: string;
  readonly fn: string;
  readonly partitions: number;
  partitionOf(key: string): number;
  get<T = unknown>(state: string, key: string, options?: ReadOptions): Promise<T | undefined>;
  scan(options?: ScanOptions): AsyncIterable<ScanEntry>;
  /**
   * Writes one key's state through its input log. Resolves once the owning actor applied it
   * (`applied: true`); when no actor runs the partition (the job is stopped, restarting or being
   * handed over, or no worker runs) the write is appended to the log anyway and resolves with
   * `applied: false` and the reason: it is applied, in order, when the partition runs again.
   * Rejects — with nothing written — when the write does not fit the declarations.
   */
  put(state: string, key: string, value: unknown, options?: { readonly subkey?: string }): Promise<WriteReceipt>;
  delete(state: string, key: string, options?: { readonly subkey?: string }): Promise<WriteReceipt>;
  /**
   * Appends operations straight to the function's input log (no service in between, so it works
   * with the job stopped: they are applied when it runs). With `wait` it resolves once applied.
   */
  write(ops: readonly StateWriteOp[], options?: WriteOptions): Promise<void>;
}

export interface StateClientOptions {
  /** How long a request keeps retrying while no worker serves the partition (default 10 s). */
  readonly timeoutMs?: number;
  /**
   * The function as the deployed code defines it, for checking writes that go to the input log
   * without a service (the job not running): its declarations (`validate` included) and window
   * layout. Without it those writes are checked against the deployment record (state names and
   * kinds) only, and the actor refuses the rest when it applies them (to the dead letters).
   */
  readonly deployed?: () => Promise<{ readonly state?: StateDeclarations; readonly windowing?: WindowLayout } | undefined>;
}

/** No worker answered for the partition within the timeout: the job is not running or moving; retry. */
export class StateUnavailableError extends TransientError {
  override readonly name = "StateUnavailableError";
}

/** The service refused the request (unknown state, wrong value, bad key); fix it. */
export class StateRequestError extends InputError {
  override readonly name = "StateRequestError";
}

/** The job or function is not known (never deployed, or the name is wrong). */
export class UnknownFunctionError extends InputError {
  override readonly name = "UnknownFunctionError";
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** JSON, or `undefined` for bytes that are not. */
const parseJson = (data: Uint8Array): unknown => {
  try {
    return JSON.parse(decoder.decode(data));
  } catch {
    return undefined;
  }
};
const isObject = (x: unknown): x is Record<string, unknown> => typeof x === "object" && x !== null && !Array.isArray(x);
const isGetReply = (x: unknown): x is GetReply => isObject(x) && typeof x.found === "boolean";
const isScanReply = (x: unknown): x is ScanReply =>
  isObject(x) &&
  Array.isArray(x.entries) &&
  x.entries.every((e: unknown) => isObject(e) && typeof e.state === "string" && typeof e.key === "string") &&
  (x.next === undefined || typeof x.next === "string");
const isWriteOutcome = (x: unknown): x is WriteOutcome =>
  isObject(x) && (x.ok === true || (x.ok === false && isObject(x.error) && typeof x.error.name === "string" && typeof x.error.message === "string"));
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** An answer that is not what the service sends (someone else answered on the inbox, or a bug); retry. */
export class InvalidStateReplyError extends TransientError {
  override readonly name = "InvalidStateReplyError";
}

/**
 * A record of the jobs bucket if it decodes, else `undefined`: the spec and the current
 * deployment are read by anyone's tools and written by others (control-messages.ts).
 */
async function readRecord<K extends "spec" | "deploy">(jobs: KV, key: string, kind: K): Promise<ControlRecord<K> | undefined> {
  const e = await jobs.get(key);
  if (e === null || e.operation !== "PUT" || e.length === 0) return undefined;
  const d = decodeControl(kind, e.value);
  return d.ok ? d.value : undefined;
}

/** The current deployment record if it decodes, else the last version (which throws if that does not). */
async function deploymentOf(nc: NatsConnection, jobs: KV, job: string): Promise<DeploymentRecord | undefined> {
  return (await readRecord(jobs, deploymentKey(job), "deploy")) ?? (await lastVersion(await openDeployments(nc), job));
}

/** Partition count of `fn`: from the job's spec, else its current or last deployment. */
async function partitionsOf(nc: NatsConnection, jobs: KV, job: string, fn: string): Promise<number> {
  const f = (await readRecord(jobs, jobSpecKey(job), "spec"))?.functions.find((x) => x.name === fn);
  if (f !== undefined) return f.partitions;
  const record = await deploymentOf(nc, jobs, job);
  const d = record?.functions.find((x) => x.name === fn);
  if (d === undefined) throw new UnknownFunctionError(`job "${job}" has no function "${fn}" (not deployed, or a typo)`);
  return d.partitions;
}

/** Whether `job` has a current deployment (a stopped or undeployed job has none). */
async function isDeployed(jobs: KV, job: string): Promise<boolean> {
  const e = await jobs.get(deploymentKey(job));
  return e !== null && e.operation === "PUT" && e.length > 0;
}

/**
 * The state declarations of `fn` as its current (else last) deployment recorded them — kind and
 * schema version, enough for `validateStateWrite`. Undefined when no deployment names it (a job
 * run with `--pipeline`): then only the actor checks.
 */
async function declarationsOf(nc: NatsConnection, jobs: KV, job: string, fn: string): Promise<StateDeclarations | undefined> {
  const f = (await deploymentOf(nc, jobs, job))?.functions.find((x) => x.name === fn);
  return f === undefined ? undefined : (f.state as unknown as StateDeclarations);
}

export async function stateClient(nc: NatsConnection, job: string, fn: string, options: StateClientOptions = {}): Promise<StateClient> {
  const timeoutMs = options.timeoutMs ?? 10_000;
  const jobs = await createRacing(() => new Kvm(nc).create(JOBS_BUCKET, { history: 1, replicas: replicasOf(nc) }));
  const partitions = await partitionsOf(nc, jobs, job, fn);
  let kv: Promise<KV> | undefined;
  const bucket = () => (kv ??= new Kvm(nc).open(stateBucket(job, fn)));
  const js = jetstream(nc);
  const partition = (key: string) => partitionOf(key, partitions);

  /** The operator watermark partition `p` last committed (-Infinity before any). */
  const committedWatermark = async (p: number): Promise<number> => {
    const kv = await bucket().catch(() => undefined);
    const e = kv === undefined ? null : await kv.get(watermarkKey(p)).catch(() => null);
    if (e === null || e.length === 0) return -Infinity;
    let wm: unknown;
    try {
      wm = decodeValue(e.value);
    } catch {
      return -Infinity; // not msgpack: no watermark to close windows by
    }
    const { op, out } = (typeof wm === "object" && wm !== null ? wm : {}) as { op?: unknown; out?: unknown };
    return typeof op === "number" ? op : typeof out === "number" ? out : -Infinity;
  };

  /** A request to partition `p`, retried while nobody serves it. */
  const ask = async <T>(p: number, op: StateOperation, body: unknown, check: (x: unknown) => x is T): Promise<T> => {
    const deadline = Date.now() + timeoutMs;
    for (let attempt = 0; ; attempt++) {
      let reply: Msg;
      try {
        reply = await nc.request(stateServiceSubject(job, fn, p, op), encoder.encode(JSON.stringify(body)), { timeout: Math.max(500, Math.min(5000, deadline - Date.now())) });
      } catch (e) {
        // Not allowed to ask (e.g. a read-only user's put): retrying cannot help. nats.js rejects
        // the request with a RequestError caused by the server's permissions violation.
        const denied = e instanceof PermissionViolationError ? e : (e as Error)?.cause;
        if (denied instanceof PermissionViolationError) throw denied;
        if (Date.now() >= deadline) {
          throw new StateUnavailableError(`no worker serves partition ${p} of ${job}/${fn} (${(e as Error).message}); is the job running? committed reads work without it`, { cause: e });
        }
        await sleep(Math.min(500, 50 * 2 ** attempt));
        continue;
      }
      const code = reply.headers?.get("Nats-Service-Error-Code");
      if (code !== undefined && code !== "") {
        const message = reply.headers?.get("Nats-Service-Error") ?? `error ${code}`;
        if (code.startsWith("4")) throw new StateRequestError(message.replace(/^[A-Za-z]+Error: /, ""));
        if (Date.now() >= deadline) throw new StateUnavailableError(`${job}/${fn} partition ${p}: ${message}`);
        await sleep(100);
        continue;
      }
      const answer = parseJson(reply.data);
      if (!check(answer)) throw new InvalidStateReplyError(`partition ${p} of ${job}/${fn} answered ${op} with something that is not a ${op} reply`);
      return answer;
    }
  };

  /**
   * Waits for one outcome per partition on `inbox`: true once every partition applied it, false
   * when the timeout passed first (the write is in the log, not applied yet). A refusal rejects.
   * The promise always has a handler, so an early exit of the caller never leaves it unhandled.
   */
  const outcomes = (inbox: string, count: number) => {
    const sub = nc.subscribe(inbox, { max: count });
    const done = (async () => {
      const timer = setTimeout(() => sub.unsubscribe(), timeoutMs);
      let seen = 0;
      try {
        for await (const m of sub) {
          const outcome = parseJson(m.data);
          // Anyone who can publish on the inbox can answer here; what is no outcome is not one.
          if (!isWriteOutcome(outcome)) continue;
          if (!outcome.ok) throw new StateRequestError(`${outcome.error.name}: ${outcome.error.message}`);
          seen++;
        }
      } finally {
        clearTimeout(timer);
      }
      return seen >= count;
    })();
    done.catch(() => undefined);
    return { sub, done };
  };

  const byPartition = (ops: readonly StateWriteOp[]) => {
    const groups = new Map<number, StateWriteOp[]>();
    for (const op of ops) groups.set(partition(op.key), [...(groups.get(partition(op.key)) ?? []), op]);
    return groups;
  };

  /**
   * Appends a write to partition `p`'s input log directly, after checking it as the service would
   * have: against the deployed code (`options.deployed`: declarations, `validate`, windows against
   * the committed watermark), else against the kinds the deployment record keeps. Publishing with
   * the write's id lets JetStream drop it if a service already did.
   */
  const append = async (p: number, ops: readonly StateWriteOp[], id: string, notify?: string) => {
    const code = await options.deployed?.();
    const declared = code?.state ?? (await declarationsOf(nc, jobs, job, fn));
    try {
      if (declared !== undefined) validateStateWrite({ ops }, declared);
      // With nobody running the partition, its committed watermark is the one windows close by.
      if (code?.windowing !== undefined) checkWindowWrites({ ops }, code.windowing, await committedWatermark(p));
    } catch (e) {
      throw new StateRequestError((e as Error).message);
    }
    const h = natsHeaders();
    h.set(HEADER.kind, "write");
    if (notify !== undefined) h.set(HEADER.reply, notify);
    try {
      await js.publish(inputSubject(job, fn, p), encodeStateWrite({ ops }), { headers: h, msgID: id });
    } catch (e) {
      const denied = e instanceof PermissionViolationError ? e : (e as Error)?.cause;
      if (denied instanceof PermissionViolationError) throw denied;
      throw new StateRequestError(`cannot queue the write: ${job}/${fn} has no input log yet (${(e as Error).message}); a worker creates it when it first runs the job`, { cause: e });
    }
  };

  const serviceWrite = async (op: "put" | "delete", key: string, body: Record<string, unknown>): Promise<WriteReceipt> => {
    const p = partition(key);
    const id = randomUUID();
    const ops = writeOps(body as WriteRequest, op);
    // Not deployed (stopped, undeployed): no actor will answer, so queue it in the log at once.
    if (!(await isDeployed(jobs, job))) {
      await append(p, ops, id);
      return { applied: false, partition: p, queued: `${job} is not running` };
    }
    const notify = createInbox();
    const waiting = outcomes(notify, 1);
    try {
      await nc.flush();
      await ask(p, op, { ...body, id, notify }, isObject);
    } catch (e) {
      if (!(e instanceof StateUnavailableError)) {
        waiting.sub.unsubscribe();
        throw e;
      }
      // Deployed, but nobody serves the partition (restarting, handed over, no worker): the log
      // takes it, and whoever runs the partition next applies it; still listen for that.
      await append(p, ops, id, notify).catch((refused: unknown) => {
        waiting.sub.unsubscribe();
        throw refused;
      });
      if (await waiting.done) return { applied: true, partition: p };
      return { applied: false, partition: p, queued: `no worker serves partition ${p} of ${job}/${fn} now` };
    }
    if (await waiting.done) return { applied: true, partition: p };
    return { applied: false, partition: p, queued: `not applied within ${timeoutMs} ms` };
  };

  return {
    job,
    fn,
    partitions,
    partitionOf: partition,
    async get<T>(state: string, key: string, opts: ReadOptions = {}) {
      if (opts.broadcast === true) {
        const reply = opts.consistency === "committed" ? await getCommittedBroadcast(await bucket(), state, key) : await ask(0, "get", { state, key, broadcast: true }, isGetReply);
        return reply.found ? (reply.value as T) : undefined;
      }
      const p = partition(key);
      const reply =
        opts.consistency === "committed"
          ? await getCommitted(await bucket(), p, state, key, opts.subkey)
          : await ask(p, "get", { state, key, ...(opts.subkey === undefined ? {} : { subkey: opts.subkey }) }, isGetReply);
      return reply.found ? (reply.value as T) : undefined;
    },
    async *scan(opts: ScanOptions = {}) {
      const broadcast = opts.broadcast === true;
      // Broadcast state is the function's, whole in every partition: partition 0 answers.
      for (let p = 0; p < (broadcast ? 1 : partitions); p++) {
        let after: string | undefined;
        do {
          const request = { ...(opts.state === undefined ? {} : { state: opts.state }), prefix: opts.prefix ?? "", limit: opts.pageSize ?? 100, ...(after === undefined ? {} : { after }), ...(broadcast ? { broadcast } : {}) };
          const page: ScanReply =
            opts.consistency === "committed"
              ? await (broadcast ? scanCommittedBroadcast(await bucket(), request) : scanCommitted(await bucket(), p, request))
              : await ask(p, "scan", request, isScanReply);
          yield* page.entries;
          after = page.next;
        } while (after !== undefined);
      }
    },
    put: (state, key, value, opts = {}) => serviceWrite("put", key, { state, key, value, ...(opts.subkey === undefined ? {} : { subkey: opts.subkey }) }),
    delete: (state, key, opts = {}) => serviceWrite("delete", key, { state, key, ...(opts.subkey === undefined ? {} : { subkey: opts.subkey }) }),
    async write(ops, opts = {}) {
      const groups = byPartition(ops);
      const wait = opts.wait ?? true;
      const notify = createInbox();
      const waiting = wait ? outcomes(notify, groups.size) : undefined;
      await nc.flush();
      for (const [p, group] of groups) {
        const h = natsHeaders();
        h.set(HEADER.kind, "write");
        if (wait) h.set(HEADER.reply, notify);
        await js.publish(inputSubject(job, fn, p), encodeStateWrite({ ops: group }), { headers: h, msgID: randomUUID() });
      }
      if (waiting !== undefined && !(await waiting.done)) {
        throw new StateUnavailableError(`a write to ${job}/${fn} was not applied within ${timeoutMs} ms; it is in the input log and will be applied once the job runs`);
      }
    },
  };
}
