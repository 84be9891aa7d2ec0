/**
 * The state service of a worker's actors: queryable and writable keyed state over NATS
 * request/reply (architecture.md §7).
 *
 * For every function it hosts actors of, a worker registers one `@nats-io/services` service
 * (`eddy-state-<job>-<fn>`, so `$SRV.PING/INFO/STATS` find it) with four endpoints per partition
 * it owns, on `eddy.q.<job>.<fn>.<p>.get|scan|put|delete`. A client computes the partition of a
 * key and asks that subject, which only the owning worker listens on: no lookup service. When
 * ownership changes the services are rebuilt; a request in between finds no responder and the
 * client retries.
 *
 * Reads are answered from the actor's memory (`live`) or from the KV bucket (`committed`).
 * Writes are not applied here: they are appended to the partition's input log with the writer's
 * id as message id (a retried write is dropped as a duplicate by JetStream) and the actor answers
 * once it applied them, in order with the data (`PartitionActor.applyWrite`).
 */
import type { NatsConnection } from "@nats-io/transport-node";
import { Svcm, type Service, type ServiceMsg } from "@nats-io/services";
import { Kvm, type KV } from "@nats-io/kv";
import { partitionOf } from "../core/hash.ts";
import { HEADER, inputSubject, stateBucket, stateServiceName, stateServiceSubject, type StateOperation } from "../core/naming.ts";
import { BadStateRequestError, page, parseStateRequest, writeOps, type GetRequest, type ScanEntry, type ScanRequest, type WriteRequest } from "../core/state-queries.ts";
import { checkWindowWrites, encodeStateWrite, InvalidStateWriteError, keysOf, validateStateWrite } from "../core/state-writes.ts";
import type { PartitionActor } from "../actor/partition-actor.ts";
import type { BroadcastState } from "../core/broadcast.ts";
import type { Transport } from "../actor/ports.ts";
import { getCommitted, getCommittedBroadcast, scanCommitted, scanCommittedBroadcast } from "./committed-state.ts";
import { jetStreamOriginOf } from "./delivery.ts";
import { countRejected } from "../metrics/rejections.ts";

const OPERATIONS: readonly StateOperation[] = ["get", "scan", "put", "delete"];

/** The state services of one worker for one job. */
export class StateServices {
  private readonly nc: NatsConnection;
  private readonly job: string;
  private readonly transport: Transport;
  private services: Service[] = [];
  private readonly buckets = new Map<string, Promise<KV>>();
  private updating: Promise<void> = Promise.resolve();
  private readonly log: ((line: string) => void) | undefined;

  constructor(nc: NatsConnection, job: string, transport: Transport, log?: (line: string) => void) {
    this.nc = nc;
    this.job = job;
    this.transport = transport;
    this.log = log;
  }

  /** Serves exactly the given actors (replacing what was served before). */
  update(actors: ReadonlyMap<string, PartitionActor>): Promise<void> {
    this.updating = this.updating.then(() => this.rebuild([...actors.values()])).catch(() => undefined);
    return this.updating;
  }

  stop(): Promise<void> {
    return this.update(new Map());
  }

  private async rebuild(actors: PartitionActor[]): Promise<void> {
    const old = this.services;
    this.services = [];
    await Promise.all(old.map((s) => s.stop().catch(() => null)));
    const byFn = new Map<string, PartitionActor[]>();
    for (const a of actors) byFn.set(a.node.name, [...(byFn.get(a.node.name) ?? []), a]);
    for (const [fn, owned] of byFn) {
      const service = await new Svcm(this.nc).add({
        name: stateServiceName(this.job, fn),
        version: "1.0.0",
        description: `Keyed state of function ${fn} of job ${this.job}: get, scan, put, delete per partition`,
        metadata: { job: this.job, function: fn, partitions: String(owned[0]!.node.partitions) },
      });
      for (const actor of owned.sort((a, b) => a.partition - b.partition)) {
        for (const op of OPERATIONS) {
          service.addEndpoint(`${op}-${actor.partition}`, {
            subject: stateServiceSubject(this.job, fn, actor.partition, op),
            metadata: { partition: String(actor.partition), operation: op },
            handler: (err, msg) => {
              if (err !== null) return;
              // Clients ask with core requests. A stored message a consumer or direct get put on
              // this subject would otherwise write state with this worker's rights: refuse it,
              // unanswered (its reply subject, if any, is JetStream's).
              const forged = jetStreamOriginOf(msg);
              if (forged !== undefined) return void countRejected("state-request", "jetstream-delivery", `${stateServiceSubject(this.job, fn, actor.partition, op)}: ${forged}`, this.log);
              this.handle(op, actor, msg).catch((e) => respondError(msg, e));
            },
          });
        }
      }
      this.services.push(service);
    }
  }

  private bucket(fn: string): Promise<KV> {
    let kv = this.buckets.get(fn);
    if (kv === undefined) {
      kv = new Kvm(this.nc).open(stateBucket(this.job, fn));
      this.buckets.set(fn, kv);
      kv.catch(() => this.buckets.delete(fn));
    }
    return kv;
  }

  private async handle(op: StateOperation, actor: PartitionActor, msg: ServiceMsg): Promise<void> {
    const request = parse(msg.data);
    const fn = actor.node.name;
    const p = actor.partition;
    const owns = (key: unknown) => {
      if (typeof key !== "string") throw new BadStateRequestError('"key" must be a string');
      const q = partitionOf(key, actor.node.partitions);
      if (q !== p) throw new BadStateRequestError(`key ${JSON.stringify(key)} belongs to partition ${q} of ${fn}, not ${p}`);
    };
    switch (op) {
      case "get": {
        const r = request as GetRequest;
        if (r.broadcast === true) {
          // Any partition holds the whole broadcast state: no key routing (design note bq).
          const state = broadcastOf(actor, r.state);
          if (typeof r.key !== "string") throw new BadStateRequestError('"key" must be a string');
          if (r.consistency === "committed") return void msg.respond(JSON.stringify(await getCommittedBroadcast(await this.bucket(fn), r.state, r.key)));
          const value = state.get(r.state, r.key);
          return void msg.respond(JSON.stringify(value === undefined ? { found: false } : { found: true, value }));
        }
        owns(r.key);
        if (typeof r.state !== "string") throw new BadStateRequestError('"state" must be a string');
        actor.store.declaration(r.state); // unknown state: a clear error, not "not found"
        if (r.consistency === "committed") return void msg.respond(JSON.stringify(await getCommitted(await this.bucket(fn), p, r.state, r.key, r.subkey)));
        const value = await actor.readLive(r.state, r.key, r.subkey);
        return void msg.respond(JSON.stringify(value === undefined ? { found: false } : { found: true, value }));
      }
      case "scan": {
        const r = request as ScanRequest;
        if (r.broadcast === true) {
          const state = broadcastOf(actor, r.state, true);
          if (r.prefix !== undefined && typeof r.prefix !== "string") throw new BadStateRequestError('"prefix" must be a string');
          if (r.consistency === "committed") return void msg.respond(JSON.stringify(await scanCommittedBroadcast(await this.bucket(fn), r)));
          const names = r.state === undefined ? Object.keys(state.declarations) : [r.state];
          const candidates = names.flatMap((name) => state.keys(name).filter((k) => k.startsWith(r.prefix ?? "")).map((k): [string, string] => [name, k]));
          const { keys, next } = page(candidates, r);
          const entries: ScanEntry[] = keys.map(([name, key]) => ({ state: name, key, value: state.get(name, key) }));
          return void msg.respond(JSON.stringify(next === undefined ? { entries } : { entries, next }));
        }
        if (r.state !== undefined) actor.store.declaration(r.state);
        if (r.consistency === "committed") return void msg.respond(JSON.stringify(await scanCommitted(await this.bucket(fn), p, r)));
        const { keys, next } = page(await actor.liveKeys(r.state, r.prefix ?? ""), r);
        const entries: ScanEntry[] = await Promise.all(keys.map(async ([state, key]) => ({ state, key, value: await actor.readLive(state, key) })));
        return void msg.respond(JSON.stringify(next === undefined ? { entries } : { entries, next }));
      }
      case "put":
      case "delete": {
        const r = request as WriteRequest;
        const write = { ops: writeOps(r, op) };
        validateStateWrite(write, actor.store.declarations);
        checkWindowWrites(write, actor.node.spec.windowing, actor.watermark);
        for (const key of keysOf(write)) owns(key);
        const notify = typeof r.notify === "string" && r.notify !== "" ? r.notify : msg.reply;
        const headers: Record<string, string> = { [HEADER.kind]: "write" };
        if (notify !== undefined && notify !== "") headers[HEADER.reply] = notify;
        await this.transport.publish(inputSubject(this.job, fn, p), encodeStateWrite(write), headers, typeof r.id === "string" && r.id !== "" ? r.id : undefined);
        // With its own notify subject the writer hears "applied" there; answer "accepted" here.
        if (notify !== msg.reply) msg.respond(JSON.stringify({ accepted: true }));
        return;
      }
    }
  }
}

/** The broadcast state of `actor`'s function, after checking that it declares `state` (any, if `optional` and undefined). */
function broadcastOf(actor: PartitionActor, state: unknown, optional = false): BroadcastState {
  const fn = actor.node.name;
  const b = actor.broadcast;
  if (b === undefined) throw new BadStateRequestError(`${fn} has no broadcast state`);
  if (optional && state === undefined) return b;
  if (typeof state !== "string" || !Object.hasOwn(b.declarations, state)) throw new BadStateRequestError(`${fn} declares no broadcast state ${JSON.stringify(state)} (it declares: ${Object.keys(b.declarations).join(", ") || "none"})`);
  return b;
}

// The request's fields are checked where they are used (page, writeOps, the handlers).
const parse = (data: Uint8Array): any => parseStateRequest(data);

function respondError(msg: ServiceMsg, e: unknown): void {
  const err = e as Error;
  const client = e instanceof BadStateRequestError || e instanceof InvalidStateWriteError || err?.name === "UndeclaredStateError";
  msg.respondError(client ? 400 : 500, `${err?.name ?? "Error"}: ${err?.message ?? String(e)}`, JSON.stringify({ error: { name: err?.name ?? "Error", message: err?.message ?? String(e) } }));
}
