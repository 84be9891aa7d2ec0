/**
 * A worker: the process-level host of a job's partition actors.
 *
 * It validates the pipeline, creates the job's streams and buckets, and runs one supervised slot
 * per (function, partition). A slot starts an actor and, when the actor fails (a publish not
 * acknowledged, NATS unreachable), stops it without writing anything and starts a fresh one from
 * the last stored position, with exponential backoff — the restart policy is Effect's `retry`.
 * Closing the worker's scope stops every actor, which writes its state back. Until the
 * supervisor assigns partitions (a later milestone), a worker owns every partition of its job.
 */
import { Cause, Effect, Exit, Schedule, Scope } from "effect";
import type { NatsConnection } from "@nats-io/transport-node";
import { buildJobGraph, type JobGraph } from "../core/job-graph.ts";
import type { PipelineSpec } from "../sdk/function.ts";
import { ensureJobTopology } from "../nats/topology.ts";
import { JetStreamTransport } from "../nats/transport.ts";
import { PartitionActor, type ActorConfig, type ActorStats } from "./partition-actor.ts";

export interface WorkerOptions {
  /** Actor tuning (batching, linger, write-back interval). */
  readonly actor?: Partial<ActorConfig>;
  /** Longest pause between two restarts of a failing actor (default 5 s). */
  readonly maxRestartDelayMs?: number;
}

/** A running worker. */
export interface Worker {
  readonly graph: JobGraph;
  /** The current actor of every slot (a restarted actor replaces the failed one). */
  actors(): PartitionActor[];
  stats(): ActorStats[];
  /** Ends every source at its stream's current last message (for bounded runs and demos). */
  endInput(): Promise<void>;
  /** Resolves once every actor has seen the end of its input and stored its output. */
  finished(): Promise<void>;
  /** How many times actors were restarted after a failure. */
  restarts(): number;
}

/** An actor failed; its slot restarts it. */
export class ActorFailedError extends Error {
  override readonly name = "ActorFailedError";
}

interface Slot {
  readonly id: string;
  actor: PartitionActor | undefined;
}

/** Runs a worker for `pipeline` within the current scope. */
export const makeWorker = (nc: NatsConnection, pipeline: PipelineSpec, options: WorkerOptions = {}) =>
  Effect.gen(function* () {
    const graph = buildJobGraph(pipeline);
    yield* Effect.tryPromise(() => ensureJobTopology(nc, graph)).pipe(
      Effect.retry({ schedule: Schedule.exponential("200 millis"), times: 5 }),
    );
    const transport = new JetStreamTransport(nc);
    const slots: Slot[] = [];
    let restarts = 0;
    const maxDelay = options.maxRestartDelayMs ?? 5000;

    const runSlot = (slot: Slot, fn: JobGraph["functions"][number], partition: number) =>
      Effect.gen(function* () {
        const actor = yield* Effect.acquireRelease(
          Effect.tryPromise({
            try: async () => {
              const a = new PartitionActor(transport, graph, fn, partition, options.actor);
              slot.actor = a;
              await a.start();
              return a;
            },
            catch: (e) => new ActorFailedError(`${slot.id} could not start: ${(e as Error)?.message ?? e}`, { cause: e }),
          }),
          (a) => Effect.promise(() => a.stop().catch(() => undefined)),
        );
        yield* Effect.tryPromise({
          try: () => actor.failed,
          catch: (e) => new ActorFailedError(`${slot.id} failed: ${(e as Error)?.message ?? e}`, { cause: e }),
        });
      }).pipe(
        Effect.scoped,
        Effect.tapError((e) =>
          Effect.sync(() => {
            restarts++;
          }).pipe(Effect.andThen(Effect.logWarning(`${e.message}; restarting from its stored position`))),
        ),
        // Exponential backoff, capped: the smaller of the two delays wins.
        Effect.retry(Schedule.min([Schedule.exponential("100 millis"), Schedule.spaced(maxDelay)])),
      );

    const scope = yield* Effect.scope;
    for (const fn of graph.functions) {
      for (let p = 0; p < fn.partitions; p++) {
        const slot: Slot = { id: `${fn.name}/${p}`, actor: undefined };
        slots.push(slot);
        yield* Effect.forkIn(runSlot(slot, fn, p), scope);
      }
    }
    // Wait until every slot has a started actor so callers can use the worker at once.
    yield* Effect.promise(async () => {
      while (!slots.every((s) => s.actor?.running)) await new Promise((r) => setTimeout(r, 10));
    });

    const current = () => slots.map((s) => s.actor).filter((a): a is PartitionActor => a !== undefined);
    const worker: Worker = {
      graph,
      actors: current,
      stats: () => current().map((a) => ({ ...a.stats })),
      endInput: async () => {
        await Promise.all(current().map((a) => a.endInput()));
      },
      finished: async () => {
        while (!slots.every((s) => s.actor?.isFinished === true)) await new Promise((r) => setTimeout(r, 20));
      },
      restarts: () => restarts,
    };
    return worker;
  });

/** A worker started outside Effect, for demos and tests; `stop()` closes its scope. */
export interface StartedWorker extends Worker {
  stop(): Promise<void>;
}

export async function startWorker(nc: NatsConnection, pipeline: PipelineSpec, options: WorkerOptions = {}): Promise<StartedWorker> {
  const scope = Effect.runSync(Scope.make());
  const exit = await Effect.runPromiseExit(makeWorker(nc, pipeline, options).pipe(Scope.provide(scope)));
  if (Exit.isFailure(exit)) {
    await Effect.runPromise(Scope.close(scope, exit));
    throw Cause.squash(exit.cause);
  }
  let stopped: Promise<void> | undefined;
  return {
    ...exit.value,
    stop: () => (stopped ??= Effect.runPromise(Scope.close(scope, Exit.void))),
  };
}
