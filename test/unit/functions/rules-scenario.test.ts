/**
 * The rule-detection scenario (functions/rules/): the generator plants a known number of attacks,
 * the rules are valid rule-stream messages, and the plain-loop expectation agrees with the CEP
 * core (`advance` over each rule key's events) and with `cep()` in the test harness — so the
 * expectation and the matcher check each other before the live pipeline is compared with either.
 */
import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { advance, advanceTime, compilePattern, initialState, patternFromJson } from "../../../runtime/core/cep/index.ts";
import { decodeRuleChange, ruleKeyOf, type Rule } from "../../../runtime/core/rules.ts";
import { cep, fromFunction, type Match } from "../../../runtime/sdk/index.ts";
import { testHarness } from "../../../runtime/sdk/test-harness.ts";
import { benchEvents, matchRun } from "../../bench/rules.ts";
import { generateSecurityEvents, parseSecurityEvent, validateSecurityEvent, type Login, type SecurityEvent } from "../../../functions/rules/events.ts";
import { alertOrder, expectedAlerts, historyWindows, versionWindows, type ExpectedAlert } from "../../../functions/rules/expected.ts";
import { benchmarkSpecs, REMEMBER, SCENARIO_RULES, SCENARIO_SPECS, toRule, vpnBruteForceSpec, type RuleSpec } from "../../../functions/rules/rules.ts";

const eventsOf = (seed: number, n: number, attacks?: number) =>
  generateSecurityEvents({ seed, events: n, ...(attacks === undefined ? {} : { attacks }) }).messages.flatMap((m) => (m.event === undefined ? [] : [m.event]));

/** Alerts reduced to what both sides know: rule, key, time and the matched events' times per stage. */
const shape = (a: { rule: string; version: number; key: string; at: number; matched: Readonly<Record<string, readonly SecurityEvent[]>> }) => ({
  rule: a.rule,
  version: a.version,
  key: a.key,
  at: a.at,
  matched: Object.fromEntries(Object.entries(a.matched).filter(([, evs]) => evs.length > 0).map(([s, evs]) => [s, evs.map((e) => e.ts)])),
});

/** The CEP core over each rule key's events in event-time order, remembering devices as `cep()` does. */
function coreAlerts(rule: Rule, events: readonly SecurityEvent[]) {
  const compiled = compilePattern(rule.pattern);
  const byKey = new Map<string, SecurityEvent[]>();
  for (const e of [...events].sort((a, b) => a.ts - b.ts)) {
    const key = ruleKeyOf(rule.key, e);
    if (key !== undefined) byKey.set(key, [...(byKey.get(key) ?? []), e]);
  }
  const out: ReturnType<typeof shape>[] = [];
  for (const [key, evs] of byKey) {
    const state = initialState();
    const remembered = new Set<string>();
    const collect = (ms: readonly Match<{ value: unknown; timestamp: number }>[]) => {
      for (const m of ms) {
        const matched = Object.fromEntries(Object.entries(m).map(([s, xs]) => [s, xs.map((x) => x.value as SecurityEvent)]));
        const all = Object.values(m).flat();
        out.push(shape({ rule: rule.id, version: rule.version, key, at: Math.max(...all.map((x) => x.timestamp)), matched }));
      }
    };
    for (const e of evs) {
      collect(advance(compiled, state, e, e.ts, { key, seen: (field, value) => remembered.has(`${field}\u0000${JSON.stringify(value)}`) }).matches);
      for (const f of REMEMBER) if ((e as Partial<Login>)[f] !== undefined) remembered.add(`${f}\u0000${JSON.stringify((e as Partial<Login>)[f])}`);
    }
    collect(advanceTime(compiled, state, Infinity).matches);
  }
  return out.sort(alertOrder);
}

const count = (alerts: readonly { rule: string }[]) => {
  const c: Record<string, number> = {};
  for (const a of alerts) c[a.rule] = (c[a.rule] ?? 0) + 1;
  return c;
};

describe("generateSecurityEvents", () => {
  it("is deterministic for a seed and differs between seeds", () => {
    const a = generateSecurityEvents({ seed: 5, events: 2_000 });
    expect(generateSecurityEvents({ seed: 5, events: 2_000 })).toEqual(a);
    const b = generateSecurityEvents({ seed: 6, events: 2_000 });
    expect(b.messages.map((m) => m.payload)).not.toEqual(a.messages.map((m) => m.payload));
  });

  it("gives every event its own time and publishes none more than maxDisorderMs after a later one", () => {
    const run = generateSecurityEvents({ seed: 9, events: 10_000, maxDisorderMs: 1_500 });
    const evs = run.messages.flatMap((m) => (m.event === undefined ? [] : [m.event]));
    expect(new Set(evs.map((e) => e.ts)).size).toBe(evs.length);
    let max = -Infinity;
    let disordered = 0;
    for (const e of evs) {
      expect(e.ts).toBeGreaterThan(max - 1_500);
      if (e.ts < max) disordered++;
      max = Math.max(max, e.ts);
    }
    expect(disordered).toBeGreaterThan(evs.length / 10);
  });

  it("publishes valid events that parse back to themselves and malformed ones that are refused with a reason", () => {
    const run = generateSecurityEvents({ seed: 3, events: 20_000 });
    const bad = run.messages.filter((m) => m.event === undefined);
    expect(bad.length).toBeGreaterThan(40);
    expect(new Set(bad.map((m) => m.malformed))).toEqual(new Set(["not-json", "missing-type", "bad-ts", "unknown-type"]));
    for (const m of bad) expect(typeof parseSecurityEvent(m.payload)).toBe("string");
    for (const m of run.messages) if (m.event !== undefined) expect(parseSecurityEvent(m.payload)).toEqual(m.event);
  });

  it.each([
    ["a score that is no number", { type: "login", user: "ann", device: "d", ip: "1.2.3.4", vpn: true, ok: false, score: "high", ts: 1 }, /score/],
    ["a transfer without amount", { type: "transfer", user: "ann", ip: "1.2.3.4", ts: 1 }, /amount/],
    ["a fractional time", { type: "password_change", user: "ann", ip: "1.2.3.4", ts: 1.5 }, /ts/],
    ["an empty user", { type: "password_change", user: "", ip: "1.2.3.4", ts: 1 }, /user/],
    ["a list", [], /object/],
  ])("refuses %s with a reason", (_what, record, reason) => {
    expect(validateSecurityEvent(record)).toMatch(reason);
  });

  it("makes each rule fire exactly as often as attacks were planted; the near misses and the noise fire nothing", () => {
    for (const seed of [1, 2, 3]) {
      const run = generateSecurityEvents({ seed, events: 10_000, attacks: 4 + seed });
      const alerts = expectedAlerts(run.messages.flatMap((m) => (m.event === undefined ? [] : [m.event])), versionWindows(SCENARIO_SPECS));
      expect(count(alerts)).toEqual(run.planted);
      expect(run.planted["vpn-brute-force"]).toBe(4 + seed);
      // Alerts are raised on planted victims and attacker IPs only.
      for (const a of alerts) expect(a.key).toMatch(/^user=\["t\d+"\]$|^ip=\["198\.51\./);
    }
  });
});

describe("the scenario's rules", () => {
  it("are valid rule-stream messages: decodeRuleChange with the CEP compiler accepts them unchanged", () => {
    for (const rule of [...SCENARIO_RULES, ...benchmarkSpecs(100).map(toRule)]) {
      expect(decodeRuleChange(JSON.parse(JSON.stringify({ op: "put", rule })), patternFromJson)).toEqual({ op: "put", rule });
    }
  });

  it("are the JSON files next to them, which `eddy rules put` publishes", () => {
    for (const rule of SCENARIO_RULES) {
      expect(JSON.parse(readFileSync(new URL(`../../../functions/rules/${rule.id}.json`, import.meta.url), "utf8"))).toEqual(rule);
    }
  });

  it("a broken rule is refused with a one-line reason", () => {
    const rule = { ...SCENARIO_RULES[0]!, pattern: { ...SCENARIO_RULES[0]!.pattern, stages: [{ name: "first", where: { cel: "event.score >" } }] } };
    expect(() => decodeRuleChange({ op: "put", rule }, patternFromJson)).toThrow(/^rule vpn-brute-force: pattern: .*first/);
  });
});

describe("expectedAlerts equals the CEP core", () => {
  it.each([1, 2])("for the three scenario rules on seed %i", (seed) => {
    const evs = eventsOf(seed, 20_000);
    for (const spec of SCENARIO_SPECS) {
      const want = expectedAlerts(evs, versionWindows([spec])).map(shape);
      expect(want.length).toBeGreaterThan(0);
      expect(coreAlerts(toRule(spec), evs)).toEqual(want);
    }
  });

  it("for lower thresholds, where the noise fires the rules too and matches overlap", () => {
    const evs = eventsOf(4, 8_000);
    const specs: RuleSpec[] = [
      ...benchmarkSpecs(9),
      { ...vpnBruteForceSpec, id: "vpn-low", failures: 1, minScore: 0, withinMs: 3_600_000 },
      { kind: "login-flood", id: "user-flood", version: 1, failures: 2, withinMs: 600_000, by: "user" },
      { kind: "account-takeover", id: "takeover-low", version: 1, minAmount: 5_000, withinMs: 3_600_000 },
    ];
    let total = 0;
    for (const spec of specs) {
      const want = expectedAlerts(evs, versionWindows([spec])).map(shape);
      total += want.length;
      expect(coreAlerts(toRule(spec), evs)).toEqual(want);
    }
    expect(total).toBeGreaterThan(200);
  });
});

describe("expectedAlerts equals cep() in the test harness", () => {
  it("for the three scenario rules, the events sent in publish order (out of order in event time)", () => {
    const run = generateSecurityEvents({ seed: 11, events: 3_000, attacks: 2 });
    const evs = run.messages.flatMap((m) => (m.event === undefined ? [] : [m.event]));
    for (const rule of SCENARIO_RULES) {
      const h = testHarness(
        cep({
          name: rule.id,
          input: fromFunction("security-events"),
          key: (e: SecurityEvent) => ruleKeyOf(rule.key, e) ?? "",
          timestamp: (e: SecurityEvent) => e.ts,
          pattern: rule.pattern,
          remember: REMEMBER,
          select: (m, key) => shape({ rule: rule.id, version: rule.version, key, at: Math.max(...Object.values(m).flat().map((e) => e.ts)), matched: m }),
        }),
      );
      for (const e of evs) h.send(e);
      h.advanceWatermark(Infinity);
      expect(h.sideOutput("late")).toEqual([]);
      expect([...h.output()].sort(alertOrder)).toEqual(expectedAlerts(evs, versionWindows([SCENARIO_SPECS.find((s) => s.id === rule.id)!])).map(shape));
      expect(h.output()).toHaveLength(2);
    }
  });
});

describe("the rules benchmark's matching loop", () => {
  it("raises as many matches as the expectation for the benchmark's rules (it measures a correct matcher)", () => {
    const evs = benchEvents({ keys: 300, events: 4_000 });
    const specs = benchmarkSpecs(10);
    const want = specs.reduce((n, spec) => n + expectedAlerts(evs, versionWindows([spec])).length, 0);
    const run = matchRun(specs.map(toRule), evs);
    expect(want).toBeGreaterThan(20);
    expect(run.matches).toBe(want);
    expect(run.advances).toBe(evs.length * specs.length);
  });
});

describe("rule versions in the expectation", () => {
  const T = Date.UTC(2026, 0, 1);
  const MIN = 60_000;
  const fail = (i: number, device = "evil", user = "ann"): Login => ({ type: "login", user, device, ip: "1.2.3.4", vpn: true, ok: false, score: 90, ts: T + i * MIN });
  const v1 = { ...vpnBruteForceSpec, failures: 2 }; // more than 2 failures
  const v2 = { ...vpnBruteForceSpec, version: 2, failures: 3, activeFrom: T + 10 * MIN };
  const alertsOf = (evs: SecurityEvent[], specs: RuleSpec[], opts = {}) => expectedAlerts(evs, versionWindows(specs), opts).map((a: ExpectedAlert) => [a.version, a.fields["device"], a.at - T]);

  it("a version applies to the events from its activeFrom to the next version's; a burst across the change raises nothing", () => {
    // Three failures from "evil" (v1 fires at 2), three more straddling the change at 10 min.
    const evs = [fail(0), fail(1), fail(2), fail(9, "x"), fail(10, "x"), fail(11, "x"), fail(12, "y"), fail(13, "y"), fail(14, "y"), fail(15, "y")];
    expect(alertsOf(evs, [v1, v2])).toEqual([
      [1, "evil", 2 * MIN],
      [2, "y", 15 * MIN],
    ]);
    expect(alertsOf(evs, [v1])).toEqual([
      [1, "evil", 2 * MIN],
      [1, "x", 11 * MIN],
      [1, "y", 14 * MIN],
    ]);
  });

  it("a removed rule raises nothing from its removal time on", () => {
    const evs = [fail(0), fail(1), fail(2), fail(12, "y"), fail(13, "y"), fail(14, "y")];
    expect(expectedAlerts(evs, versionWindows([v1], { [v1.id]: T + 10 * MIN }))).toHaveLength(1);
  });

  it("seenScope says whether a device used before the version's window counts as seen", () => {
    const evs = [fail(5, "old"), fail(12, "old"), fail(13, "old"), fail(14, "old"), fail(15, "old")];
    expect(alertsOf(evs, [v1, v2])).toEqual([]);
    expect(alertsOf(evs, [v1, v2], { seenScope: "version" })).toEqual([[2, "old", 15 * MIN]]);
  });

  it("historyWindows: a rule removed and put again applies in each of its versions' windows, and not while removed", () => {
    const v3 = { ...vpnBruteForceSpec, version: 3, failures: 2, activeFrom: T + 30 * MIN };
    const windows = historyWindows([
      { at: T, put: { ...v1, activeFrom: T } },
      { at: T + 10 * MIN, put: v2 },
      { at: T + 20 * MIN, remove: v1.id },
      { at: T + 30 * MIN, put: v3 },
    ]);
    expect(windows.map((w) => [w.spec.version, w.from - T, w.to - T])).toEqual([
      [1, 0, 10 * MIN],
      [2, 10 * MIN, 20 * MIN],
      [3, 30 * MIN, Infinity],
    ]);
    // Bursts of three failures while v1 applies, while removed, and while v3 applies.
    const evs = [fail(0), fail(1), fail(2), fail(21, "x"), fail(22, "x"), fail(23, "x"), fail(31, "y"), fail(32, "y"), fail(33, "y")];
    expect(expectedAlerts(evs, windows).map((a) => [a.version, a.fields["device"], a.at - T])).toEqual([
      [1, "evil", 2 * MIN],
      [3, "y", 33 * MIN],
    ]);
  });

  it("historyWindows refuses a history the harness cannot have published: a version not above the last, an activeFrom off its change", () => {
    expect(() => historyWindows([{ at: T + 10 * MIN, put: v2 }, { at: T + 20 * MIN, put: { ...v1, activeFrom: T + 20 * MIN } }])).toThrow(/version 1 after 2/);
    expect(() => historyWindows([{ at: T + 5 * MIN, put: v2 }])).toThrow(/is not the change's time/);
  });

  it("a later version without activeFrom is refused: its start would not be deterministic", () => {
    expect(() => versionWindows([v1, { ...v2, activeFrom: undefined }])).toThrow(/needs activeFrom/);
  });
});
