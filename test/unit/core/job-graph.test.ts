import { describe, expect, it } from "vitest";
import { DEFAULT_KEYED_PARTITIONS, InvalidPipelineError, buildJobGraph, producerId } from "../../../runtime/core/job-graph.ts";
import { defineFunction, defineSink, definePipeline, fromFunction, fromStream, type FunctionSpec, type Input } from "../../../runtime/sdk/function.ts";
import { valueState } from "../../../runtime/sdk/state.ts";
import { tumbling, windowed } from "../../../runtime/sdk/windows.ts";

/** A function that forwards its input; `extra` overrides any field. */
function fn(name: string, input: Input, extra: Partial<FunctionSpec> = {}): FunctionSpec {
  return { name, input, process: (ctx, r) => ctx.emit(r), ...extra };
}

const source = (name = "src", extra: Partial<FunctionSpec> = {}) => fn(name, fromStream("IN"), extra);
const keyedBy = { key: (r: { k: string }) => r.k };

function rejection(functions: FunctionSpec[], job = "job"): string {
  try {
    buildJobGraph({ name: job, functions });
  } catch (e) {
    expect(e).toBeInstanceOf(InvalidPipelineError);
    return (e as Error).message;
  }
  throw new Error("expected the pipeline to be rejected");
}

describe("buildJobGraph wiring", () => {
  const parse = source("parse");
  const counts = windowed({
    name: "counts",
    input: fromFunction(parse),
    partitions: 3,
    key: (r: { k: string }) => r.k,
    window: tumbling(10),
    aggregate: { create: () => 0, add: (n: number) => n + 1, result: (n: number) => n },
  });
  const results = defineSink({ name: "results", input: fromFunction(counts), subject: "out.results" });
  const late = defineSink({ name: "late", input: fromFunction(counts, "late"), subject: "out.late" });
  const audit = fn("audit", fromFunction(parse));
  const graph = buildJobGraph(definePipeline({ name: "pv", functions: [parse, counts, results, late, audit] }));

  it("keeps the job name and every function in definition order", () => {
    expect(graph.job).toBe("pv");
    expect(graph.functions.map((f) => f.name)).toEqual(["parse", "counts", "results", "late", "audit"]);
    expect(graph.node("counts").spec).toBe(counts);
  });

  it("marks functions reading a user stream as sources", () => {
    expect(graph.functions.filter((f) => f.isSource).map((f) => f.name)).toEqual(["parse"]);
  });

  it("lists every partition of the upstream function as a producer", () => {
    expect(graph.node("parse").producers).toEqual([]);
    expect(graph.node("counts").producers).toEqual(["parse/0"]);
    expect(graph.node("results").producers).toEqual(["counts/0", "counts/1", "counts/2"]);
    expect(graph.node("late").producers).toEqual(["counts/0", "counts/1", "counts/2"]);
  });

  it("lists the consumers of each function with the output they read", () => {
    const consumers = (name: string) => graph.node(name).consumers.map((e) => [e.to.name, e.output]);
    expect(consumers("parse")).toEqual([
      ["counts", undefined],
      ["audit", undefined],
    ]);
    expect(consumers("counts")).toEqual([
      ["results", undefined],
      ["late", "late"],
    ]);
    expect(consumers("results")).toEqual([]);
  });

  it("links each consumer edge to the consumer's node", () => {
    for (const node of graph.functions) for (const edge of node.consumers) expect(edge.to).toBe(graph.node(edge.to.name));
  });

  it("rejects asking for a function that is not in the job", () => {
    expect(() => graph.node("nope")).toThrow(InvalidPipelineError);
  });

  it("names producers <function>/<partition>", () => {
    expect(producerId("views-per-page", 3)).toBe("views-per-page/3");
  });
});

describe("buildJobGraph default partitions", () => {
  it("gives sources one partition, or as many as their input stream declares", () => {
    const graph = buildJobGraph({
      name: "j",
      functions: [source("one"), fn("many", fromStream("IN", { partitions: 4, subject: (p) => `in.${p}.>` }), keyedBy)],
    });
    expect(graph.node("one").partitions).toBe(1);
    expect(graph.node("many").partitions).toBe(4);
  });

  it(`gives keyed functions ${DEFAULT_KEYED_PARTITIONS} partitions and unkeyed ones 1`, () => {
    const graph = buildJobGraph({
      name: "j",
      functions: [source(), fn("keyed", fromFunction("src"), keyedBy), fn("unkeyed", fromFunction("src"))],
    });
    expect(DEFAULT_KEYED_PARTITIONS).toBe(8);
    expect(graph.node("keyed").partitions).toBe(8);
    expect(graph.node("unkeyed").partitions).toBe(1);
    expect(graph.node("unkeyed").producers).toEqual(["src/0"]);
  });

  it("uses the partitions a function sets", () => {
    const graph = buildJobGraph({
      name: "j",
      functions: [fn("src", fromStream("IN", { subject: (p) => `in.${p}` }), { partitions: 2 }), fn("keyed", fromFunction("src"), { ...keyedBy, partitions: 4096 }), fn("unkeyed", fromFunction("keyed"), { partitions: 5 })],
    });
    expect(graph.functions.map((f) => f.partitions)).toEqual([2, 4096, 5]);
    expect(graph.node("unkeyed").producers).toHaveLength(4096);
  });
});

describe("buildJobGraph rejects with InvalidPipelineError", () => {
  it("an earlyFlush that is not a boolean", () => {
    expect(rejection([source("src", { earlyFlush: "no" as never })])).toBe('function "src": earlyFlush must be true or false, got "no"');
    expect(() => buildJobGraph({ name: "j", functions: [source("src", { earlyFlush: false })] })).not.toThrow();
  });

  it("a buffer timeout that is not 0 to 60 000 ms, and accepts one that is", () => {
    expect(rejection([source("src", { bufferTimeoutMs: -1 })])).toBe('function "src": bufferTimeoutMs must be a number of milliseconds from 0 to 60000, got -1');
    expect(rejection([source("src", { bufferTimeoutMs: "5" as never })])).toContain('got "5"');
    expect(() => buildJobGraph({ name: "j", functions: [source("src", { bufferTimeoutMs: 0 })] })).not.toThrow();
  });

  it("a source with several partitions but one subject filter for all of them", () => {
    expect(rejection([source("src", { partitions: 2 })])).toContain("one subject filter per partition");
  });

  it("state names outside the KV key alphabet", () => {
    expect(rejection([source("src", { ...keyedBy, state: { "bad name": { kind: "value" } } })])).toContain('state name "bad name"');
  });

  it("an unknown watermark strategy", () => {
    expect(rejection([source("src", { watermark: { kind: "fancy" } as never })])).toContain("invalid watermark strategy");
  });

  it("job names that are not a subject token", () => {
    for (const job of ["", "a.b", "a b", "a*", "a>", "é"]) expect(rejection([source()], job)).toContain("job name");
  });

  it("function names that are not a subject token", () => {
    for (const name of ["", "a.b", "a b", "*", "views/page"]) expect(rejection([source(name)])).toContain("function name");
  });

  it("a job without functions", () => {
    expect(rejection([])).toContain("no functions");
  });

  it("two functions with the same name", () => {
    expect(rejection([source("x"), fn("x", fromFunction("x"))])).toContain('"x" is defined twice');
  });

  it("a function without process()", () => {
    expect(rejection([{ name: "x", input: fromStream("IN") } as unknown as FunctionSpec])).toContain("process");
  });

  it("an input naming a function that does not exist", () => {
    expect(rejection([source(), fn("b", fromFunction("sorce"))])).toContain('unknown function "sorce"');
  });

  it("a function reading itself", () => {
    expect(rejection([source(), fn("loop", fromFunction("loop"))])).toContain('"loop" reads itself');
  });

  it("functions that form a cycle", () => {
    expect(rejection([source(), fn("a", fromFunction("c")), fn("b", fromFunction("a")), fn("c", fromFunction("b"))])).toContain("cycle");
    expect(rejection([fn("a", fromFunction("b")), fn("b", fromFunction("a"))])).toContain("cycle");
  });

  it("state declared without a key selector", () => {
    const counter = defineFunction({ name: "counter", input: fromFunction("src"), state: { n: valueState<number>() }, process: () => {} });
    expect(rejection([source(), counter])).toContain('"counter" declares state but has no key selector');
  });

  it("accepts state with a key selector, and no state without one", () => {
    const counter = defineFunction({ name: "counter", input: fromFunction("src"), ...keyedBy, state: { n: valueState<number>() }, process: () => {} });
    expect(() => buildJobGraph({ name: "j", functions: [source(), counter, fn("plain", fromFunction("counter"), { state: {} })] })).not.toThrow();
  });

  it("partitions outside 1..4096 or not an integer", () => {
    for (const partitions of [0, -1, 4097, 1.5, Number.NaN]) {
      expect(rejection([source(), fn("x", fromFunction("src"), { partitions })])).toContain("partitions must be an integer in 1..4096");
    }
    expect(rejection([fn("s", fromStream("IN", { partitions: 0 }))])).toContain("partitions");
  });

  it("a source whose partitions disagree with its input's", () => {
    expect(rejection([fn("s", fromStream("IN", { partitions: 2, subject: (p) => `in.${p}` }), { partitions: 3 })])).toContain("disagree");
  });

  it("a keyed multi-partition source without a subject function", () => {
    expect(rejection([fn("s", fromStream("IN", { partitions: 2, subject: "in.>" }), keyedBy)])).toContain("subject: (p) =>");
  });

  it("a source without a stream name", () => {
    expect(rejection([fn("s", fromStream(""))])).toContain("stream name");
  });
});
