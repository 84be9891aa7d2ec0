/**
 * `liveRules()` with the test harness: the rules source checks every change, the keying function
 * routes events by the rule set in broadcast state, and the matcher runs each rule version over a
 * key's events in event-time order — a new version starts over, a version with `activeFrom`
 * leaves earlier events to the one it replaced, a removed rule's state goes — and its alerts
 * equal a plain loop's.
 */
import { describe, expect, it } from "vitest";
import { fromFunction, fromStream, liveRules, type Alert, type KeyedEvent, type Rule } from "../../../runtime/sdk/index.ts";
import { testHarness, UserFunctionError } from "../../../runtime/sdk/test-harness.ts";
import { ruleKeyOf } from "../../../runtime/core/rules.ts";

interface Login {
  readonly user: string;
  readonly device?: string;
  readonly kind: "fail" | "ok";
  readonly ts: number;
}

const twoFails = (over: Partial<Rule> = {}): Rule => ({
  id: "two-fails",
  version: 1,
  key: ["user"],
  pattern: { stages: [{ name: "fail", where: { cel: "event.kind == 'fail'" }, quantifier: { min: 2, max: 2 } }], within: 1_000, skip: { strategy: "skipPastLastEvent" } },
  output: { user: "matched.fail[0].user", last: "matched.fail[1].ts" },
  ...over,
});

const [source, keying, matcher] = liveRules<Login>({
  name: "match",
  events: fromFunction("logins"),
  rules: fromStream("RULES", { subject: "rules.>" }),
  maxPartialMatches: 5,
  remember: ["device"],
});
const ann = ruleKeyOf(["user"], { user: "ann" })!;
const fail = (ts: number, user = "ann"): KeyedEvent<Login> => ({ k: ruleKeyOf(["user"], { user })!, e: { user, kind: "fail", ts } });

/** A matcher harness with `rules` applied at a first checkpoint. */
function matcherWith(...rules: Rule[]) {
  const h = testHarness(matcher!);
  for (const rule of rules) h.broadcast({ op: "put", rule });
  h.checkpoint();
  return h;
}
const send = (h: ReturnType<typeof matcherWith>, r: KeyedEvent<Login>) => h.send(r, { timestamp: r.e.ts });
const alerts = (h: ReturnType<typeof matcherWith>) => h.output() as Alert[];

describe("liveRules: the functions it makes", () => {
  it("names them after the matcher and refuses a rule stream whose subject does not end in .>", () => {
    expect([source!.name, keying!.name, matcher!.name]).toEqual(["match-rules", "match-keys", "match"]);
    expect(() => liveRules({ name: "m", events: fromFunction("e"), rules: fromStream("R", { subject: "rules" }) })).toThrow(/subject filter ending in "\.>"/);
    expect(liveRules({ name: "m", events: fromFunction("e"), rules: fromStream("R", { subject: "r.>" }), sink: { subject: "alerts" } }).map((f) => f.name)).toEqual(["m-rules", "m-keys", "m", "m-alerts"]);
  });
});

describe("the rules source", () => {
  it("passes a valid change on and refuses a bad one with its reason (dead-lettered)", () => {
    const h = testHarness(source!);
    h.send({ op: "put", rule: twoFails() });
    h.send({ op: "remove", id: "two-fails" });
    expect(h.output()).toEqual([{ op: "put", rule: twoFails() }, { op: "remove", id: "two-fails" }]);
    const bad = () => h.send({ op: "put", rule: { ...twoFails(), output: { x: "matched.fail[" } } });
    expect(bad).toThrow(UserFunctionError);
    expect(bad).toThrow(/rule two-fails: output\.x: CEL does not parse/);
  });
});

describe("the keying function", () => {
  it("emits every event once per key-field list of the rule set applied at the last barrier", () => {
    const h = testHarness(keying!);
    const login = { user: "ann", device: "d1", kind: "fail", ts: 1 } as const;
    h.broadcast({ op: "put", rule: twoFails() });
    h.broadcast({ op: "put", rule: twoFails({ id: "by-device", key: ["device"] }) });
    h.send(login, { timestamp: 1 });
    expect(h.output()).toEqual([]); // not applied before the barrier
    h.checkpoint();
    h.send(login, { timestamp: 1 });
    h.send({ user: "bob", kind: "ok", ts: 2 }, { timestamp: 2 }); // no device: only the user rules
    expect(h.output()).toEqual([
      { k: 'device=["d1"]', e: login },
      { k: 'user=["ann"]', e: login },
      { k: 'user=["bob"]', e: { user: "bob", kind: "ok", ts: 2 } },
    ]);
  });
});

describe("the matcher", () => {
  it("matches in event-time order once the watermark passes, and evaluates the output", () => {
    const h = matcherWith(twoFails());
    send(h, fail(300));
    send(h, fail(100));
    expect(alerts(h)).toEqual([]);
    h.advanceWatermark(300);
    expect(alerts(h)).toEqual([{ rule: "two-fails", version: 1, key: ann, at: 300, fields: { user: "ann", last: 300 } }]);
    expect(h.emitted()[0]!.timestamp).toBe(300);
  });

  it("sends events at or behind the watermark to side output late", () => {
    const h = matcherWith(twoFails());
    h.advanceWatermark(500);
    send(h, fail(400));
    expect(h.sideOutput("late")).toEqual([fail(400).e]);
  });

  it("a new version drops the rule's partial matches for the key", () => {
    const h = matcherWith(twoFails());
    send(h, fail(100));
    h.advanceWatermark(100);
    expect(h.state("nfa", ann, "two-fails")?.v).toBe(1);
    h.broadcast({ op: "put", rule: twoFails({ version: 2 }) });
    h.checkpoint();
    send(h, fail(200));
    h.advanceWatermark(200);
    expect(alerts(h)).toEqual([]); // the fail at 100 belonged to version 1
    send(h, fail(300));
    h.advanceWatermark(300);
    expect(alerts(h).map((a) => [a.version, a.at])).toEqual([[2, 300]]);
  });

  it("a version with activeFrom leaves the events before it, still buffered, to the version it replaced", () => {
    const h = matcherWith(twoFails({ activeFrom: 0 }));
    for (const ts of [50, 60, 110, 120]) send(h, fail(ts));
    h.broadcast({ op: "put", rule: twoFails({ version: 2, activeFrom: 100, output: { v: "rule.version" } }) });
    h.checkpoint();
    h.advanceWatermark(1_000);
    expect(alerts(h).map((a) => [a.version, a.at, a.fields])).toEqual([
      [1, 60, { user: "ann", last: 60 }],
      [2, 120, { v: 2 }],
    ]);
  });

  it("a removed rule stops matching and its state for the key is dropped on the key's next timer", () => {
    const h = matcherWith(twoFails(), twoFails({ id: "other", pattern: { stages: [{ name: "a", where: { cel: "event.kind == 'ok'" } }, { name: "b" }] } }));
    send(h, fail(100));
    h.advanceWatermark(100);
    expect(h.state("nfa", ann, "two-fails")).toBeDefined();
    h.broadcast({ op: "remove", id: "two-fails" });
    h.checkpoint();
    expect(h.state("nfa", ann, "two-fails")).toBeDefined(); // lazily: nothing touched the key yet
    send(h, fail(200));
    h.advanceWatermark(200);
    expect(alerts(h)).toEqual([]);
    expect(h.state("nfa", ann, "two-fails")).toBeUndefined();
  });

  it("times partial matches out at within even when the key gets no more events", () => {
    const h = matcherWith(twoFails());
    send(h, fail(100));
    h.advanceWatermark(100);
    h.advanceWatermark(1_100);
    expect(h.sideOutput("timeout")).toEqual([{ rule: "two-fails", version: 1, key: ann, partial: { fail: [fail(100).e] } }]);
    expect(h.keys("nfa")).toEqual([]);
  });

  it("bounds partial matches per key and rule and counts what it dropped", () => {
    const any: Rule = { id: "any", version: 1, key: ["user"], pattern: { stages: [{ name: "a" }, { name: "b", contiguity: "any", where: { cel: "event.kind == 'never'" } }], within: 10_000 } };
    const h = matcherWith(any);
    for (let ts = 1; ts <= 8; ts++) send(h, fail(ts));
    h.advanceWatermark(8);
    const state = h.state("nfa", ann, "any")!;
    expect(state.s.partial.length).toBe(5);
    expect(state.s.dropped).toBe(3);
  });

  it("answers seen() from the fields it remembers per rule key", () => {
    const newDevice: Rule = { id: "new-device", version: 1, key: ["user"], pattern: { stages: [{ name: "ok", where: { cel: "event.kind == 'ok' && !seen('device', event.device)" } }] }, output: { device: "matched.ok[0].device" } };
    const h = matcherWith(newDevice);
    const ok = (ts: number, device: string): KeyedEvent<Login> => ({ k: ann, e: { user: "ann", device, kind: "ok", ts } });
    for (const r of [ok(1, "d1"), ok(2, "d1"), ok(3, "d2")]) send(h, r);
    h.advanceWatermark(10);
    expect(alerts(h).map((a) => a.fields.device)).toEqual(["d1", "d2"]);
  });

  it("keeps matching the same after a checkpoint restore", () => {
    const h = matcherWith(twoFails());
    send(h, fail(100));
    h.advanceWatermark(100);
    h.checkpoint();
    send(h, fail(200));
    h.advanceWatermark(200);
    expect(alerts(h).map((a) => a.at)).toEqual([200]);
  });

  it("runs many rules at once and agrees with a plain loop per rule", () => {
    // Rule i alerts on every (i+2)-th failure of a user (skip past last event), within 10 s.
    const rules = [0, 1, 2, 3, 4].map((i) => twoFails({ id: `r${i}`, pattern: { stages: [{ name: "fail", where: { cel: "event.kind == 'fail'" }, quantifier: { min: i + 2, max: i + 2 } }], within: 10_000, skip: { strategy: "skipPastLastEvent" } } }));
    const h = matcherWith(...rules);
    const users = ["ann", "bob", "cy"];
    const events: KeyedEvent<Login>[] = [];
    for (let ts = 1; ts <= 60; ts++) events.push(fail(ts, users[(ts * 7) % 3]!));
    for (const r of events) send(h, r);
    h.advanceWatermark(100);
    const expected: Array<[string, string, number]> = [];
    for (const user of users) {
      const times = events.filter((r) => r.e.user === user).map((r) => r.e.ts);
      for (let i = 0; i < 5; i++) for (let j = i + 1; j < times.length; j += i + 2) expected.push([`r${i}`, user, times[j]!]);
    }
    const got = alerts(h).map((a) => [a.rule, a.fields.user, a.at] as [string, string, number]);
    const order = (x: [string, string, number], y: [string, string, number]) => x[0].localeCompare(y[0]) || x[1].localeCompare(y[1]) || x[2] - y[2];
    expect(got.sort(order)).toEqual(expected.sort(order));
    expect(expected.length).toBeGreaterThan(20);
  });
});
