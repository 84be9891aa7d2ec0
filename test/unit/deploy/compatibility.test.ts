/**
 * What may replace a running deployment: the same functions and partitions, every state kept
 * with the same kind and schema version (new state may be added, old state dropped).
 */
import { describe, expect, it } from "vitest";
import { buildJobGraph } from "../../../runtime/core/job-graph.ts";
import { withDefaultPartitions } from "../../../runtime/deploy/bundle.ts";
import { incompatibility, signatureOf } from "../../../runtime/deploy/deploy.ts";
import { defineFunction, definePipeline, fromFunction, fromStream, listState, valueState } from "../../../runtime/sdk/index.ts";

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
});
