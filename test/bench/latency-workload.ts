/**
 * The job of `npm run bench -- latency`: a source forwarding events to a keyed counter (4
 * partitions), whose output a sink publishes to `lat.out` — source → keyed function → sink, as a
 * pipeline written naturally has it. The source → counter hop is a JetStream publish and consume;
 * the sink, with the counter's partitions, runs chained in the counter's actors. The sink's
 * delivery comes from `LATENCY_BENCH_DELIVERY` (`at-least-once` or `exactly-once`), set by the
 * benchmark for the `eddy worker` process that runs this module.
 */
import { defineFunction, definePipeline, defineSink, fromFunction, fromStream, valueState } from "../../runtime/sdk/index.ts";

export const LATENCY_IN_STREAM = "LAT_IN";
export const LATENCY_IN_SUBJECT = "lat.in";
export const LATENCY_OUT_STREAM = "LAT_OUT";
export const LATENCY_OUT_SUBJECT = "lat.out";
export const LATENCY_PARTITIONS = 4;

/** An event as published: its index in the schedule and its key. */
export interface LatencyEvent {
  readonly i: number;
  readonly k: string;
}

/** What the sink publishes: the event's index, its key and the key's running count. */
export interface LatencyOutput extends LatencyEvent {
  readonly n: number;
}

export type SinkDelivery = "at-least-once" | "exactly-once";

const delivery: SinkDelivery = process.env.LATENCY_BENCH_DELIVERY === "exactly-once" ? "exactly-once" : "at-least-once";

export default definePipeline({
  name: "latbench",
  functions: [
    defineFunction<LatencyEvent, LatencyEvent>({
      name: "read",
      input: fromStream(LATENCY_IN_STREAM, { subject: LATENCY_IN_SUBJECT }),
      process(ctx, e) {
        ctx.emit(e);
      },
    }),
    defineFunction<LatencyEvent, LatencyOutput, { n: ReturnType<typeof valueState<number>> }>({
      name: "count",
      input: fromFunction("read"),
      partitions: LATENCY_PARTITIONS,
      key: (e) => e.k,
      state: { n: valueState<number>() },
      process(ctx, e) {
        ctx.emit({ i: e.i, k: e.k, n: ctx.state.n.update((n) => (n ?? 0) + 1) });
      },
    }),
    // As many partitions as the keyed function: the sink is chained into it (design note ch), as
    // Flink chains a sink of the job's parallelism — one JetStream hop fewer than a sink of 1.
    defineSink<LatencyOutput>({ name: "out", input: fromFunction("count"), partitions: LATENCY_PARTITIONS, subject: LATENCY_OUT_SUBJECT, delivery }),
  ],
});
