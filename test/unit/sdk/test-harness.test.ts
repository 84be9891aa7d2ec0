/**
 * The specification of `testHarness`: what a function author can rely on when unit-testing a
 * function without NATS. Each block is one promise of the harness; the functions under test are
 * small ones written here, plus the SDK's own windows and joins.
 */
import { describe, expect, expectTypeOf, it } from "vitest";
import { RecordRejectedError, StateEncodingError, testHarness, UserFunctionError } from "eddy/testing";
import { partitionOf } from "../../../runtime/core/hash.ts";
import { UndeclaredStateError } from "../../../runtime/core/state-store.ts";
import {
  boundedOutOfOrderness,
  defineFunction,
  defineSink,
  fromFunction,
  fromStream,
  listState,
  mapState,
  reducingState,
  streamJoin,
  tumbling,
  valueState,
  windowed,
  type Context,
} from "../../../runtime/sdk/index.ts";

interface Click {
  readonly user: string;
  readonly page: string;
  readonly at?: number;
}

interface Count {
  readonly user: string;
  readonly n: number;
}

/** Counts clicks per user and emits the running count. */
const countState = { n: valueState<number>() };
const counts = defineFunction<Click, Count, typeof countState>({
  name: "counts",
  input: fromFunction("clicks"),
  key: (c) => c.user,
  state: countState,
  process(ctx, c) {
    ctx.emit({ user: c.user, n: ctx.state.n.update((n) => (n ?? 0) + 1) });
  },
});

/** A keyed function whose process is given by the test. */
function keyed<S extends Record<string, ReturnType<typeof valueState> | ReturnType<typeof mapState> | ReturnType<typeof listState>>>(
  state: S,
  process: (ctx: Context<unknown, S>, c: Click) => void,
) {
  return defineFunction<Click, unknown, S>({ name: "fn", input: fromFunction("clicks"), key: (c) => c.user, state, process });
}

describe("testHarness: sending records", () => {
  it("keys each record with the key selector and gives process its event time and the processing time", () => {
    const seen: unknown[] = [];
    const h = testHarness(keyed({}, (ctx, c) => void seen.push([ctx.key, ctx.timestamp, ctx.processingTime, ctx.input, c.page])), { now: 500 });
    h.send({ user: "ann", page: "/a" }, { timestamp: 10 });
    h.send({ user: "bob", page: "/b" }, { timestamp: 20 });
    expect(seen).toEqual([
      ["ann", 10, 500, 0, "/a"],
      ["bob", 20, 500, 0, "/b"],
    ]);
  });

  it("takes event time from the function's timestamp selector, and refuses a timestamp option then", () => {
    const times: number[] = [];
    const fn = defineFunction<Click, unknown>({ name: "t", input: fromFunction("clicks"), timestamp: (c) => c.at!, process: (ctx) => void times.push(ctx.timestamp) });
    const h = testHarness(fn);
    h.send({ user: "ann", page: "/", at: 1_234 });
    expect(times).toEqual([1_234]);
    expect(() => h.send({ user: "ann", page: "/", at: 1 }, { timestamp: 5 })).toThrow(/timestamp selector/);
  });

  it("stamps a record without a timestamp selector or option with the processing time, as a source message's publish time", () => {
    const times: number[] = [];
    const h = testHarness(keyed({}, (ctx) => void times.push(ctx.timestamp)), { now: 42 });
    h.send({ user: "ann", page: "/" });
    expect(times).toEqual([42]);
  });

  it("refuses a record whose key selector throws or returns no string, naming the dead-letter reason", () => {
    const fn = defineFunction<Click, unknown>({
      name: "strict",
      input: fromFunction("clicks"),
      key: (c) => {
        if (c.user === "") throw new Error("no user");
        return c.user === "?" ? (undefined as unknown as string) : c.user;
      },
      process() {},
    });
    const h = testHarness(fn);
    expect(() => h.send({ user: "", page: "/" })).toThrow(RecordRejectedError);
    try {
      h.send({ user: "", page: "/" });
    } catch (e) {
      expect((e as RecordRejectedError).reason).toBe("key: key selector failed: no user");
      expect((e as Error).message).toMatch(/strict refuses the record \(the runtime would dead-letter it\)/);
    }
    expect(() => h.send({ user: "?", page: "/" })).toThrow(/key selector returned undefined, not a string/);
  });

  it("refuses a record whose timestamp selector throws or gives no finite number", () => {
    const fn = defineFunction<Click, unknown>({ name: "t", input: fromStream("CLICKS"), timestamp: (c) => c.at!, process() {} });
    const h = testHarness(fn);
    expect(() => h.send({ user: "ann", page: "/" })).toThrow(/timestamp: missing is not a finite number/);
    expect(() => h.send({ user: "ann", page: "/", at: NaN })).toThrow(RecordRejectedError);
  });

  it("uses the key option instead of the key selector, and refuses it for a function without one", () => {
    const keys: string[] = [];
    const h = testHarness(keyed({}, (ctx) => void keys.push(ctx.key)));
    h.send({ user: "ann", page: "/" }, { key: "override" });
    expect(keys).toEqual(["override"]);
    const unkeyed = testHarness(defineFunction<Click, unknown>({ name: "u", input: fromStream("CLICKS"), process() {} }));
    expect(() => unkeyed.send({ user: "ann", page: "/" }, { key: "x" })).toThrow(/no key selector/);
  });

  it("surfaces an exception of process as UserFunctionError, keeping what happened before it, as the runtime does", () => {
    const h = testHarness(
      keyed({ n: valueState<number>() }, (ctx, c) => {
        ctx.state.n.set(1);
        ctx.emit("before");
        if (c.page === "/boom") throw new Error("boom");
      }),
    );
    expect(() => h.send({ user: "ann", page: "/boom" })).toThrow(UserFunctionError);
    expect(() => h.send({ user: "ann", page: "/boom" })).toThrow('fn.process failed for key "ann": boom');
    expect(h.state("n", "ann")).toBe(1);
    expect(h.output()).toEqual(["before", "before"]);
  });

  it("gives the function a copy of the record, so the test's object stays as it was", () => {
    const h = testHarness(keyed({}, (_ctx, c) => void ((c as { page: string }).page = "changed")));
    const click = { user: "ann", page: "/" };
    h.send(click);
    expect(click.page).toBe("/");
  });
});

describe("testHarness: keyed state", () => {
  it("keeps state per key and shows it with state() and keys()", () => {
    const h = testHarness(counts);
    for (const user of ["ann", "bob", "ann"]) h.send({ user, page: "/" });
    expect(h.output()).toEqual([
      { user: "ann", n: 1 },
      { user: "bob", n: 1 },
      { user: "ann", n: 2 },
    ]);
    expect(h.state("n", "ann")).toBe(2);
    expect(h.state("n", "bob")).toBe(1);
    expect(h.state("n", "cid")).toBeUndefined();
    expect(h.keys("n")).toEqual(["ann", "bob"]);
  });

  it("is typed by the function's declarations", () => {
    const state = { n: valueState<number>(), seen: mapState<number>(), pages: listState<string>() };
    const h = testHarness(defineFunction<Click, Count, typeof state>({ name: "typed", input: fromFunction("clicks"), key: (c) => c.user, state, process() {} }));
    expectTypeOf(h.output()).toEqualTypeOf<Count[]>();
    expectTypeOf(h.state("n", "ann")).toEqualTypeOf<number | undefined>();
    expectTypeOf(h.state("seen", "ann")).toEqualTypeOf<ReadonlyMap<string, number>>();
    expectTypeOf(h.state("seen", "ann", "/a")).toEqualTypeOf<number | undefined>();
    expectTypeOf(h.state("pages", "ann")).toEqualTypeOf<readonly string[]>();
    expectTypeOf(h.send).parameter(0).toEqualTypeOf<Click>();
  });

  it("shows each kind of state as its handle's get() would return it", () => {
    const state = { seen: mapState<number>(), pages: listState<string>(), total: reducingState<number>((a, b) => a + b) };
    const fn = defineFunction<Click, unknown, typeof state>({
      name: "kinds",
      input: fromFunction("clicks"),
      key: (c) => c.user,
      state,
      process(ctx, c) {
        ctx.state.seen.set(c.page, ctx.timestamp);
        ctx.state.pages.add(c.page);
        ctx.state.total.add(1);
      },
    });
    const h = testHarness(fn);
    h.send({ user: "ann", page: "/a" }, { timestamp: 1 });
    h.send({ user: "ann", page: "/b" }, { timestamp: 2 });
    expect(h.state("seen", "ann")).toEqual(new Map([["/a", 1], ["/b", 2]]));
    expect(h.state("seen", "ann", "/b")).toBe(2);
    expect(h.state("seen", "ann", "/c")).toBeUndefined();
    expect(h.state("pages", "ann")).toEqual(["/a", "/b"]);
    expect(h.state("total", "ann")).toBe(2);
    // Absent state: an empty map and an empty list, like the handles.
    expect(h.state("seen", "bob")).toEqual(new Map());
    expect(h.state("pages", "bob")).toEqual([]);
    expect(() => h.state("pages", "ann", "x" as never)).toThrow(/list state, which has no sub-keys/);
    expect(() => h.state("nope" as "seen", "ann")).toThrow(UndeclaredStateError);
  });

  it("returns copies: changing what state() returned changes nothing in the function", () => {
    const state = { pages: listState<string>() };
    const h = testHarness(defineFunction<Click, unknown, typeof state>({ name: "p", input: fromFunction("clicks"), key: (c) => c.user, state, process: (ctx, c) => ctx.state.pages.add(c.page) }));
    h.send({ user: "ann", page: "/a" });
    (h.state("pages", "ann") as string[]).push("/forged");
    expect(h.state("pages", "ann")).toEqual(["/a"]);
  });

  it("loses a value changed in place without set, as a restarted actor would", () => {
    // The bug: the list is read and pushed to, but never written back.
    const state = { pages: valueState<string[]>() };
    const forgetful = defineFunction<Click, number, typeof state>({
      name: "forgetful",
      input: fromFunction("clicks"),
      key: (c) => c.user,
      state,
      process(ctx, c) {
        const pages = ctx.state.pages.get();
        if (pages === undefined) ctx.state.pages.set([c.page]);
        else pages.push(c.page);
        ctx.emit(ctx.state.pages.get()!.length);
      },
    });
    const h = testHarness(forgetful);
    for (const page of ["/a", "/b", "/c"]) h.send({ user: "ann", page });
    // Within one call the change is visible (2); the next call reads the checkpointed value.
    expect(h.output()).toEqual([1, 2, 2]);
    expect(h.state("pages", "ann")).toEqual(["/a"]);
  });

  it("keeps a value changed in place after set within the same call, as the next checkpoint stores it", () => {
    const state = { pages: valueState<string[]>() };
    const h = testHarness(
      defineFunction<Click, unknown, typeof state>({
        name: "p",
        input: fromFunction("clicks"),
        key: (c) => c.user,
        state,
        process(ctx, c) {
          const pages = ctx.state.pages.get() ?? [];
          ctx.state.pages.set(pages);
          pages.push(c.page);
        },
      }),
    );
    h.send({ user: "ann", page: "/a" });
    h.send({ user: "ann", page: "/b" });
    expect(h.state("pages", "ann")).toEqual(["/a", "/b"]);
  });

  it("gives back what msgpack decodes: a Map put in state returns as a plain object", () => {
    const state = { byPage: valueState<Map<string, number>>() };
    const h = testHarness(
      defineFunction<Click, unknown, typeof state>({
        name: "m",
        input: fromFunction("clicks"),
        key: (c) => c.user,
        state,
        process(ctx, c) {
          const byPage = ctx.state.byPage.get() ?? new Map<string, number>();
          ctx.emit(byPage instanceof Map);
          byPage.set(c.page, 1);
          ctx.state.byPage.set(byPage);
        },
      }),
    );
    h.send({ user: "ann", page: "/a" });
    // The second call reads the stored value: no longer a Map, so `byPage.set` throws.
    expect(() => h.send({ user: "ann", page: "/b" })).toThrow(UserFunctionError);
    expect(h.output()).toEqual([true, false]);
    expect(h.state("byPage", "ann")).toEqual({ "/a": 1 });
  });

  it("holds a map state with an entries selector to the entries it names, as a worker without the key in memory would", () => {
    const seen = mapState<number>({ entries: { process: (c: Click) => [c.page] } });
    // Reads its own page's entry, writes another, then reads that one back: all fine.
    const good = testHarness(
      keyed({ seen }, (ctx, c) => {
        ctx.state.seen.set(c.page, (ctx.state.seen.get(c.page) ?? 0) + 1);
        ctx.state.seen.set("last", 1);
        ctx.state.seen.get("last");
      }),
    );
    good.send({ user: "ann", page: "/a" });
    good.send({ user: "ann", page: "/a" });
    expect(good.state("seen", "ann")).toEqual(new Map([["/a", 2], ["last", 1]]));
    // Reading an entry the selector did not name, or the whole map, is the selector's bug.
    const peeks = testHarness(keyed({ seen }, (ctx) => void ctx.state.seen.get("/other")));
    expect(() => peeks.send({ user: "ann", page: "/a" })).toThrow(UserFunctionError);
    expect(() => peeks.send({ user: "ann", page: "/a" })).toThrow('entry "/other" of map state "seen" for key "ann" was not named by its entries selector');
    const counts = testHarness(keyed({ seen }, (ctx) => void ctx.state.seen.size));
    expect(() => counts.send({ user: "ann", page: "/a" })).toThrow("the whole map of map state");
    // "all" reads the whole map.
    const all = mapState<number>({ entries: { process: () => "all" } });
    const whole = testHarness(keyed({ seen: all }, (ctx, c) => ctx.state.seen.set(c.page, ctx.state.seen.size)));
    whole.send({ user: "ann", page: "/a" });
    whole.send({ user: "ann", page: "/b" });
    expect(whole.state("seen", "ann")).toEqual(new Map([["/a", 0], ["/b", 1]]));
  });

  it("fails with StateEncodingError for a value msgpack cannot encode, where the runtime's checkpoint would fail", () => {
    const h = testHarness(keyed({ v: valueState<unknown>() }, (ctx) => ctx.state.v.set({ s: Symbol("x") })));
    expect(() => h.send({ user: "ann", page: "/" })).toThrow(StateEncodingError);
    expect(() => h.send({ user: "ann", page: "/" })).toThrow(/state "v" of key "ann" cannot be stored as msgpack/);
  });
});

describe("testHarness: timestamps from the future", () => {
  const tenYears = 10 * 365 * 86_400_000;
  const source = (extra: object) =>
    defineFunction<Click, Click>({
      name: "clicks",
      input: fromStream("CLICKS"),
      timestamp: (c) => c.at!,
      watermark: boundedOutOfOrderness(1_000),
      process(ctx, c) {
        ctx.emit(c);
      },
      ...extra,
    });

  it("without a bound, one event ten years ahead makes every later event late", () => {
    const h = testHarness(source({}), { now: 1_000_000 });
    h.send({ user: "ann", page: "/", at: 1_000_000 + tenYears });
    expect(h.watermark).toBe(1_000_000 + tenYears - 1_001);
  });

  it("with maxFutureMs, such an event is refused as too far in the future and the watermark stays", () => {
    const h = testHarness(source({ maxFutureMs: 60_000 }), { now: 1_000_000 });
    h.send({ user: "ann", page: "/", at: 1_000_000 });
    expect(() => h.send({ user: "bob", page: "/", at: 1_000_000 + tenYears })).toThrow(RecordRejectedError);
    try {
      h.send({ user: "bob", page: "/", at: 1_000_000 + tenYears });
    } catch (e) {
      expect((e as RecordRejectedError).reason).toMatch(/^timestamp: too far in the future /);
    }
    h.send({ user: "cy", page: "/", at: 1_060_000 });
    expect(h.output()).toEqual([{ user: "ann", page: "/", at: 1_000_000 }, { user: "cy", page: "/", at: 1_060_000 }]);
    expect(h.watermark).toBe(1_060_000 - 1_001);
  });

  it("with futureTimestamps: clamp, it is kept at processing time plus maxFutureMs", () => {
    const h = testHarness(source({ maxFutureMs: 60_000, futureTimestamps: "clamp" }), { now: 1_000_000 });
    h.send({ user: "bob", page: "/", at: 1_000_000 + tenYears });
    expect(h.emitted()).toEqual([{ value: { user: "bob", page: "/", at: 1_000_000 + tenYears }, timestamp: 1_060_000, key: "" }]);
    expect(h.watermark).toBe(1_060_000 - 1_001);
  });
});

describe("testHarness: event time and windows", () => {
  const perPage = windowed({
    name: "per-page",
    input: fromFunction("clicks"),
    key: (c: Click) => c.page,
    window: tumbling(10_000),
    allowedLatenessMs: 5_000,
    aggregate: { create: () => 0, add: (n: number) => n + 1, result: (n: number) => n },
  });

  it("fires a window when the watermark reaches its last millisecond, not before", () => {
    const h = testHarness(perPage);
    h.send({ user: "ann", page: "/a" }, { timestamp: 1_000 });
    h.send({ user: "bob", page: "/a" }, { timestamp: 9_000 });
    expect(h.timers()).toEqual([
      { domain: "event", timestamp: 9_999, key: "/a", name: "f0" },
      { domain: "event", timestamp: 14_999, key: "/a", name: "c0" },
    ]);
    h.advanceWatermark(9_998);
    expect(h.output()).toEqual([]);
    h.advanceWatermark(9_999);
    expect(h.watermark).toBe(9_999);
    expect(h.emitted()).toEqual([{ value: { key: "/a", start: 0, end: 10_000, value: 2, firing: "on-time" }, timestamp: 9_999, key: "/a" }]);
  });

  it("fires again for a late record within the allowed lateness, and sends later ones to the late side output", () => {
    const h = testHarness(perPage);
    h.send({ user: "ann", page: "/a" }, { timestamp: 1_000 });
    h.advanceWatermark(10_000);
    h.clearOutput();
    h.send({ user: "bob", page: "/a" }, { timestamp: 2_000 });
    expect(h.output()).toEqual([{ key: "/a", start: 0, end: 10_000, value: 2, firing: "late" }]);
    h.advanceWatermark(14_999); // the allowed lateness is over: the window's state is gone
    expect(h.keys("windows")).toEqual([]);
    h.send({ user: "cid", page: "/a" }, { timestamp: 3_000 });
    expect(h.sideOutput("late")).toEqual([{ user: "cid", page: "/a" }]);
    expect(h.emitted("late")).toEqual([{ value: { user: "cid", page: "/a" }, timestamp: 3_000, key: "/a" }]);
  });

  it("never moves the watermark backwards, and ends the input with Infinity", () => {
    const h = testHarness(perPage);
    h.advanceWatermark(5_000);
    h.advanceWatermark(1_000);
    expect(h.watermark).toBe(5_000);
    h.send({ user: "ann", page: "/a" }, { timestamp: 8_000 });
    h.send({ user: "ann", page: "/b" }, { timestamp: 28_000 });
    h.advanceWatermark(Infinity);
    expect(h.output().map((w) => [w.key, w.start])).toEqual([
      ["/a", 0],
      ["/b", 20_000],
    ]);
    expect(h.timers()).toEqual([]);
    expect(h.keys("windows")).toEqual([]);
  });

  it("lets a source with a watermark strategy move its own watermark after every record, as the runtime does", () => {
    const source = defineFunction<Click, Click>({
      name: "clicks",
      input: fromStream("CLICKS"),
      timestamp: (c) => c.at!,
      watermark: boundedOutOfOrderness(3_000),
      process: (ctx, c) => ctx.emit(c),
    });
    const h = testHarness(source);
    expect(h.watermark).toBe(-Infinity);
    h.send({ user: "ann", page: "/", at: 10_000 });
    expect(h.watermark).toBe(6_999);
    h.send({ user: "ann", page: "/", at: 5_000 });
    expect(h.watermark).toBe(6_999);
  });
});

describe("testHarness: processing time", () => {
  /** Sends a reminder one minute (processing time) after a user's first click. */
  const state = { pending: valueState<boolean>() };
  const reminders = defineFunction<Click, string, typeof state>({
    name: "reminders",
    input: fromFunction("clicks"),
    key: (c) => c.user,
    state,
    process(ctx) {
      if (ctx.state.pending.get()) return;
      ctx.state.pending.set(true);
      ctx.timers.registerProcessingTimeTimer(ctx.processingTime + 60_000, "remind");
    },
    onTimer(ctx, timer) {
      ctx.state.pending.clear();
      ctx.emit(`${ctx.key} at ${ctx.processingTime} (${timer.domain} ${timer.name})`);
    },
  });

  it("fires processing-time timers when the clock is advanced to them", () => {
    const h = testHarness(reminders, { now: 1_000 });
    h.send({ user: "ann", page: "/" });
    h.advanceProcessingTime(30_000);
    h.send({ user: "bob", page: "/" });
    h.send({ user: "ann", page: "/" });
    expect(h.timers()).toEqual([
      { domain: "processing", timestamp: 61_000, key: "ann", name: "remind" },
      { domain: "processing", timestamp: 90_000, key: "bob", name: "remind" },
    ]);
    h.advanceProcessingTime(61_000);
    expect(h.processingTime).toBe(61_000);
    expect(h.output()).toEqual(["ann at 61000 (processing remind)"]);
    expect(h.emitted()[0]!.key).toBe("ann");
    h.advanceProcessingTime(100_000);
    expect(h.output()).toEqual(["ann at 61000 (processing remind)", "bob at 100000 (processing remind)"]);
    expect(h.keys("pending")).toEqual([]);
  });

  it("does not let the clock go backwards, and leaves processing-time timers alone when the watermark moves", () => {
    const h = testHarness(reminders, { now: 1_000 });
    h.send({ user: "ann", page: "/" });
    h.advanceWatermark(Infinity);
    expect(h.output()).toEqual([]);
    expect(() => h.advanceProcessingTime(999)).toThrow(/cannot go back/);
  });

  it("surfaces an exception of onTimer as UserFunctionError once every due timer has fired", () => {
    const state = { n: valueState<number>() };
    const fn = defineFunction<Click, string, typeof state>({
      name: "flaky",
      input: fromFunction("clicks"),
      key: (c) => c.user,
      state,
      process: (ctx) => ctx.timers.registerEventTimeTimer(10),
      onTimer(ctx) {
        if (ctx.key === "ann") throw new Error("no");
        ctx.emit(ctx.key);
      },
    });
    const h = testHarness(fn);
    h.send({ user: "ann", page: "/" });
    h.send({ user: "bob", page: "/" });
    expect(() => h.advanceWatermark(10)).toThrow('flaky.onTimer failed for key "ann" at 10: no');
    expect(h.output()).toEqual(["bob"]);
  });
});

describe("testHarness: output", () => {
  it("records main and side output with their event times and the key that emitted them, until cleared", () => {
    const h = testHarness(
      keyed({}, (ctx, c) => {
        ctx.emit(c.page);
        ctx.emit(c.page + "!", 99);
        ctx.sideOutput("audit", { user: c.user });
      }),
    );
    h.send({ user: "ann", page: "/a" }, { timestamp: 7 });
    expect(h.emitted()).toEqual([
      { value: "/a", timestamp: 7, key: "ann" },
      { value: "/a!", timestamp: 99, key: "ann" },
    ]);
    expect(h.sideOutput("audit")).toEqual([{ user: "ann" }]);
    expect(h.sideOutput("other")).toEqual([]);
    h.clearOutput();
    expect(h.output()).toEqual([]);
    expect(h.sideOutput("audit")).toEqual([]);
  });

  it("keeps emitted records as they were when emitted (a msgpack copy, as the next function receives them)", () => {
    const h = testHarness(
      keyed({}, (ctx, c) => {
        const out = { page: c.page, tags: new Set(["x"]) };
        ctx.emit(out);
        out.page = "mutated";
      }),
    );
    h.send({ user: "ann", page: "/a" });
    expect(h.output()).toEqual([{ page: "/a", tags: ["x"] }]);
  });

  it("shows what a sink publishes: the subject and the record as a JSON consumer reads it", () => {
    const sink = defineSink<{ page: string; at: Date }>({ name: "out", input: fromFunction("pages"), subject: (r) => `pages.${r.page}` });
    const h = testHarness(sink);
    h.send({ page: "home", at: new Date(0) });
    expect(h.sinkOutput()).toEqual([{ subject: "pages.home", value: { page: "home", at: "1970-01-01T00:00:00.000Z" } }]);
    expect(() => testHarness(counts).sinkOutput()).toThrow(/counts has no sink/);
  });
});

describe("testHarness: several inputs", () => {
  interface Person {
    readonly id: string;
    readonly name: string;
  }
  interface Order {
    readonly person: string;
    readonly item: string;
  }
  const join = streamJoin({
    name: "orders-with-names",
    left: fromFunction("people"),
    right: fromFunction("orders"),
    leftKey: (p: Person) => p.id,
    rightKey: (o: Order) => o.person,
    output: (p, o) => `${p.name} ordered ${o.item}`,
  });

  it("sends each record on the input given, keyed by that input's key selector", () => {
    const h = testHarness(join);
    h.send({ person: "1", item: "tea" }, { input: 1 });
    h.send({ id: "1", name: "Ann" }, { input: 0 });
    h.send({ person: "1", item: "cake" }, { input: 1 });
    expect(h.output()).toEqual(["Ann ordered tea", "Ann ordered cake"]);
    expect(h.state("right", "1")).toEqual([
      { person: "1", item: "tea" },
      { person: "1", item: "cake" },
    ]);
    expect(() => h.send({ id: "2", name: "Bob" }, { input: 2 })).toThrow("orders-with-names has 2 input(s); there is no input 2");
  });
});

describe("testHarness: one partition of several", () => {
  it("refuses keys that belong to another partition of the function", () => {
    const fn = { ...counts, partitions: 4 };
    const mine = ["a", "b", "c", "d", "e", "f"].find((k) => partitionOf(k, 4) === 2)!;
    const other = ["a", "b", "c", "d", "e", "f"].find((k) => partitionOf(k, 4) !== 2)!;
    const h = testHarness(fn, { partition: 2 });
    h.send({ user: mine, page: "/" });
    expect(h.keys("n")).toEqual([mine]);
    expect(() => h.send({ user: other, page: "/" })).toThrow(`belongs to partition ${partitionOf(other, 4)} of 4, not to partition 2`);
    expect(() => testHarness(fn, { partition: 4 })).toThrow("counts has 4 partition(s); there is no partition 4");
  });
});
