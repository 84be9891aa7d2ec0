/**
 * A stand-in for a worker that speaks the control protocol without running any actor: it writes
 * heartbeats, answers checkpoint triggers with one snapshot ack per actor it owns (after writing
 * a dummy delta object of the acked size, which the supervisor checks), and can report actor
 * failures. The supervisor's tests use
 * it, and it is handy for watching a supervisor work by hand.
 *
 * Knobs let a test misbehave on purpose: withhold the acks of some actors, hold all acks until
 * released, or stop the heartbeat so that the entry expires as if the worker had died.
 */
import type { NatsConnection, Subscription } from "@nats-io/transport-node";
import {
  ackSubject,
  assignmentKey,
  deltaObject,
  failureSubject,
  heartbeatKey,
  triggerSubject,
  type ActorFailure,
  type Assignment,
  type SnapshotAck,
  type TriggerMessage,
  type WorkerHeartbeat,
} from "../../runtime/core/protocol.ts";
import { Objm, type ObjectStore } from "@nats-io/obj";
import { checkpointObjects } from "../../runtime/core/naming.ts";
import { ensureControlStores, readJson } from "../../runtime/nats/control-store.ts";

export interface SimulatedWorkerOptions {
  readonly id: string;
  /** Jobs this worker says it can run. */
  readonly jobs: readonly string[];
  /** Heartbeat period (default 1000 ms; the entries expire after 5 s). */
  readonly heartbeatMs?: number;
  /**
   * Write a dummy delta object per actor (named by `deltaObject`, of the acked size) before
   * acking, as a real worker does (default true). False: acks without snapshots, which the
   * supervisor refuses to commit.
   */
  readonly writeDeltas?: boolean;
  /**
   * Statistics reported in each ack (default 100 bytes, 1 key, 0 ms alignment, not finished), and
   * the segments it names (none by default; nothing writes them).
   */
  readonly ackStats?: (actor: string) => Pick<SnapshotAck, "bytes" | "keysChanged" | "alignmentMs" | "finished" | "segments" | "timings">;
}

export interface SimulatedWorker {
  readonly id: string;
  /** Actors whose acks are never sent (as if they hung). */
  readonly withheld: Set<string>;
  /** While true, acks are queued instead of sent; `releaseAcks()` sends them. */
  holdAcks: boolean;
  /** Every trigger received, with its job. */
  readonly triggers: Array<TriggerMessage & { readonly job: string }>;
  /** Sends the acks queued while `holdAcks` was true. */
  releaseAcks(): void;
  /** Stops writing heartbeats: the entry expires as if the process had died. */
  stopHeartbeat(): void;
  /** Says it is leaving gracefully (`leaving` in its heartbeat), as a worker on SIGTERM does. */
  leave(): Promise<void>;
  /** Reports an actor failure for the job's current generation (or the given one). */
  reportFailure(job: string, actor: string, reason: string, generation?: number): Promise<void>;
  /** Stops heartbeats and answers; the heartbeat entry is left to expire. */
  stop(): Promise<void>;
}

export async function startSimulatedWorker(nc: NatsConnection, options: SimulatedWorkerOptions): Promise<SimulatedWorker> {
  const stores = await ensureControlStores(nc);
  const { jobs } = stores;
  // Each job's checkpoint store, as deploying the job would have created it.
  const objects = new Map<string, ObjectStore>();
  for (const job of options.jobs) objects.set(job, await new Objm(nc).create(checkpointObjects(job)));
  const stats = options.ackStats ?? (() => ({ bytes: 100, keysChanged: 1, alignmentMs: 0, finished: false }));
  // Simulated actors start at once: the worker reports every assigned generation as running.
  const running: Record<string, number> = {};
  const startedAt = Date.now();
  let alive = true;
  let leaving = false;
  // One heartbeat per job, under the job's key, as a worker running several jobs writes them.
  const beat = () =>
    Promise.all(
      options.jobs.map((job) =>
        stores.workers
          .put(heartbeatKey(job, options.id), JSON.stringify({ id: options.id, pid: process.pid, startedAt, jobs: [job], running, ...(leaving ? { leaving } : {}) } satisfies WorkerHeartbeat))
          .catch(() => 0),
      ),
    );
  const refresh = async () => {
    let changed = false;
    for (const job of options.jobs) {
      const g = (await readJson(jobs, assignmentKey(job), "assignment").catch(() => undefined))?.value.generation;
      if (g !== undefined && running[job] !== g) {
        running[job] = g;
        changed = true;
      }
    }
    if (changed && alive) await beat();
  };
  await beat();
  let timer: NodeJS.Timeout | undefined = setInterval(beat, options.heartbeatMs ?? 1000);
  const refresher = setInterval(() => void refresh().catch(() => undefined), 100);
  const held: Array<{ subject: string; ack: SnapshotAck }> = [];
  const subs: Subscription[] = [];

  const worker: SimulatedWorker = {
    id: options.id,
    withheld: new Set(),
    holdAcks: false,
    triggers: [],
    releaseAcks() {
      for (const { subject, ack } of held.splice(0)) nc.publish(subject, JSON.stringify(ack));
    },
    stopHeartbeat() {
      alive = false;
      clearInterval(timer);
      clearInterval(refresher);
      timer = undefined;
    },
    async leave() {
      leaving = true;
      await beat();
    },
    async reportFailure(job, actor, reason, generation) {
      const g = generation ?? (await readJson(jobs, assignmentKey(job), "assignment"))?.value.generation ?? 0;
      const failure: ActorFailure = { generation: g, actor, worker: options.id, reason };
      nc.publish(failureSubject(job), JSON.stringify(failure));
      await nc.flush();
    },
    async stop() {
      worker.stopHeartbeat();
      for (const s of subs) s.unsubscribe();
    },
  };

  const answer = async (job: string, trigger: TriggerMessage) => {
    const assignment = (await readJson(jobs, assignmentKey(job), "assignment"))?.value;
    // Actors of another generation are being restarted: they would not see this trigger.
    if (assignment === undefined || assignment.generation !== trigger.generation) return;
    for (const [actor, owner] of Object.entries(assignment.owners)) {
      if (owner !== options.id || worker.withheld.has(actor)) continue;
      const [fn, p] = [actor.slice(0, actor.lastIndexOf("/")), Number(actor.slice(actor.lastIndexOf("/") + 1))];
      const ack: SnapshotAck = { id: trigger.id, generation: trigger.generation, actor, worker: options.id, ...stats(actor) };
      if (options.writeDeltas !== false) await objects.get(job)!.putBlob({ name: deltaObject(job, trigger.id, fn, p) }, new Uint8Array(ack.bytes));
      if (worker.holdAcks) held.push({ subject: ackSubject(job), ack });
      else nc.publish(ackSubject(job), JSON.stringify(ack));
    }
  };

  for (const job of options.jobs) {
    subs.push(
      nc.subscribe(triggerSubject(job), {
        callback: (err, msg) => {
          if (err !== null) return;
          const trigger = msg.json<TriggerMessage>();
          worker.triggers.push({ ...trigger, job });
          answer(job, trigger).catch(() => undefined);
        },
      }),
    );
  }
  await nc.flush();
  return worker;
}
