/**
 * A function with TTL state, driven through the test harness (which stores and reloads state as a
 * checkpoint and a restart would after every call): months of per-user rule state, forgotten
 * after 90 days of event time without a write.
 */
import { describe, expect, it } from "vitest";
import { testHarness } from "eddy/testing";
import { defineFunction, fromFunction, listState, mapState, valueState } from "../../../runtime/sdk/index.ts";

const DAY = 86_400_000;

interface Event {
  readonly user: string;
  readonly rule?: string;
  readonly at: number;
}

const ruleState = {
  rules: mapState<number>({ ttl: { ms: 90 * DAY, time: "event" } }),
  lastSeen: valueState<number>({ ttl: { ms: 90 * DAY, time: "event", update: "on-read-and-write" } }),
  recent: listState<string>({ ttl: { ms: 7 * DAY, time: "event" } }),
};

/** Records rules per user and emits the rules still active for the user at each event. */
const rules = defineFunction<Event, { user: string; active: string[]; seenBefore: boolean; recent: readonly string[] }, typeof ruleState>({
  name: "rules",
  input: fromFunction("events"),
  key: (e) => e.user,
  timestamp: (e) => e.at,
  state: ruleState,
  process(ctx, e) {
    if (e.rule !== undefined) {
      ctx.state.rules.set(e.rule, e.at);
      ctx.state.recent.add(e.rule);
    }
    const seenBefore = ctx.state.lastSeen.get() !== undefined;
    if (!seenBefore) ctx.state.lastSeen.set(e.at);
    ctx.emit({ user: e.user, active: ctx.state.rules.keys().sort(), seenBefore, recent: ctx.state.recent.get() });
  },
});

describe("a function with event-time TTL state", () => {
  it("keeps a rule for 90 days of event time after it was written, then never returns it", () => {
    const h = testHarness(rules);
    h.send({ user: "ann", rule: "r1", at: 0 });
    h.send({ user: "ann", rule: "r2", at: 60 * DAY });
    h.advanceWatermark(89 * DAY);
    h.send({ user: "ann", at: 89 * DAY });
    expect(h.output().at(-1)!.active).toEqual(["r1", "r2"]);
    h.advanceWatermark(90 * DAY);
    h.send({ user: "ann", at: 90 * DAY });
    expect(h.output().at(-1)!.active).toEqual(["r2"]);
    expect(h.state("rules", "ann", "r1")).toBeUndefined();
    expect(h.state("rules", "ann")).toEqual(new Map([["r2", 60 * DAY]]));
  });

  it("removes expired state of users who never come back, once the watermark passes it", () => {
    const h = testHarness(rules);
    h.send({ user: "ann", rule: "r1", at: 0 });
    h.send({ user: "bob", rule: "r1", at: 50 * DAY });
    expect(h.keys("rules").sort()).toEqual(["ann", "bob"]);
    h.advanceWatermark(100 * DAY);
    expect(h.keys("rules")).toEqual(["bob"]);
    expect(h.state("rules", "ann")).toEqual(new Map());
    expect(h.state("lastSeen", "ann")).toBeUndefined();
  });

  it("restarts a TTL updated on read with every read, so a regular user is never forgotten", () => {
    const h = testHarness(rules);
    for (let day = 0; day <= 360; day += 60) {
      h.advanceWatermark(day * DAY);
      h.send({ user: "ann", at: day * DAY });
    }
    expect(h.output().map((o) => o.seenBefore)).toEqual([false, true, true, true, true, true, true]);
    h.advanceWatermark(450 * DAY);
    h.send({ user: "ann", at: 450 * DAY });
    expect(h.output().at(-1)!.seenBefore).toBe(false);
  });

  it("expires list elements one by one", () => {
    const h = testHarness(rules);
    h.send({ user: "ann", rule: "a", at: 0 });
    h.send({ user: "ann", rule: "b", at: 3 * DAY });
    h.advanceWatermark(7 * DAY);
    h.send({ user: "ann", at: 7 * DAY });
    expect(h.output().at(-1)!.recent).toEqual(["b"]);
    expect(h.state("recent", "ann")).toEqual(["b"]);
  });
});

describe("a function with processing-time TTL state", () => {
  const session = defineFunction<Event, number, { hits: ReturnType<typeof valueState<number>> }>({
    name: "session",
    input: fromFunction("events"),
    key: (e) => e.user,
    state: { hits: valueState<number>({ ttl: { ms: 30 * 60_000, time: "processing" } }) },
    process(ctx) {
      ctx.emit(ctx.state.hits.update((n) => (n ?? 0) + 1));
    },
  });

  it("forgets a value 30 minutes of processing time after its last write, whatever the event time", () => {
    const h = testHarness(session, { now: 1_000_000 });
    h.send({ user: "ann", at: 0 }, { timestamp: 0 });
    h.advanceProcessingTime(1_000_000 + 29 * 60_000);
    h.send({ user: "ann", at: 0 }, { timestamp: 0 });
    h.advanceProcessingTime(1_000_000 + 59 * 60_000);
    h.send({ user: "ann", at: 0 }, { timestamp: 0 });
    expect(h.output()).toEqual([1, 2, 1]);
    h.advanceProcessingTime(1_000_000 + 90 * 60_000);
    expect(h.keys("hits")).toEqual([]);
  });
});
