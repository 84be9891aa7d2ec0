/**
 * Conditions: predicates in code and CEL expressions over `event`, `matched`, `key` and
 * `seen(field, value)`; iterative conditions over the events matched so far; CEL errors at run
 * time count as false and are counted, never thrown.
 */
import { describe, expect, it } from "vitest";
import { advance, compilePattern, initialState, matchAll } from "../../../runtime/core/cep/index.ts";
import type { Pattern } from "../../../runtime/spec/cep.ts";
import { pattern } from "../../../runtime/sdk/cep.ts";

interface Tx {
  readonly kind: string;
  readonly amount: number;
  readonly device?: string;
}
const tx = (list: Tx[]) => list.map((value, i) => ({ value, timestamp: i }));

describe("CEL conditions", () => {
  it("test fields of the event", () => {
    const p = pattern.begin("big").where("event.kind == 'pay' && event.amount > 100").toPattern();
    expect(matchAll(p, tx([{ kind: "pay", amount: 50 }, { kind: "pay", amount: 150 }, { kind: "refund", amount: 500 }]))).toEqual([{ big: [1] }]);
  });
  it("see the events matched so far (iterative): the same device as the first", () => {
    const p = pattern.begin("login").where("event.kind == 'login'")
      .followedBy("pay").where("event.kind == 'pay' && event.device == matched.login[0].device").toPattern();
    const events = tx([{ kind: "login", amount: 0, device: "d1" }, { kind: "pay", amount: 1, device: "d2" }, { kind: "pay", amount: 1, device: "d1" }]);
    expect(matchAll(p, events)).toEqual([{ login: [0], pay: [2] }]);
  });
  it("sum() over matched values: a loop that stops once the total passes a bound", () => {
    const p = pattern.begin("small").where("event.amount < 10").oneOrMore().consecutive()
      .followedBy("total").where("sum(matched.small.map(e, e.amount)) + event.amount >= 20").toPattern();
    const events = tx([{ kind: "pay", amount: 9 }, { kind: "pay", amount: 9 }, { kind: "pay", amount: 5 }]);
    // 9 + 9 = 18 is not enough; 9 + 9 + 5 is. A run starting at the second 9 never reaches 20.
    expect(matchAll(p, events)).toEqual([{ small: [0, 1], total: [2] }]);
  });
  it("size() counts matched events; key is the key the pattern runs under", () => {
    const p = pattern.begin("a").where("key == 'ann'").timesOrMore(2).toPattern();
    const events = tx([{ kind: "x", amount: 0 }, { kind: "x", amount: 0 }]);
    expect(matchAll(p, events, { key: "ann" })).toEqual([{ a: [0, 1] }]);
    expect(matchAll(p, events, { key: "bob" })).toEqual([]);
  });
  it("seen(field, value) asks what the caller knows about earlier events of the key", () => {
    const p = pattern.begin("new").where("!seen('device', event.device)").toPattern();
    const events = tx([{ kind: "login", amount: 0, device: "d1" }, { kind: "login", amount: 0, device: "d1" }, { kind: "login", amount: 0, device: "d2" }]);
    const seen = (field: string, value: unknown, index: number) => field === "device" && events.slice(0, index).some((e) => e.value.device === value);
    expect(matchAll(p, events, { seen })).toEqual([{ new: [0] }, { new: [2] }]);
  });
  it("an expression that fails at run time (a missing field) is false and counted", () => {
    const compiled = compilePattern(pattern.begin("a").where("event.missing > 1").toPattern());
    const state = initialState();
    expect(advance(compiled, state, { kind: "x" }, 0, { key: "" }).matches).toEqual([]);
    expect(state.celErrors).toBe(1);
  });
  it("a result that is not a bool is false and counted", () => {
    const compiled = compilePattern(pattern.begin("a").where("event.amount").toPattern());
    const state = initialState();
    expect(advance(compiled, state, { amount: 3 }, 0, { key: "" }).matches).toEqual([]);
    expect(state.celErrors).toBe(1);
  });
  it("see one event object alike in every condition that tests it, however often (its CEL map is built once and shared)", () => {
    const conditions = ["event.kind == 'pay'", "event.meta.tags[1] == 'b'", "has(event.meta.country)", "event.missing == 1", "size(event.meta.tags) == 2 && event.amount > 5"];
    const run = (e: unknown) => conditions.map((c) => matchAll(pattern.begin("a").where(c).toPattern(), [{ value: e, timestamp: 0 }]).length);
    const event = { kind: "pay", amount: 7, meta: { tags: ["a", "b"] } };
    expect(run(event)).toEqual([1, 1, 0, 0, 1]);
    expect(run(event)).toEqual([1, 1, 0, 0, 1]);
    expect(run({ ...event, amount: 3 })).toEqual([1, 1, 0, 0, 0]);
  });
});

describe("conditions in code", () => {
  it("receive the event and the view of the partial match", () => {
    const p: Pattern = {
      stages: [
        { name: "a", where: { fn: (e: Tx) => e.kind === "a" } },
        { name: "b", where: { fn: (e: Tx, v) => e.kind === "b" && e.amount > (v.matched["a"]![0] as Tx).amount } },
      ],
    };
    expect(matchAll(p, tx([{ kind: "a", amount: 5 }, { kind: "b", amount: 3 }, { kind: "b", amount: 7 }]))).toEqual([{ a: [0], b: [2] }]);
  });
  it("several where() must all hold; or() adds an alternative", () => {
    const p = pattern.begin("a").where((e: Tx) => e.amount > 1).where((e: Tx) => e.amount < 5).or((e: Tx) => e.kind === "vip").toPattern();
    expect(matchAll(p, tx([{ kind: "x", amount: 3 }, { kind: "x", amount: 9 }, { kind: "vip", amount: 9 }]))).toEqual([{ a: [0] }, { a: [2] }]);
  });
});
