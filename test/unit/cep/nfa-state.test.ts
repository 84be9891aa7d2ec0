/**
 * The NFA's state is plain data that lives in keyed state: it survives a msgpack round trip at
 * any point with the same results, stores each event once however many partial matches share
 * it, and is bounded by a per-key cap whose drops are counted.
 */
import { describe, expect, it } from "vitest";
import { advance, advanceTime, compilePattern, initialState, type NfaState, type StepResult } from "../../../runtime/core/cep/index.ts";
import { decodeValue, encodeValue } from "../../../runtime/core/wire.ts";
import { pattern } from "../../../runtime/sdk/cep.ts";
import { events } from "./helpers.ts";

const p = pattern.begin("a").where("event.startsWith('a')").oneOrMore().allowCombinations()
  .followedBy("b").where("event.startsWith('b')").notFollowedBy("n").where("event == 'n'").within(100).toPattern();
const text = "a1@0 a2@1 x@2 a3@3 b1@4 a4@5 b2@6 n@7 a5@50 b3@120 a6@130";

function run(restoreEvery: number | undefined): unknown[] {
  const compiled = compilePattern(p);
  let state: NfaState = initialState();
  const out: unknown[] = [];
  const keep = (r: StepResult) => out.push(r.matches, r.timedOut, r.dropped);
  events(text).forEach((e, i) => {
    keep(advance(compiled, state, e.value, e.timestamp, { key: "k" }));
    if (restoreEvery !== undefined && i % restoreEvery === 0) state = decodeValue(encodeValue(state)) as NfaState;
  });
  keep(advanceTime(compiled, state, Infinity));
  return out;
}

describe("NFA state", () => {
  it("survives a msgpack round trip after every event with the same results", () => {
    const straight = run(undefined);
    expect(run(1)).toEqual(straight);
    expect(run(3)).toEqual(straight);
    expect(straight.flat(2).length).toBeGreaterThan(5);
  });

  it("stores each event once, shared by the partial matches that took it", () => {
    const compiled = compilePattern(p);
    const state = initialState();
    for (const e of events("a1@0 a2@1 a3@2 a4@3")) advance(compiled, state, e.value, e.timestamp, { key: "k" });
    // every non-empty subset of {a1..a4} that is a run: 15 partial matches over 4 stored events
    expect(state.partial).toHaveLength(15);
    expect(Object.keys(state.events).sort()).toEqual(["0", "1", "2", "3"]);
    expect(Object.keys(state.nodes)).toHaveLength(15);
  });

  it("the cap drops the newest partial matches beyond it and counts them", () => {
    const compiled = compilePattern(p);
    const state = initialState();
    let dropped = 0;
    for (const e of events("a1@0 a2@1 a3@2 a4@3")) dropped += advance(compiled, state, e.value, e.timestamp, { key: "k", maxPartialMatches: 5 }).dropped;
    expect(state.partial).toHaveLength(5);
    // a3 makes 4 new ones where 2 fit (7 - 5 dropped); a4 makes 6, none fits
    expect(dropped).toBe(2 + 6);
    expect(state.dropped).toBe(8);
    // the oldest stay: a1, then {a1,a2}, a2, then the first two made by a3
    expect(state.partial.map((pm) => pm.s)).toEqual([0, 0, 1, 0, 0]);
    // dropped partial matches free their events
    const referenced = new Set(Object.values(state.nodes).map((n) => n[0]));
    expect(Object.keys(state.events).map(Number).sort()).toEqual([...referenced].sort());
  });

  it("refuses events out of event-time order", () => {
    const compiled = compilePattern(p);
    const state = initialState();
    advance(compiled, state, "a1", 10, { key: "k" });
    expect(() => advance(compiled, state, "a2", 5, { key: "k" })).toThrow(RangeError);
  });
});
