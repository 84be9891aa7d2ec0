/**
 * The job of `npm run bench -- state`: a source forwarding records to a keyed counter with one
 * value per key (4 partitions). Run by an `eddy worker` process so that its memory is measured
 * alone. The source reads JSON lines (design note ce): the load arrives as batches of
 * `STATE_BENCH_LOAD_BATCH` records per message, each timed update as a message of its own (one
 * line: the same bytes as a one-record JSON message).
 */
import { defineFunction, definePipeline, fromFunction, fromStream, valueState } from "../../runtime/sdk/index.ts";

export const STATE_BENCH_STREAM = "STATE_BENCH";
export const STATE_BENCH_SUBJECT = "state.bench";
export const STATE_BENCH_PARTITIONS = 4;
/** Records per message of the load (one JSON line each). */
export const STATE_BENCH_LOAD_BATCH = 1000;

export default definePipeline({
  name: "statebench",
  functions: [
    defineFunction<{ k: string }, { k: string }>({
      name: "read",
      input: fromStream(STATE_BENCH_STREAM, { subject: STATE_BENCH_SUBJECT, format: "json-lines" }),
      process(ctx, r) {
        ctx.emit(r);
      },
    }),
    defineFunction<{ k: string }, unknown, { n: ReturnType<typeof valueState<number>> }>({
      name: "count",
      input: fromFunction("read"),
      partitions: STATE_BENCH_PARTITIONS,
      key: (r) => r.k,
      state: { n: valueState<number>() },
      process(ctx) {
        ctx.state.n.set((ctx.state.n.get() ?? 0) + 1);
      },
    }),
  ],
});
