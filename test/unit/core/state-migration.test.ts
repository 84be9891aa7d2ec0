/**
 * Restoring a savepoint into code that declares its state differently: what is kept, migrated,
 * dropped, started empty or refused, and how a partition's entries are rewritten.
 */
import { describe, expect, it } from "vitest";
import { buildJobGraph } from "../../../runtime/core/job-graph.ts";
import { mapEntryKey, parseKvKey, positionKey, stateKey, timerKey, versionsKey, watermarkKey } from "../../../runtime/core/kv-keys.ts";
import { Operator } from "../../../runtime/core/operator.ts";
import type { PartitionExport, SavepointFunction, SavepointManifest } from "../../../runtime/core/savepoint.ts";
import {
  IncompatibleSavepointError,
  migratePartition,
  migrateValue,
  MissingMigrationError,
  planRestore,
  StateMigrationFailedError,
  UnknownStateError,
  type RestoreTarget,
} from "../../../runtime/core/state-migration.ts";
import { decodeValue, encodeValue } from "../../../runtime/core/wire.ts";
import { incompatibility, signatureOf } from "../../../runtime/deploy/deploy.ts";
import { defineFunction, definePipeline, fromFunction, fromStream } from "../../../runtime/sdk/function.ts";
import { InvalidStateDeclarationError, listState, mapState, reducingState, valueState, type StateDeclarations } from "../../../runtime/sdk/state.ts";
import { InvalidWindowSpecError, session, tumbling, windowed, type WindowedSpec } from "../../../runtime/sdk/windows.ts";

const manifestOf = (functions: SavepointFunction[]): SavepointManifest => ({
  format: 1,
  id: "sp-1",
  job: "shop",
  checkpoint: 9,
  generation: 1,
  createdAt: 0,
  functions,
});

/** The saved signature of declarations, as a savepoint records it. */
const saved = (name: string, state: StateDeclarations, partitions = 2): SavepointFunction => ({
  name,
  partitions,
  isSource: false,
  state: Object.fromEntries(Object.entries(state).map(([s, d]) => [s, { kind: d.kind, version: d.version ?? 1 }])),
});
const target = (name: string, state: StateDeclarations, partitions = 2): RestoreTarget => ({ name, partitions, isSource: false, state });

const v = (x: unknown) => encodeValue(x);
const values = (e: PartitionExport) => e.entries.map(([k, b]) => [k, decodeValue(b)]);

describe("planRestore", () => {
  it("keeps states of the same kind and version, and lists what is dropped and what starts empty", () => {
    const old = { n: valueState<number>(), gone: listState<string>() };
    const plan = planRestore(manifestOf([saved("count", old), saved("removed", {})]), [
      target("count", { n: valueState<number>(), fresh: mapState<number>() }),
      target("added", { x: valueState<number>() }),
    ]);
    expect(plan.job).toBe("shop");
    expect([...plan.functions.keys()]).toEqual(["count"]);
    expect(plan.functions.get("count")!.states.get("n")).toMatchObject({ kind: "value", from: 1, to: 1 });
    expect(plan.migrated).toEqual([]);
    expect(plan.droppedFunctions).toEqual(["removed"]);
    expect(plan.droppedStates).toEqual([{ fn: "count", state: "gone" }]);
    expect(plan.emptyFunctions).toEqual(["added"]);
    expect(plan.emptyStates).toEqual([{ fn: "count", state: "fresh" }]);
    expect(plan.skipped).toEqual([]);
  });

  it("plans a migration when the declared version differs and has a migration from the saved one", () => {
    const plan = planRestore(manifestOf([saved("count", { n: valueState<number>() })]), [
      target("count", { n: valueState<{ n: number }>({ version: 3, migrations: { 1: (n: number) => ({ n }) } }) }),
    ]);
    expect(plan.migrated).toEqual([{ fn: "count", state: "n", from: 1, to: 3 }]);
  });

  it("refuses a changed version without a migration, naming job, function, state and both versions", () => {
    const run = () =>
      planRestore(manifestOf([saved("count", { n: valueState<number>({ version: 2 }) })]), [
        target("count", { n: valueState<number>({ version: 3, migrations: { 1: (x: number) => x } }) }),
      ]);
    expect(run).toThrow(IncompatibleSavepointError);
    expect(run).toThrow(/job "shop"/);
    expect(run).toThrow(/function "count"/);
    expect(run).toThrow(/state "n"/);
    expect(run).toThrow(/schema version 2, declared version 3, and there is no migration from version 2/);
  });

  it("refuses a changed kind, a changed partition count and a function that became a source", () => {
    expect(() => planRestore(manifestOf([saved("count", { n: valueState() })]), [target("count", { n: mapState() })])).toThrow(
      /state "n": kind changed from value to map/,
    );
    expect(() => planRestore(manifestOf([saved("count", {}, 4)]), [target("count", {}, 8)])).toThrow(/4 partitions, the job has 8.*eddy state repartition/);
    expect(() => planRestore(manifestOf([saved("count", {})]), [{ ...target("count", {}), isSource: true }])).toThrow(IncompatibleSavepointError);
  });

  it("starts skipped states empty, even incompatible ones, and says why they could not be restored", () => {
    const manifest = manifestOf([saved("count", { n: valueState(), m: valueState({ version: 2 }), k: valueState() })]);
    const plan = planRestore(manifest, [target("count", { n: mapState(), m: valueState({ version: 3 }), k: valueState() })], {
      skip: new Set(["count.n", "count.m", "count.k"]),
    });
    expect(plan.skipped).toEqual([
      { fn: "count", state: "n", reason: expect.stringMatching(/kind changed/) },
      { fn: "count", state: "m", reason: expect.stringMatching(/no migration/) },
      { fn: "count", state: "k" },
    ]);
    expect(plan.functions.get("count")!.states.size).toBe(0);
    const out = migratePartition(plan, { fn: "count", partition: 0, entries: [[stateKey(0, "n", "a"), v(1)], [stateKey(0, "k", "a"), v(2)], [positionKey(0), v(5)]] });
    expect(out.entries.map(([k]) => k)).toEqual([positionKey(0), versionsKey(0)]);
    expect(decodeValue(out.entries[1]![1])).toEqual({}); // no state restored: no versions to record
  });

  it("passes a function's broadcast state through unchanged: it has no schema versions (design note bq)", () => {
    const manifest = manifestOf([saved("count", { n: valueState() })]);
    const plan = planRestore(manifest, [target("count", { n: valueState() })]);
    const broadcast: Array<[string, Uint8Array]> = [["_bc.rules.YQ", v(1)]];
    expect(migratePartition(plan, { fn: "count", partition: 0, entries: [], broadcast }).broadcast).toEqual(broadcast);
    expect(migratePartition(plan, { fn: "count", partition: 0, entries: [] }).broadcast).toBeUndefined();
  });

  it("refuses to skip a state nobody has (a typo would otherwise fail later, or not at all)", () => {
    const manifest = manifestOf([saved("count", { n: valueState() })]);
    expect(() => planRestore(manifest, [target("count", { n: valueState() })], { skip: new Set(["count.nn"]) })).toThrow(UnknownStateError);
    expect(() => planRestore(manifest, [target("count", { n: valueState() })], { skip: new Set(["count"]) })).toThrow(UnknownStateError);
  });
});

describe("migratePartition", () => {
  const timer = timerKey(1, { domain: "event", ts: 99, key: "a", name: "f0" });
  const wm = encodeValue({ out: 5, op: 5, idle: false, ended: false });

  it("migrates values, map entries and list elements; leaves timers, watermark and position byte for byte", () => {
    const old = { total: valueState<number>(), seen: mapState<number>(), log: listState<string>(), sum: reducingState<number>((a, b) => a + b), same: valueState<string>() };
    const now = {
      total: valueState<{ total: number }>({ version: 2, migrations: { 1: (total: number) => ({ total }) } }),
      seen: mapState<{ at: number }>({ version: 2, migrations: { 1: (at: number) => ({ at }) } }),
      log: listState<string>({ version: 2, migrations: { 1: (s: string) => s.toUpperCase() } }),
      sum: reducingState<number>((a, b) => a + b, { version: 2, migrations: { 1: (n: number) => n * 100 } }),
      same: valueState<string>(),
    };
    const plan = planRestore(manifestOf([saved("f", old)]), [target("f", now)]);
    const sameBytes = v("unchanged");
    const exp: PartitionExport = {
      fn: "f",
      partition: 1,
      entries: [
        [stateKey(1, "total", "a"), v(7)],
        [mapEntryKey(1, "seen", "a", "dev1"), v(10)],
        [mapEntryKey(1, "seen", "a", "dev2"), v(20)],
        [stateKey(1, "log", "a"), v(["x", "y"])],
        [stateKey(1, "sum", "a"), v(3)],
        [stateKey(1, "same", "a"), sameBytes],
        [timer, v(null)],
        [watermarkKey(1), wm],
        [positionKey(1), v(41)],
      ],
    };
    const out = migratePartition(plan, exp);
    expect(values(out)).toEqual([
      [stateKey(1, "total", "a"), { total: 7 }],
      [mapEntryKey(1, "seen", "a", "dev1"), { at: 10 }],
      [mapEntryKey(1, "seen", "a", "dev2"), { at: 20 }],
      [stateKey(1, "log", "a"), ["X", "Y"]],
      [stateKey(1, "sum", "a"), 300],
      [stateKey(1, "same", "a"), "unchanged"],
      [timer, null],
      [watermarkKey(1), { out: 5, op: 5, idle: false, ended: false }],
      [positionKey(1), 41],
      [versionsKey(1), expect.any(Object)],
    ]);
    const bytesOf = (k: string) => out.entries.find(([key]) => key === k)![1];
    expect(bytesOf(stateKey(1, "same", "a"))).toBe(sameBytes);
    expect(bytesOf(watermarkKey(1))).toBe(wm);
    const asBytes = (e: PartitionExport) => e.entries.map(([k, b]) => [k, [...b]]);
    expect(asBytes(migratePartition(plan, exp))).toEqual(asBytes(out)); // deterministic
  });

  it("drops a value its migration maps to undefined, and the entries of dropped or unknown states", () => {
    const plan = planRestore(manifestOf([saved("f", { n: valueState<number>(), gone: valueState() })]), [
      target("f", { n: valueState<number>({ version: 2, migrations: { 1: (n: number) => (n < 0 ? undefined : n) } }) }),
    ]);
    const out = migratePartition(plan, {
      fn: "f",
      partition: 0,
      entries: [
        [stateKey(0, "n", "a"), v(-1)],
        [stateKey(0, "n", "b"), v(2)],
        [stateKey(0, "gone", "a"), v(1)],
        [stateKey(0, "older", "a"), v(1)], // left in the bucket by a version before the savepoint's
      ],
    });
    expect(values(out)).toEqual([
      [stateKey(0, "n", "b"), 2],
      [versionsKey(0), { n: 2 }], // the restored values are at the declared versions now
    ]);
  });

  it("names function, state and key when a migration throws", () => {
    const plan = planRestore(manifestOf([saved("f", { n: valueState<number>() })]), [
      target("f", {
        n: valueState<number>({
          version: 2,
          migrations: {
            1: () => {
              throw new Error("boom");
            },
          },
        }),
      }),
    ]);
    const run = () => migratePartition(plan, { fn: "f", partition: 0, entries: [[stateKey(0, "n", "k1"), v(1)]] });
    expect(run).toThrow(StateMigrationFailedError);
    expect(run).toThrow(/function "f", state "n", key "k1": migration from version 1 to 2 failed: boom/);
  });

  it("refuses entries that do not fit the saved declarations or the function", () => {
    const plan = planRestore(manifestOf([saved("f", { n: valueState(), m: mapState() })]), [target("f", { n: valueState(), m: mapState() })]);
    expect(() => migratePartition(plan, { fn: "f", partition: 0, entries: [[mapEntryKey(0, "n", "a", "b"), v(1)]] })).toThrow(/does not fit value state/);
    expect(() => migratePartition(plan, { fn: "f", partition: 0, entries: [[stateKey(0, "m", "a"), v(1)]] })).toThrow(/does not fit map state/);
    expect(() => migratePartition(plan, { fn: "f", partition: 2, entries: [] })).toThrow(/has 2 partitions/);
    expect(() => migratePartition(plan, { fn: "f", partition: 0, entries: [[stateKey(1, "n", "a"), v(1)]] })).toThrow(/unexpected key/);
    expect(() => migratePartition(plan, { fn: "other", partition: 0, entries: [] })).toThrow(RangeError);
  });
});

describe("migrateValue", () => {
  it("returns the value itself when versions agree, else the migration's result", () => {
    const value = { a: 1 };
    expect(migrateValue(valueState({ version: 2 }), 2, value)).toBe(value);
    expect(migrateValue(valueState({ version: 2, migrations: { 1: (x: number) => x + 1 } }), 1, 1)).toBe(2);
    expect(migrateValue(listState({ version: 2, migrations: { 1: (x: number) => (x > 0 ? x : undefined) } }), 1, [1, -1, 2])).toEqual([1, 2]);
    expect(migrateValue(listState({ version: 2, migrations: { 1: () => undefined } }), 1, [1])).toBeUndefined();
  });

  it("throws MissingMigrationError without a migration from the stored version", () => {
    expect(() => migrateValue(valueState({ version: 3, migrations: { 1: (x) => x } }), 2, 1)).toThrow(MissingMigrationError);
    expect(() => migrateValue(valueState(), 2, 1)).toThrow(/no migration from stored version 2/);
  });
});

describe("windowed accumulators", () => {
  interface Ev {
    readonly k: string;
    readonly v: number;
  }
  type Out = { key: string; start: number; value: unknown };
  const base = { name: "w", input: fromFunction("src"), key: (e: Ev) => e.k, output: (key: string, w: { start: number }, value: unknown) => ({ key, start: w.start, value }) };
  const v1 = { create: () => 0, add: (n: number, e: Ev) => n + e.v, merge: (a: number, b: number) => a + b, result: (n: number) => n };
  type Acc2 = { sum: number; count: number };
  const v2 = {
    create: (): Acc2 => ({ sum: 0, count: 0 }),
    add: (a: Acc2, e: Ev): Acc2 => ({ sum: a.sum + e.v, count: a.count + 1 }),
    merge: (a: Acc2, b: Acc2): Acc2 => ({ sum: a.sum + b.sum, count: a.count + b.count }),
    result: (a: Acc2) => a,
  };

  /** Runs records through version 1, exports its partition, restores it into version 2 and fires. */
  function upgrade(window: WindowedSpec<Ev, number, number, Out>["window"]) {
    const oldSpec = windowed<Ev, number, number, Out>({ ...base, window, aggregate: v1 });
    const newSpec = windowed<Ev, Acc2, Acc2, Out>({ ...base, window, aggregate: v2, stateVersion: 2, migrations: { 1: (sum: number) => ({ sum, count: -1 }) } });
    const old = new Operator(oldSpec, { emit: () => undefined, side: () => undefined });
    old.process("a", 1, { k: "a", v: 2 }, 0);
    old.process("a", 3, { k: "a", v: 5 }, 0);
    old.process("b", 12, { k: "b", v: 1 }, 0);
    const entries: Array<[string, Uint8Array]> = [];
    for (const c of old.store.takeDelta()) entries.push([mapEntryKey(0, c.state, c.key, c.subkey!), encodeValue(c.value)]);
    for (const t of old.timers.takeChanges().added) entries.push([timerKey(0, t), encodeValue(null)]);

    const plan = planRestore(manifestOf([saved("w", oldSpec.state!, 1)]), [target("w", newSpec.state!, 1)]);
    expect(plan.migrated).toEqual([{ fn: "w", state: "windows", from: 1, to: 2 }]);
    const migrated = migratePartition(plan, { fn: "w", partition: 0, entries });

    const emitted: Out[] = [];
    const restored = new Operator(newSpec, { emit: (r) => void emitted.push(r as Out), side: () => undefined });
    for (const [key, value] of migrated.entries) {
      const p = parseKvKey(key)!;
      if (p.kind === "state") restored.store.load(p.state, p.key, p.subkey, decodeValue(value));
      if (p.kind === "timer") restored.timers.register(p.timer);
    }
    restored.process("a", 4, { k: "a", v: 10 }, 0);
    restored.advanceWatermark(100, 0);
    return emitted;
  }

  it("migrate the accumulator of every open tumbling window", () => {
    expect(upgrade(tumbling(10))).toEqual([
      { key: "a", start: 0, value: { sum: 17, count: 0 } },
      { key: "b", start: 10, value: { sum: 1, count: -1 } },
    ]);
  });

  it("migrate the accumulator of every open session, keeping its bounds", () => {
    expect(upgrade(session(5))).toEqual([
      { key: "a", start: 1, value: { sum: 17, count: 0 } },
      { key: "b", start: 12, value: { sum: 1, count: -1 } },
    ]);
  });

  it("keep the declaration as it was without stateVersion or migrations", () => {
    // Only the entries selector of grid windows (design note bj): no version, no migrations.
    const { entries, ...rest } = windowed({ ...base, window: tumbling(10), aggregate: v1 }).state!.windows;
    expect(rest).toEqual({ kind: "map" });
    expect(typeof entries?.process).toBe("function");
    expect(() => windowed({ ...base, window: tumbling(10), aggregate: v1, stateVersion: 0 })).toThrow(InvalidWindowSpecError);
    expect(() => windowed({ ...base, window: tumbling(10), aggregate: v1, stateVersion: 2, migrations: { 2: (x: number) => x } })).toThrow(InvalidWindowSpecError);
  });
});

describe("state declarations with migrations", () => {
  it("refuse versions and migrations that could never work", () => {
    expect(() => valueState({ version: 0 })).toThrow(InvalidStateDeclarationError);
    expect(() => valueState({ version: 1.5 })).toThrow(InvalidStateDeclarationError);
    expect(() => valueState({ version: 2, migrations: { 2: (x: number) => x } })).toThrow(/declared version itself/);
    expect(() => mapState({ migrations: { 0: (x: number) => x } })).toThrow(InvalidStateDeclarationError);
    expect(() => listState({ version: 2, migrations: { 1: 5 as unknown as (x: number) => number } })).toThrow(/not a function/);
  });
});

describe("deploying a new schema version over running state", () => {
  const pipeline = (n: StateDeclarations[string]) =>
    definePipeline({
      name: "p",
      functions: [
        defineFunction({ name: "src", input: fromStream("S"), process: () => undefined }),
        defineFunction({ name: "agg", input: fromFunction("src"), key: (r: { k: string }) => r.k, state: { n }, process: () => undefined }),
      ],
    });
  const sig = (n: StateDeclarations[string]) => signatureOf(buildJobGraph(pipeline(n)));

  it("is compatible when the new version migrates from the running one", () => {
    expect(incompatibility(sig(valueState<number>()), sig(valueState<string>({ version: 2, migrations: { 1: String } })))).toBeUndefined();
  });

  it("is not without one, nor back to the old version", () => {
    const v2 = sig(valueState<string>({ version: 3, migrations: { 1: String } }));
    expect(incompatibility(sig(valueState<number>({ version: 2 })), v2)).toBe('function "agg", state "n": schema version 2 -> 3 (no migration)');
    expect(incompatibility(v2, sig(valueState<number>()))).toBe('function "agg", state "n": schema version 3 -> 1 (no migration)');
  });

  it("records the versions migrated from only when there are any", () => {
    expect(sig(valueState()).find((f) => f.name === "agg")!.state.n).toEqual({ kind: "value", version: 1 });
    expect(sig(valueState({ version: 4, migrations: { 3: String, 1: String } })).find((f) => f.name === "agg")!.state.n).toEqual({ kind: "value", version: 4, migratesFrom: [1, 3] });
  });
});
