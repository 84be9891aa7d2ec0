/**
 * What may replace a running deployment: the same functions and partitions, every state kept
 * with the same kind and schema version (new state may be added, old state dropped).
 */
import { describe, expect, it } from "vitest";
import { buildJobGraph } from "../../../runtime/core/job-graph.ts";
import { withDefaultPartitions } from "../../../runtime/deploy/bundle.ts";
import { physicalPipeline } from "../../../runtime/actor/chain.ts";
import { incompatibility, signatureOf } from "../../../runtime/deploy/deploy.ts";
import { defineFunction, definePipeline, defineSink, fromFunction, fromStream, listState, valueState } from "../../../runtime/sdk/index.ts";

const pipeline = (state: Record<string, ReturnType<typeof valueState<number>> | ReturnType<typeof listState<number>>>, partitions?: number) =>
  definePipeline({
    name: "p",
    functions: [
      defineFunction({ name: "src", input: fromStream("S"), process: () => undefined }),
      defineFunction({ name: "agg", input: fromFunction("src"), key: (r: { k: string }) => r.k, ...(partitions === undefined ? {} : { partitions }), state, process: () => undefined }),
    ],
  });
const sig = (p: ReturnType<typeof pipeline>) => signatureOf(buildJobGraph(p));

describe("deployment compatibility", () => {
  it("accepts the same shape, added state and dropped state", () => {
    expect(incompatibility(sig(pipeline({ n: valueState() })), sig(pipeline({ n: valueState() })))).toBeUndefined();
    expect(incompatibility(sig(pipeline({ n: valueState() })), sig(pipeline({ n: valueState(), m: listState() })))).toBeUndefined();
    expect(incompatibility(sig(pipeline({ n: valueState(), m: listState() })), sig(pipeline({ n: valueState() })))).toBeUndefined();
  });

  it("refuses a changed state kind or schema version, naming function and state", () => {
    expect(incompatibility(sig(pipeline({ n: valueState() })), sig(pipeline({ n: listState() })))).toBe('function "agg", state "n": kind value -> list');
    expect(incompatibility(sig(pipeline({ n: valueState() })), sig(pipeline({ n: valueState({ version: 2 }) })))).toBe(
      'function "agg", state "n": schema version 1 -> 2 (no migration)',
    );
  });

  it("refuses other partition counts and other functions", () => {
    expect(incompatibility(sig(pipeline({}, 4)), sig(pipeline({}, 8)))).toMatch(/^function "agg": partitions 4 -> 8/);
    const other = definePipeline({ name: "p", functions: [defineFunction({ name: "src", input: fromStream("S"), process: () => undefined })] });
    expect(incompatibility(sig(pipeline({})), signatureOf(buildJobGraph(other)))).toMatch(/^functions differ/);
  });

  it("gives --partitions to keyed functions that set none, and to no other", () => {
    const p = withDefaultPartitions(pipeline({}), 3);
    expect(buildJobGraph(p).functions.map((f) => [f.name, f.partitions])).toEqual([["src", 1], ["agg", 3]]);
    expect(buildJobGraph(withDefaultPartitions(pipeline({}, 5), 3)).node("agg").partitions).toBe(5);
  });

  describe("chaining", () => {
    /** source → map → sink; `chain: false` on the map keeps it apart. */
    const chainable = (chain?: boolean) =>
      definePipeline({
        name: "c",
        functions: [
          defineFunction({ name: "src", input: fromStream("S"), process: (ctx, r) => ctx.emit(r) }),
          defineFunction({ name: "map", input: fromFunction("src"), ...(chain === undefined ? {} : { chain }), process: (ctx, r) => ctx.emit(r) }),
          defineSink({ name: "out", input: fromFunction("map"), subject: "out" }),
        ],
      });
    /** What deploy records: the logical functions, those without actors marked chained. */
    const recorded = (p: ReturnType<typeof chainable>) => {
      const physical = physicalPipeline(p).graph;
      const graph = buildJobGraph(p);
      return signatureOf(graph, new Set(graph.functions.map((f) => f.name).filter((n) => !physical.functions.some((f) => f.name === n))));
    };

    it("records which functions run chained", () => {
      expect(recorded(chainable()).map((f) => [f.name, f.chained ?? false])).toEqual([["src", false], ["map", true], ["out", true]]);
      expect(recorded(chainable(false)).map((f) => [f.name, f.chained ?? false])).toEqual([["src", false], ["map", false], ["out", false]]);
    });

    it("refuses a version that gives a chained function actors of its own (its checkpoints hold no snapshot of it), and says to use a savepoint", () => {
      expect(incompatibility(recorded(chainable()), recorded(chainable(false)))).toMatch(/^function "map" runs chained .*eddy stop --savepoint, then eddy deploy --from-savepoint/);
    });

    it("accepts a version that chains functions that had actors, and records written before chaining existed", () => {
      expect(incompatibility(recorded(chainable(false)), recorded(chainable()))).toBeUndefined();
      const before = recorded(chainable()).map(({ chained: _, ...f }) => f);
      expect(incompatibility(before, recorded(chainable(false)))).toBeUndefined();
    });
  });
});
