import { describe, expect, it } from "vitest";
import { buildJobGraph } from "../../../runtime/core/job-graph.ts";
import { planChains } from "../../../runtime/core/chaining.ts";
import { broadcast, defineSink, fromFunction, fromStream, type FunctionSpec, type Input } from "../../../runtime/sdk/function.ts";
import { mapState } from "../../../runtime/sdk/state.ts";

/** A function that forwards its input; `extra` overrides any field. */
function fn(name: string, input: Input | readonly Input[], extra: Partial<FunctionSpec> = {}): FunctionSpec {
  return { name, input: input as FunctionSpec["input"], process: (ctx, r) => ctx.emit(r), ...extra };
}
const from = (name: string, output?: string) => ({ kind: "function" as const, fn: name, ...(output === undefined ? {} : { output }) });
const src = (extra: Partial<FunctionSpec> = {}) => fn("src", fromStream("IN"), extra);
const key = (r: { k: string }) => r.k;

function plan(functions: FunctionSpec[], chaining?: boolean) {
  return planChains(buildJobGraph({ name: "job", functions }), chaining);
}

describe("operator chaining: what chains", () => {
  it("chains a keyless function onto the one function it reads: source → map → sink is one chain", () => {
    const p = plan([src(), fn("map", from("src")), defineSink({ name: "out", input: fromFunction("map"), subject: "out" })]);
    expect(p.chains).toEqual([["src", "map", "out"]]);
    expect(p.headOf("out")).toBe("src");
    expect(p.headOf("map")).toBe("src");
    expect(p.headOf("src")).toBe("src");
    expect(p.reasons.size).toBe(0);
  });

  it("chains after a keyed function: the keyed one starts a chain, its keyless reader joins it", () => {
    const p = plan([src(), fn("agg", from("src"), { key, partitions: 4 }), fn("fmt", from("agg"), { partitions: 4 }), fn("out", from("fmt"), { partitions: 4 })]);
    expect(p.chains).toEqual([["agg", "fmt", "out"]]);
    expect(p.reasons.get("agg")).toBe("it is keyed (its records are repartitioned by key)");
  });

  it("chains a function that reads a side output, when nothing else reads its producer", () => {
    const p = plan([src(), fn("late", from("src", "late"))]);
    expect(p.chains).toEqual([["src", "late"]]);
  });

  it("chains a function with the same partition count it sets itself", () => {
    const p = plan([fn("src", fromStream("IN", { partitions: 4, subject: (q) => `in.${q}` })), fn("map", from("src"), { partitions: 4 })]);
    expect(p.chains).toEqual([["src", "map"]]);
  });
});

describe("operator chaining: what does not chain, and why", () => {
  it("keeps every function apart with chaining: false on the pipeline (Flink's disableOperatorChaining)", () => {
    const p = plan([src(), fn("map", from("src"))], false);
    expect(p.chains).toEqual([]);
    expect(p.reasons.get("map")).toBe("chaining is disabled for the pipeline (chaining: false)");
  });

  it("chain: false keeps a function out of chains on both sides (Flink's disableChaining)", () => {
    const p = plan([src(), fn("map", from("src"), { chain: false }), fn("out", from("map"))]);
    expect(p.chains).toEqual([]);
    expect(p.reasons.get("map")).toBe("chain: false");
    expect(p.reasons.get("out")).toBe('"map" has chain: false');
  });

  it("does not chain a keyed function: its records are repartitioned", () => {
    const p = plan([src(), fn("agg", from("src"), { key })]);
    expect(p.chains).toEqual([]);
    expect(p.reasons.get("agg")).toMatch(/keyed/);
  });

  it("does not chain a function that sets another partition count", () => {
    const p = plan([src(), fn("map", from("src"), { partitions: 2 })]);
    expect(p.reasons.get("map")).toBe('it has 2 partitions and "src" 1');
    expect(p.chains).toEqual([]);
  });

  it("does not change a partition count to chain: a keyless function keeps its default of 1 after a partitioned one", () => {
    const p = plan([fn("src", fromStream("IN", { partitions: 4, subject: (q) => `in.${q}` })), fn("map", from("src"))]);
    expect(p.chains).toEqual([]);
    expect(p.reasons.get("map")).toBe('it has 1 partition and "src" 4 (set partitions: 4 to chain it)');
  });

  it("does not chain a function with two inputs (a union or join needs alignment)", () => {
    const p = plan([src(), fn("a", from("src"), { chain: false }), fn("b", from("src"), { chain: false }), fn("both", [from("a"), from("b")])]);
    expect(p.reasons.get("both")).toBe("it has 2 inputs");
    expect(p.chains).toEqual([]);
  });

  it("does not chain onto a function whose output someone else reads too", () => {
    const p = plan([src(), fn("a", from("src")), fn("b", from("src", "late"))]);
    expect(p.chains).toEqual([]);
    expect(p.reasons.get("a")).toBe('"src" has 2 consumers');
    expect(p.reasons.get("b")).toBe('"src" has 2 consumers');
  });

  it("does not chain onto a sink (its output leaves the job)", () => {
    const p = plan([src({ sink: { subject: "raw" } }), fn("map", from("src"))]);
    expect(p.reasons.get("map")).toBe('"src" is a sink');
  });

  it("does not chain a function with a lookup (read per input batch, before the batch runs)", () => {
    const p = plan([src(), fn("enrich", from("src"), { lookup: { bucket: "dim", key: () => "x" } })]);
    expect(p.reasons.get("enrich")).toMatch(/lookup/);
  });

  it("does not chain a function whose non-broadcast input is joined by a broadcast one", () => {
    const p = plan([
      src(),
      fn("rules", fromStream("RULES"), { chain: false }),
      fn("apply", [from("src"), broadcast(fromFunction("rules"))], { key, broadcastState: { r: mapState() }, processBroadcast: () => undefined }),
    ]);
    expect(p.reasons.get("apply")).toBe("it has 2 inputs");
  });

  it("leaves sources out of the reasons: they start chains, they never join one", () => {
    const p = plan([src()]);
    expect(p.chains).toEqual([]);
    expect(p.reasons.size).toBe(0);
  });
});

describe("operator chaining: longer graphs", () => {
  it("cuts a line at its keyed and opted-out functions into separate chains", () => {
    const p = plan([
      src(),
      fn("parse", from("src")),
      fn("count", from("parse"), { key, partitions: 2 }),
      fn("fmt", from("count"), { partitions: 2 }),
      fn("audit", from("fmt"), { chain: false }),
      fn("out", from("audit")),
    ]);
    expect(p.chains).toEqual([["src", "parse"], ["count", "fmt"]]);
    expect(p.headOf("fmt")).toBe("count");
    expect(p.headOf("audit")).toBe("audit");
    expect(p.headOf("out")).toBe("out");
  });
});

describe("operator chaining: the switches are validated", () => {
  it("refuses a chain flag that is not a boolean, and a pipeline chaining flag that is not one", () => {
    expect(() => buildJobGraph({ name: "job", functions: [src({ chain: "no" as unknown as boolean })] })).toThrow('function "src": chain must be true or false, got "no"');
    expect(() => buildJobGraph({ name: "job", functions: [src()], chaining: 0 as unknown as boolean })).toThrow('job "job": chaining must be true or false, got 0');
  });
});
