/**
 * Bootstrapping state (sdk/bootstrap.ts, deploy/bootstrap.ts): a bootstrap module writes new state
 * through the function's own state API, windows included, and the writes it produces — applied to
 * a fresh actor state as the runtime applies writes — make the windows fire like any other.
 */
import { describe, expect, it } from "vitest";
import { Operator } from "../../../runtime/core/operator.ts";
import { applyStateWrite, validateStateWrite } from "../../../runtime/core/state-writes.ts";
import { bootstrapWrites, BootstrapFailedError, parseSource } from "../../../runtime/deploy/bootstrap.ts";
import { defineBootstrap, defineFunction, fromFunction, listState, mapState, session, tumbling, valueState, windowed, type SavepointEntry } from "../../../runtime/sdk/index.ts";

interface View {
  readonly page: string;
  readonly user: string;
  readonly ts: number;
}
interface Acc {
  readonly count: number;
  readonly users: readonly string[];
}

const v2 = windowed<View, Acc, { count: number; distinct: number }>({
  name: "views",
  input: fromFunction("parse"),
  key: (v) => v.page,
  window: tumbling(60_000),
  allowedLatenessMs: 10_000,
  stateVersion: 2,
  aggregate: {
    create: () => ({ count: 0, users: [] }),
    add: (a, v) => ({ count: a.count + 1, users: a.users.includes(v.user) ? a.users : [...a.users, v.user] }),
    result: (a) => ({ count: a.count, distinct: a.users.length }),
  },
});

/** Old savepoint entries: windows of counts, keyed by page, named by their start. */
const old: SavepointEntry[] = [
  { fn: "views", state: "windows", key: "/home", subkey: "60000", value: 3 },
  { fn: "views", state: "windows", key: "/docs", subkey: "120000", value: 5 },
];
const fromCounts = defineBootstrap<SavepointEntry>({
  bootstrap(ctx, e) {
    if (e.state === "windows") ctx.windows.put({ start: Number(e.subkey) }, { count: e.value as number, users: [] });
  },
});

function run(fn: typeof v2, ops: ReturnType<typeof bootstrapWrites>) {
  const out: unknown[] = [];
  const op = new Operator(fn, { emit: (r) => out.push(r), side: () => {} });
  validateStateWrite({ ops }, op.store.declarations);
  applyStateWrite({ ops }, op.store, op.timers);
  return { op, out };
}

describe("bootstrapping window state", () => {
  it("writes window contents with the timers that fire and clean them up", () => {
    const ops = bootstrapWrites(fromCounts, v2, old);
    expect(ops).toContainEqual({ op: "put", state: "windows", key: "/home", subkey: "60000", value: { count: 3, users: [] } });
    expect(ops.filter((o) => o.op === "timer").map((o) => `${o.key} ${(o as { name: string }).name} ${(o as { ts: number }).ts}`).sort()).toEqual([
      "/docs c120000 189999",
      "/docs f120000 179999",
      "/home c60000 129999",
      "/home f60000 119999",
    ]);
  });

  it("makes bootstrapped windows fire normally, with the records that arrive after it counted on top", () => {
    const { op, out } = run(v2, bootstrapWrites(fromCounts, v2, old));
    op.process("/home", 100_000, { page: "/home", user: "ann", ts: 100_000 }, 0);
    op.process("/home", 110_000, { page: "/home", user: "bob", ts: 110_000 }, 0);
    op.advanceWatermark(130_000, 0, (e) => { throw e; });
    expect(out).toEqual([{ key: "/home", start: 60_000, end: 120_000, value: { count: 5, distinct: 2 }, firing: "on-time" }]);
    op.advanceWatermark(200_000, 0, (e) => { throw e; });
    expect(out[1]).toEqual({ key: "/docs", start: 120_000, end: 180_000, value: { count: 5, distinct: 0 }, firing: "on-time" });
    expect(op.store.mapOf("windows", "/home")).toBeUndefined(); // cleaned up after the lateness
  });

  it("writes session windows with their end, and plain state through ctx.state", () => {
    const sessions = windowed<View, number, number>({
      name: "s", input: fromFunction("p"), key: (v) => v.user, window: session(1000),
      aggregate: { create: () => 0, add: (n) => n + 1, merge: (a, b) => a + b, result: (n) => n },
    });
    const ops = bootstrapWrites(defineBootstrap<{ user: string; n: number }>({ key: (r) => r.user, bootstrap: (ctx, r) => ctx.windows.put({ start: 0, end: 500 }, r.n) }), sessions, [{ user: "u", n: 4 }]);
    expect(ops).toContainEqual({ op: "put", state: "windows", key: "u", subkey: "0", value: [500, 4] });
    const counter = defineFunction<{ k: string }, never, { n: ReturnType<typeof valueState<number>> }>({ name: "c", input: fromFunction("p"), key: (r) => r.k, state: { n: valueState<number>() }, process() {} });
    const plain = bootstrapWrites(defineBootstrap<{ k: string; n: number }, { n: ReturnType<typeof valueState<number>> }>({ key: (r) => r.k, bootstrap: (ctx, r) => void ctx.state.n.update((x) => (x ?? 0) + r.n) }), counter as never, [{ k: "a", n: 1 }, { k: "a", n: 2 }]);
    expect(plain).toEqual([{ op: "put", state: "n", key: "a", value: 3 }]);
  });

  it("writes plain values into state with a TTL, for the actor applying them to stamp", () => {
    const ttl = { ms: 1000, time: "event" } as const;
    const rules = defineFunction<{ k: string }, never, { r: ReturnType<typeof mapState<number>>; l: ReturnType<typeof listState<string>> }>({
      name: "rules", input: fromFunction("p"), key: (x) => x.k, state: { r: mapState<number>({ ttl }), l: listState<string>({ ttl }) }, process() {},
    });
    const ops = bootstrapWrites(
      defineBootstrap<{ k: string }, { r: ReturnType<typeof mapState<number>>; l: ReturnType<typeof listState<string>> }>({ key: (x) => x.k, bootstrap: (ctx) => { ctx.state.r.set("x", 1); ctx.state.l.add("y"); } }),
      rules as never,
      [{ k: "a" }],
    );
    expect(ops.sort((a, b) => (a.op === "timer" || b.op === "timer" ? 0 : a.state.localeCompare(b.state)))).toEqual([
      { op: "put", state: "l", key: "a", value: ["y"] },
      { op: "put", state: "r", key: "a", subkey: "x", value: 1 },
    ]);
  });

  it("names the item that failed, and refuses windows on a function without them", () => {
    const counter = defineFunction<{ k: string }, never>({ name: "c", input: fromFunction("p"), key: (r) => r.k, process() {} });
    expect(() => bootstrapWrites(fromCounts, counter as never, old)).toThrow(BootstrapFailedError);
    expect(() => bootstrapWrites(fromCounts, counter as never, old)).toThrow(/item 1 \(key "\/home"\): function "c" is not a windowed\(\) function/);
    expect(() => bootstrapWrites(fromCounts, v2, [{ nokey: 1 }])).toThrow(/key is missing/);
  });

  it("takes its input from a savepoint, a file or a stream", () => {
    expect(parseSource("savepoint:sp-1")).toEqual({ kind: "savepoint", id: "sp-1" });
    expect(parseSource("file:/tmp/x.ndjson")).toEqual({ kind: "file", path: "/tmp/x.ndjson" });
    expect(parseSource("stream:OLD")).toEqual({ kind: "stream", name: "OLD" });
    expect(() => parseSource("kafka:x")).toThrow(/savepoint:<id>, file:<path.ndjson> or stream:<name>/);
    expect(() => parseSource("file:")).toThrow();
  });
});
