/**
 * The `cep()` operator in the test harness (which stores and reloads state as a checkpoint and a
 * restart would, after every call): records wait for the watermark and are matched in event-time
 * order; late records and timed-out partial matches go to side outputs; the cap is counted;
 * `remember` feeds `seen()`.
 */
import { describe, expect, it } from "vitest";
import { cep, fromFunction, pattern } from "../../../runtime/sdk/index.ts";
import { testHarness } from "../../../runtime/sdk/test-harness.ts";

interface Login {
  readonly user: string;
  readonly ok: boolean;
  readonly device: string;
  readonly ts: number;
}
const login = (user: string, ok: boolean, ts: number, device = "d1"): Login => ({ user, ok, device, ts });

/** Three failed logins, then a successful one from a device never seen with the user, within 10 s. */
const bruteForce = () =>
  cep({
    name: "brute-force",
    input: fromFunction("logins"),
    key: (l: Login) => l.user,
    timestamp: (l: Login) => l.ts,
    pattern: pattern.begin("fail").where("!event.ok").times(3).consecutive()
      .next("ok").where("event.ok && !seen('device', event.device)")
      .within(10_000),
    remember: ["device"],
    select: (m, user) => ({ user, devices: m["fail"]!.map((l) => l.device), at: m["ok"]![0]!.ts }),
  });

const attack = [login("ann", true, 1_000, "laptop"), login("ann", false, 2_000), login("ann", false, 3_000), login("ann", false, 4_000), login("ann", true, 5_000, "phone")];

describe("cep()", () => {
  it("emits a match once the watermark passes its events", () => {
    const h = testHarness(bruteForce());
    for (const l of attack) h.send(l);
    expect(h.output()).toEqual([]);
    h.advanceWatermark(5_000);
    expect(h.output()).toEqual([{ user: "ann", devices: ["d1", "d1", "d1"], at: 5_000 }]);
  });

  it("out-of-order input gives the same matches as sorted input", () => {
    const sorted = testHarness(bruteForce());
    for (const l of attack) sorted.send(l);
    sorted.advanceWatermark(Infinity);
    const shuffled = testHarness(bruteForce());
    for (const i of [4, 1, 3, 0, 2]) shuffled.send(attack[i]!);
    shuffled.advanceWatermark(Infinity);
    expect(shuffled.output()).toEqual(sorted.output());
    expect(sorted.output()).toHaveLength(1);
  });

  it("keys are matched separately", () => {
    const h = testHarness(bruteForce());
    for (const l of attack) {
      h.send(l);
      h.send({ ...l, user: "bob", ok: !l.ok });
    }
    h.advanceWatermark(Infinity);
    expect(h.output().map((o) => o.user)).toEqual(["ann"]);
  });

  it("seen(): a successful login from a device the user used before does not match", () => {
    const h = testHarness(bruteForce());
    for (const l of [login("ann", true, 1_000, "phone"), ...attack.slice(1)]) h.send(l);
    h.advanceWatermark(Infinity);
    expect(h.output()).toEqual([]);
    expect(h.state("seen", "ann").size).toBe(2);
  });

  it("rememberForMs: a value counts as seen until the watermark passes its last sighting + the time to live", () => {
    const newDevice = (rememberForMs: number) =>
      testHarness(
        cep({
          name: "new-device",
          input: fromFunction("logins"),
          key: (l: Login) => l.user,
          timestamp: (l: Login) => l.ts,
          pattern: pattern.begin("login").where("!seen('device', event.device)"),
          remember: ["device"],
          rememberForMs,
          select: (m) => m["login"]![0]!.ts,
        }),
      );
    const h = newDevice(1_000);
    h.send(login("ann", true, 100, "phone"));
    h.advanceWatermark(100);
    h.send(login("ann", true, 900, "phone"));
    h.advanceWatermark(900);
    h.send(login("ann", true, 2_500, "phone"));
    h.advanceWatermark(2_500);
    // 900 saw the phone of 100; 2 500 is more than 1 000 after the last sighting (900)
    expect(h.output()).toEqual([100, 2_500]);
    const longer = newDevice(10_000);
    for (const ts of [100, 900, 2_500]) {
      longer.send(login("ann", true, ts, "phone"));
      longer.advanceWatermark(ts);
    }
    expect(longer.output()).toEqual([100]);
  });

  it("a record at or before the watermark on arrival goes to side output late", () => {
    const h = testHarness(bruteForce());
    h.advanceWatermark(3_000);
    h.send(login("ann", false, 3_000));
    h.send(login("ann", false, 3_001));
    expect(h.sideOutput("late")).toEqual([login("ann", false, 3_000)]);
    expect(h.state("buffer", "ann").size).toBe(1);
  });

  it("partial matches that run out of time go to side output timeout, even with no later record of the key", () => {
    const h = testHarness(bruteForce());
    h.send(login("ann", false, 1_000));
    h.send(login("ann", false, 2_000));
    h.advanceWatermark(2_000);
    expect(h.sideOutput("timeout")).toEqual([]);
    h.advanceWatermark(11_000);
    expect(h.sideOutput("timeout")).toEqual([
      { key: "ann", partial: { fail: [login("ann", false, 1_000), login("ann", false, 2_000)] } },
    ]);
    h.advanceWatermark(12_000);
    expect(h.sideOutput("timeout")).toHaveLength(2);
    // with nothing pending, the key keeps no matcher state
    expect(h.state("nfa", "ann")).toBeUndefined();
    expect(h.keys("buffer")).toEqual([]);
  });

  it("a pattern ending in notFollowedBy emits its match when the watermark reaches the deadline", () => {
    const h = testHarness(
      cep({
        name: "no-logout",
        input: fromFunction("logins"),
        key: (l: Login) => l.user,
        timestamp: (l: Login) => l.ts,
        pattern: pattern.begin("in").where("event.ok").notFollowedBy("out").where("!event.ok").within(1_000),
        select: (m, user) => ({ user, at: m["in"]![0]!.ts }),
      }),
    );
    h.send(login("ann", true, 100));
    h.send(login("bob", true, 100));
    h.send(login("bob", false, 600));
    h.advanceWatermark(1_099);
    expect(h.output()).toEqual([]);
    h.advanceWatermark(1_100);
    expect(h.output()).toEqual([{ user: "ann", at: 100 }]);
  });

  it("keeps at most maxPartialMatches per key and counts what it dropped", () => {
    const h = testHarness(
      cep({ name: "any", input: fromFunction("x"), key: () => "k", pattern: pattern.begin("a").oneOrMore().allowCombinations().followedBy("b").where("event == 'b'"), maxPartialMatches: 4 }),
    );
    ["a", "a", "a", "a"].forEach((v, i) => h.send(v, { timestamp: i + 1 }));
    h.advanceWatermark(10);
    const nfa = h.state("nfa", "k")!;
    expect(nfa.partial).toHaveLength(4);
    expect(nfa.dropped).toBeGreaterThan(0);
    // The same count, per function, as a metric (eddy_function_events_total{event="partial_matches_dropped"}).
    expect(h.counter("partial_matches_dropped")).toBe(nfa.dropped);
  });

  it("counts conditions that fail to evaluate, per key in state and per function as a metric", () => {
    const h = testHarness(cep({ name: "err", input: fromFunction("x"), key: () => "k", pattern: pattern.begin("a").where("event.n > 1").followedBy("b").where("event.n > 2") }));
    h.send({ n: "not a number" }, { timestamp: 1 });
    h.send({ n: 5 }, { timestamp: 2 });
    h.advanceWatermark(10);
    const nfa = h.state("nfa", "k")!;
    expect(nfa.celErrors).toBeGreaterThan(0);
    expect(h.counter("condition_errors")).toBe(nfa.celErrors);
  });

  it("refuses an invalid pattern when the function is defined, naming the function", () => {
    expect(() => cep({ name: "bad", input: fromFunction("x"), key: () => "k", pattern: { stages: [{ name: "a" }, { name: "n", negated: true }] } })).toThrow(/bad: stage n/);
  });
});
