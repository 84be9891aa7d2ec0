/**
 * The job `npm run bench -- recovery` loads with state and then kills a worker of: a source that
 * forwards records to a keyed counter (4 partitions, one value per key) that emits only records
 * marked as probes, through an at-least-once sink so a probe shows up as soon as it is processed
 * (an exactly-once sink would add up to a checkpoint interval to every measurement). The source
 * reads JSON lines (design note ce): the load arrives as batches of `RECOVERY_LOAD_BATCH` records
 * per message, each probe as a message of its own.
 */
import { defineFunction, definePipeline, fromFunction, fromStream, valueState } from "../../runtime/sdk/index.ts";

export const RECOVERY_SOURCE_STREAM = "RECBENCH";
export const RECOVERY_SOURCE_SUBJECT = "recbench.in";
export const RECOVERY_OUTPUT_STREAM = "RECBENCH_OUT";
export const RECOVERY_OUTPUT_SUBJECT = "recbench.out";
export const RECOVERY_PARTITIONS = 4;
/** Records per message of the load (one JSON line each). */
export const RECOVERY_LOAD_BATCH = 1000;

interface Rec {
  readonly k: string;
  /** Set on records sent after the kill: the benchmark waits for their output. */
  readonly probe?: number;
}

export default definePipeline({
  name: "recbench",
  functions: [
    defineFunction<Rec, Rec>({
      name: "read",
      input: fromStream(RECOVERY_SOURCE_STREAM, { subject: RECOVERY_SOURCE_SUBJECT, format: "json-lines" }),
      process(ctx, r) {
        ctx.emit(r);
      },
    }),
    defineFunction<Rec, { k: string; probe: number; n: number }, { n: ReturnType<typeof valueState<number>> }>({
      name: "count",
      input: fromFunction("read"),
      partitions: RECOVERY_PARTITIONS,
      key: (r) => r.k,
      state: { n: valueState<number>() },
      sink: { subject: RECOVERY_OUTPUT_SUBJECT, delivery: "at-least-once" },
      process(ctx, r) {
        const n = (ctx.state.n.get() ?? 0) + 1;
        ctx.state.n.set(n);
        if (r.probe !== undefined) ctx.emit({ k: r.k, probe: r.probe, n });
      },
    }),
  ],
});
