/**
 * `eddy supervisor`: connect to NATS and take part in the supervisor election until SIGINT or
 * SIGTERM. The leader assigns actors, runs checkpoints and recovers jobs; a standby waits to take
 * over. Stopping releases the lease so that a standby takes over at once.
 */
import * as Effect from "effect/Effect";
import { waitForSignal } from "../process/wait-for-signal.ts";
import { connectNats, natsUrlOf, redactNatsUrl } from "../nats/connection.ts";
import { makeSupervisor } from "./supervisor.ts";
import { scalingLag, supervisorMetrics } from "./job-metrics.ts";
import { metricsHostFrom, metricsPortFrom, startMetricsServer } from "../metrics/server.ts";

export interface RunSupervisorOptions {
  readonly natsUrl: string | undefined;
  /** Pause between periodic checkpoints; 0 = only explicit checkpoints. */
  readonly checkpointIntervalMs: number;
  /** Supervisor id; default `supervisor-<pid>-<random>`. */
  readonly id: string | undefined;
  /** Committed checkpoints kept per job (default 3). */
  readonly retainCheckpoints?: number;
  /** How long a job's first assignment waits after the last worker joined (default 250 ms). */
  readonly initialAssignmentDelayMs?: number;
  /** Port of /metrics, /healthz and /scaling (default: $EDDY_METRICS_PORT, else none). */
  readonly metricsPort?: number | undefined;
  /** Address of that endpoint (default: $EDDY_METRICS_HOST, else 127.0.0.1). */
  readonly metricsHost?: string | undefined;
}

export async function runSupervisor(options: RunSupervisorOptions): Promise<number> {
  const url = natsUrlOf(options.natsUrl);
  const log = (line: string) => console.error(`${new Date().toISOString()} eddy supervisor ${line}`);
  const program = Effect.gen(function* () {
    const nc = yield* Effect.acquireRelease(
      // Keep NatsUnreachableError as it is: its message says what to check.
      Effect.tryPromise({ try: () => connectNats(url, `eddy-supervisor-${process.pid}`), catch: (e) => e as Error }),
      (nc) => Effect.promise(() => nc.drain().catch(() => undefined)),
    );
    const supervisor = yield* makeSupervisor(nc, {
      id: options.id,
      checkpointIntervalMs: options.checkpointIntervalMs,
      ...(options.retainCheckpoints === undefined ? {} : { retainCheckpoints: options.retainCheckpoints }),
      ...(options.initialAssignmentDelayMs === undefined ? {} : { initialAssignmentDelayMs: options.initialAssignmentDelayMs }),
      log,
    });
    const port = metricsPortFrom(options.metricsPort);
    if (port !== undefined) {
      const server = yield* Effect.acquireRelease(
        Effect.tryPromise({
          try: () => startMetricsServer(port, () => supervisorMetrics(nc, supervisor), { "/scaling": () => scalingLag(nc) }, metricsHostFrom(options.metricsHost)),
          catch: (e) => e as Error,
        }),
        (s) => Effect.promise(() => s.close()),
      );
      console.error(`eddy supervisor: metrics on ${server.host}:${server.port}/metrics, KEDA lag on /scaling`);
    }
    console.error(`eddy supervisor: ${supervisor.id} on NATS ${redactNatsUrl(url)}; Ctrl-C to stop`);
    const signal = yield* waitForSignal;
    console.error(`eddy supervisor: ${signal}, stopping (leadership is released)`);
  }).pipe(Effect.scoped);
  await Effect.runPromise(program);
  return 0;
}
