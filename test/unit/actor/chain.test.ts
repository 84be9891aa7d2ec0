import { describe, expect, it } from "vitest";
import { CHAIN_DEAD_LETTER, physicalPipeline, type ChainDeadLetter } from "../../../runtime/actor/chain.ts";
import { Operator, type OperatorOutput } from "../../../runtime/core/operator.ts";
import { defineSink, fromFunction, fromStream, type FunctionSpec, type PipelineSpec } from "../../../runtime/sdk/function.ts";
import { valueState } from "../../../runtime/sdk/state.ts";

/** Collects what an operator emits, by output ("" is the main one). */
function collector() {
  const out: Array<{ output: string; record: unknown; ts: number }> = [];
  const output: OperatorOutput = {
    emit: (record, ts) => void out.push({ output: "", record, ts }),
    side: (name, record, ts) => void out.push({ output: name, record, ts }),
  };
  return { out, output };
}

const src: FunctionSpec<{ n: number }, { n: number }> = {
  name: "src",
  input: fromStream("IN"),
  process(ctx, r) {
    ctx.emit(r);
  },
};
const double: FunctionSpec<{ n: number }, { n: number }> = {
  name: "double",
  input: fromFunction("src"),
  process(ctx, r) {
    if (r.n < 0) throw new Error("negative");
    if (r.n % 2 === 1) ctx.sideOutput("odd", r);
    ctx.emit({ n: r.n * 2 }, ctx.timestamp + 1);
  },
};
const out = defineSink<{ n: number }>({ name: "out", input: fromFunction("double"), subject: "out.numbers" });

describe("physicalPipeline", () => {
  const pipeline: PipelineSpec = { name: "job", functions: [src, double, out, { name: "odds", input: fromFunction("double", "odd"), key: () => "k", process: () => undefined }] };

  it("fuses a chain into one function named after its head, with the tail's sink", () => {
    // double has two readers (out and odds), so only src → double chains.
    const p = physicalPipeline(pipeline);
    expect(p.plan.chains).toEqual([["src", "double"]]);
    expect(p.graph.functions.map((f) => f.name)).toEqual(["src", "out", "odds"]);
    expect(p.chainOf("src")).toEqual(["double"]);
    expect(p.chainOf("out")).toEqual([]);
  });

  it("points readers of a chain's tail at its head, on the same output", () => {
    const p = physicalPipeline(pipeline);
    expect(p.graph.node("out").inputs).toEqual([{ kind: "function", fn: "src" }]);
    expect(p.graph.node("odds").inputs).toEqual([{ kind: "function", fn: "src", output: "odd" }]);
    expect(p.graph.node("src").consumers.map((c) => [c.to.name, c.output])).toEqual([
      ["out", undefined],
      ["odds", "odd"],
    ]);
  });

  it("gives the fused function the tail's sink and none of the head's", () => {
    const p = physicalPipeline({ name: "job", functions: [src, double, out].map((f) => (f === double ? { ...f, sink: undefined } : f)) as FunctionSpec[] });
    expect(p.plan.chains).toEqual([["src", "double", "out"]]);
    expect(p.graph.functions.map((f) => f.name)).toEqual(["src"]);
    expect(p.graph.node("src").spec.sink).toEqual(out.sink);
  });

  it("batches the chain's output as the function nearest its tail that says how (note cj)", () => {
    const p = physicalPipeline({ name: "job", functions: [{ ...src, bufferTimeoutMs: 50, earlyFlush: false }, { ...double, bufferTimeoutMs: 0 }, out, pipeline.functions[3]!] as FunctionSpec[] });
    expect(p.plan.chains).toEqual([["src", "double"]]);
    expect(p.graph.node("src").spec).toMatchObject({ bufferTimeoutMs: 0, earlyFlush: false });
  });

  it("returns the pipeline as written when nothing chains", () => {
    const written: PipelineSpec = { name: "job", functions: [src, double, out], chaining: false };
    const p = physicalPipeline(written);
    expect(p.pipeline).toBe(written);
    expect(p.graph.functions.map((f) => f.name)).toEqual(["src", "double", "out"]);
  });
});

describe("a fused function", () => {
  const fused = () => physicalPipeline({ name: "job", functions: [src, double, out] }).graph.node("src").spec;

  it("runs each chained function on every record its upstream emits, with its event time", () => {
    const { out: got, output } = collector();
    const op = new Operator(fused(), output);
    op.process("", 10, { n: 1 }, 1000);
    op.process("", 20, { n: 2 }, 1000);
    // The side output "odd" of double is not read by anyone: dropped, as it would be unchained.
    expect(got).toEqual([
      { output: "", record: { n: 2 }, ts: 11 },
      { output: "", record: { n: 4 }, ts: 21 },
    ]);
  });

  it("dead-letters a record a chained function throws on under that function's name, and goes on", () => {
    const { out: got, output } = collector();
    const op = new Operator(fused(), output);
    op.process("", 10, { n: -1 }, 1000);
    op.process("", 20, { n: 3 }, 1000);
    expect(got[0]!.output).toBe(CHAIN_DEAD_LETTER);
    const letter = got[0]!.record as ChainDeadLetter;
    expect(letter).toEqual({ fn: "double", from: "src", reason: 'process: double.process failed for key "": negative', record: { n: -1 } });
    expect(got.slice(1)).toEqual([{ output: "", record: { n: 6 }, ts: 21 }]);
  });

  it("re-stamps records with the chained function's own timestamp selector", () => {
    const stamped: FunctionSpec<{ n: number; at: number }> = { name: "stamped", input: fromFunction("src"), timestamp: (r) => r.at, process: (ctx, r) => ctx.emit(r) };
    const spec = physicalPipeline({ name: "job", functions: [src, stamped] }).graph.node("src").spec;
    const { out: got, output } = collector();
    new Operator(spec, output).process("", 10, { n: 1, at: 500 }, 1000);
    expect(got).toEqual([{ output: "", record: { n: 1, at: 500 }, ts: 500 }]);
  });

  it("shows a chained function the head's watermark and no key, and refuses it timers as its own actor would", () => {
    const seen: unknown[] = [];
    const probe: FunctionSpec = {
      name: "probe",
      input: fromFunction("src"),
      process(ctx) {
        seen.push([ctx.key, ctx.input, ctx.watermark]);
        ctx.timers.registerEventTimeTimer(5);
      },
    };
    const spec = physicalPipeline({ name: "job", functions: [src, probe] }).graph.node("src").spec;
    const { out: got, output } = collector();
    const op = new Operator(spec, output);
    op.advanceWatermark(7, 1000);
    op.process("", 10, { n: 1 }, 1000);
    expect(seen).toEqual([["", 0, 7]]);
    expect((got[0]!.record as ChainDeadLetter).reason).toBe('process: probe.process failed for key "": probe uses timers but has no key selector');
  });

  it("hands a keyed head's timer output down the chain too", () => {
    const keyed: FunctionSpec<{ n: number }, { n: number }, { last: ReturnType<typeof valueState<{ n: number }>> }> = {
      name: "keyed",
      input: fromStream("IN"),
      key: () => "k",
      state: { last: valueState<{ n: number }>() },
      process(ctx, r) {
        ctx.state.last.set(r);
        ctx.timers.registerEventTimeTimer(100);
      },
      onTimer(ctx) {
        ctx.emit(ctx.state.last.get()!);
      },
    };
    const mutate: FunctionSpec<{ n: number }> = {
      name: "mutate",
      input: fromFunction("keyed"),
      process(ctx, r) {
        r.n += 100; // a copy: the head's state must not change
        ctx.emit(r);
      },
    };
    const spec = physicalPipeline({ name: "job", functions: [keyed, mutate] }).graph.node("keyed").spec;
    const { out: got, output } = collector();
    const op = new Operator(spec, output);
    op.process("k", 10, { n: 1 }, 1000);
    op.advanceWatermark(100, 1000);
    op.advanceWatermark(100, 1000);
    expect(got).toEqual([{ output: "", record: { n: 101 }, ts: 100 }]);
    expect(op.withKey("k", (ctx) => (ctx.state as any).last.get())).toEqual({ n: 1 });
  });

  it("counts a chained function's ctx.count as the head's", () => {
    const counting: FunctionSpec = { name: "counting", input: fromFunction("src"), process: (ctx) => ctx.count("seen") };
    const spec = physicalPipeline({ name: "job", functions: [src, counting] }).graph.node("src").spec;
    const op = new Operator(spec, collector().output);
    op.process("", 1, {}, 1);
    op.process("", 2, {}, 1);
    expect(op.counters.get("seen")).toBe(2);
  });

  it("hands records straight from a function to a chained sink, with their event time, and drops what the sink does not read", () => {
    const { out: got, output } = collector();
    const spec = physicalPipeline({ name: "job", functions: [src, double, { ...out, sink: undefined } as FunctionSpec, defineSink<{ n: number }>({ name: "tail", input: fromFunction("out"), subject: "t" })] }).graph.node("src").spec;
    const op = new Operator(spec, output);
    op.process("", 10, { n: 3 }, 1000);
    // double's side output "odd" is read by nobody; its main output passes out and tail unchanged.
    expect(got).toEqual([{ output: "", record: { n: 6 }, ts: 11 }]);
  });

  it("passes a side output read by a chained sink on as the sink's main output", () => {
    const odds = defineSink<{ n: number }>({ name: "odds", input: fromFunction("double", "odd"), subject: "odd.numbers" });
    const spec = physicalPipeline({ name: "job", functions: [src, double, odds] }).graph.node("src").spec;
    const { out: got, output } = collector();
    const op = new Operator(spec, output);
    op.process("", 10, { n: 3 }, 1000);
    op.process("", 20, { n: 4 }, 1000);
    expect(got).toEqual([{ output: "", record: { n: 3 }, ts: 10 }]);
  });

  it("copies what a stateful head emits before a chained sink too", () => {
    const keeper: FunctionSpec<{ n: number }, { n: number }, { last: ReturnType<typeof valueState<{ n: number }>> }> = {
      name: "keeper",
      input: fromStream("IN"),
      key: () => "k",
      state: { last: valueState<{ n: number }>() },
      process(ctx, r) {
        ctx.state.last.set(r);
        ctx.emit(r);
      },
    };
    const spec = physicalPipeline({ name: "job", functions: [keeper, defineSink<{ n: number }>({ name: "sink", input: fromFunction("keeper"), subject: "s" })] }).graph.node("keeper").spec;
    const { out: got, output } = collector();
    const op = new Operator(spec, output);
    const record = { n: 1 };
    op.process("k", 10, record, 1000);
    expect(got).toEqual([{ output: "", record: { n: 1 }, ts: 10 }]);
    expect(got[0]!.record).not.toBe(record);
  });

  it("lets a chained function take its context apart", () => {
    const apart: FunctionSpec<{ n: number }> = { name: "apart", input: fromFunction("src"), process: ({ emit, sideOutput, count }, r) => (count("seen"), sideOutput("copy", r), emit({ n: r.n + 1 })) };
    const spec = physicalPipeline({ name: "job", functions: [src, apart] }).graph.node("src").spec;
    const { out: got, output } = collector();
    const op = new Operator(spec, output);
    op.process("", 10, { n: 1 }, 1000);
    expect(got).toEqual([
      { output: "copy", record: { n: 1 }, ts: 10 },
      { output: "", record: { n: 2 }, ts: 10 },
    ]);
    expect(op.counters.get("seen")).toBe(1);
  });
});
