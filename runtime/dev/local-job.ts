/**
 * A job run inside one process: a supervisor and a worker sharing a NATS connection.
 *
 * This is what `npm run demo`, the benchmarks and most integration tests use. It is the production
 * machinery — leader election, assignment, checkpoints, materialization — just co-located, so a
 * clean stop is a real stop-with-checkpoint and a restart resumes from it.
 */
import type { CheckpointRecord } from "../core/protocol.ts";
import type { PipelineSpec } from "../sdk/function.ts";
import { startWorker, type StartedWorker, type WorkerOptions } from "../actor/worker.ts";
import { requestEndOfInput } from "../nats/control.ts";
import { connectNats, type NatsConnection } from "../nats/connection.ts";
import { NotLeaderError, startSupervisor, type SupervisorHandle } from "../supervisor/supervisor.ts";
import { TransientError } from "../errors.ts";

export interface LocalJobOptions {
  /** Periodic checkpoint interval (default 1000 ms; 0 = only explicit checkpoints). */
  readonly checkpointIntervalMs?: number;
  /** A checkpoint not acked by every actor within this time is aborted (default 10 s). */
  readonly checkpointTimeoutMs?: number;
  readonly worker?: WorkerOptions;
  readonly log?: (line: string) => void;
}

export interface LocalJob {
  readonly worker: StartedWorker;
  readonly supervisor: SupervisorHandle;
  /** Ends every source at its stream's current last message. */
  endInput(): Promise<void>;
  /** Resolves once every actor has seen the end of its input. */
  finished(): Promise<void>;
  /** Takes a checkpoint now and waits until every actor has materialized it. */
  checkpoint(): Promise<CheckpointRecord>;
  /** Stop-with-checkpoint: sources stop at a barrier, the checkpoint commits and is materialized, then everything stops. */
  stop(): Promise<CheckpointRecord>;
}

/** A checkpoint did not commit; the record says why. */
export class CheckpointFailedError extends TransientError {
  override readonly name = "CheckpointFailedError";
}

/**
 * Calls the supervisor, waiting out a moment without leadership: a process busy for longer than
 * the lease TTL loses the lease and takes it back once it expires.
 */
async function leaderCall<T>(f: () => Promise<T>, timeoutMs = 20_000): Promise<T> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    try {
      return await f();
    } catch (e) {
      if (!(e instanceof NotLeaderError) || Date.now() > until) throw e;
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}

export async function startLocalJob(nc: NatsConnection, pipeline: PipelineSpec, options: LocalJobOptions = {}): Promise<LocalJob> {
  const log = options.log ?? (() => undefined);
  // The supervisor gets a connection of its own, as it would in its own process: its lease
  // renewals must not queue behind the actors' bulk writes.
  const supervisorNc = await connectNats(`nats://${nc.getServer()}`, "eddy-local-supervisor");
  const started = await startSupervisor(supervisorNc, {
    checkpointIntervalMs: options.checkpointIntervalMs ?? 1000,
    ...(options.checkpointTimeoutMs === undefined ? {} : { checkpointTimeoutMs: options.checkpointTimeoutMs }),
    log,
  });
  const supervisor: SupervisorHandle = {
    ...started,
    stop: async () => {
      await started.stop();
      await supervisorNc.close();
    },
  };
  let worker: StartedWorker;
  try {
    worker = await startWorker(nc, pipeline, { log, ...options.worker });
    const total = worker.graph.functions.reduce((n, f) => n + f.partitions, 0);
    await worker.running(total, 1);
  } catch (e) {
    await supervisor.stop();
    throw e;
  }
  const job = worker.graph.job;
  const checkpoint = async (stop: boolean) => {
    const record = await leaderCall(() => supervisor.triggerCheckpoint(job, { stop }));
    if (record.status !== "committed") throw new CheckpointFailedError(`checkpoint ${record.id} of ${job} ${record.status}: ${record.reason ?? ""}`);
    await worker.applied(record.id);
    return record;
  };
  let stopped: Promise<CheckpointRecord> | undefined;
  return {
    worker,
    supervisor,
    endInput: async () => {
      await requestEndOfInput(nc, job);
    },
    finished: () => worker.finished(),
    checkpoint: () => checkpoint(false),
    stop: () =>
      (stopped ??= (async () => {
        try {
          return await checkpoint(true);
        } finally {
          await worker.stop();
          await supervisor.stop();
        }
      })()),
  };
}
