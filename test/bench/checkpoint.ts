/**
 * Checkpoint cost for a given number of changed keys: one keyed function sets a value for `keys`
 * distinct keys, then one checkpoint is taken. Reports how long the checkpoint took (trigger to
 * commit: snapshot, delta upload, acks, manifest) and how long materializing it in KV took
 * (commit to every actor's `_applied`), plus the delta size.
 */
import { startLocalNatsServer } from "../../runtime/nats/local-server.ts";
import { connectNats } from "../../runtime/nats/connection.ts";
import { ensureStream, publishAll } from "../../runtime/nats/streams.ts";
import { startLocalJob } from "../../runtime/dev/local-job.ts";
import { defineFunction, definePipeline, fromFunction, fromStream, valueState } from "../../runtime/sdk/index.ts";

export interface CheckpointBenchResult {
  readonly bench: "checkpoint";
  readonly keys: number;
  readonly partitions: number;
  readonly checkpointMs: number;
  readonly alignmentMs: number;
  readonly materializeMs: number;
  readonly deltaBytes: number;
  readonly keysChanged: number;
}

const PARTITIONS = 4;

const pipeline = definePipeline({
  name: "ckptbench",
  functions: [
    defineFunction<{ k: string; v: number }, { k: string; v: number }>({
      name: "read",
      input: fromStream("CKPT_BENCH", { subject: "ckpt.bench" }),
      process(ctx, r) {
        ctx.emit(r);
      },
    }),
    defineFunction<{ k: string; v: number }, unknown, { last: ReturnType<typeof valueState<number>> }>({
      name: "store",
      input: fromFunction("read"),
      partitions: PARTITIONS,
      key: (r) => r.k,
      state: { last: valueState<number>() },
      process(ctx, r) {
        ctx.state.last.set(r.v);
      },
    }),
  ],
});

const phase = (what: string) => process.stderr.write(`${new Date().toISOString()} ${what}\n`);

export async function benchCheckpoint(keys: number): Promise<CheckpointBenchResult> {
  const server = await startLocalNatsServer();
  const nc = await connectNats(server.url, "eddy-bench");
  try {
    await ensureStream(nc, "CKPT_BENCH", ["ckpt.bench"]);
    const messages = function* () {
      for (let i = 0; i < keys; i++) yield { subject: "ckpt.bench", data: `{"k":"key-${i}","v":${i}}` };
    };
    phase(`publishing ${keys} records`);
    await publishAll(nc, messages(), 2048);
    phase("processing");
    const job = await startLocalJob(nc, pipeline, { checkpointIntervalMs: 0, log: (l) => phase(l) });
    await job.endInput();
    await job.finished();
    phase("checkpoint");
    const record = await job.supervisor.triggerCheckpoint("ckptbench");
    phase(`committed ${JSON.stringify(record)}; materializing`);
    await job.worker.applied(record.id);
    // Measured from the commit itself: triggerCheckpoint returns only after the supervisor's
    // bookkeeping, while materialization starts as soon as the commit is seen.
    const applied = Date.now();
    phase("stopping");
    await job.stop();
    return {
      bench: "checkpoint",
      keys,
      partitions: PARTITIONS,
      checkpointMs: Math.round(record.durationMs ?? 0),
      alignmentMs: Math.round(record.alignmentMs ?? 0),
      materializeMs: Math.round(applied - (record.completedAt ?? applied)),
      deltaBytes: record.bytes ?? 0,
      keysChanged: record.keysChanged ?? 0,
    };
  } finally {
    await nc.close();
    await server.stop();
  }
}
