/**
 * The accuracy generator (test/support/accuracy-generator.ts) makes the messy inputs issue 15's
 * comparisons need, and its `lateness` loop says which records the runtime's bounded watermark
 * makes late. Hand-computed cases pin the loop down, a cross-check against the runtime's own
 * generator and tracker keeps it honest, and the generated data is checked for the mess it
 * promises (out of order, duplicates, late records, interval-bound cases, delete versions,
 * updates without meaningful change).
 */
import { describe, expect, it } from "vitest";
import { seededRandom } from "../../../functions/seeded-random.ts";
import { createWatermarkGenerator, WatermarkTracker } from "../../../runtime/core/watermarks.ts";
import {
  accuracyInputs,
  DAY_MS,
  deliver,
  deliverOplog,
  generateLogistics,
  generateOplog,
  generateOrders,
  generateUserLevels,
  interleave,
  lateness,
  onTime,
  type OplogRow,
} from "../../support/accuracy-generator.ts";

const I = -Infinity;

describe("lateness", () => {
  it("one input: the watermark is max ts - bound - 1 after each record, and a record at or below it on arrival is late", () => {
    const records = [10, 5, 8, 7, 12, 9, 10].map((ts) => ({ ts }));
    const l = lateness(records, { boundMs: 2 });
    expect(l.late).toEqual([false, true, false, true, false, true, false]);
    expect(l.before).toEqual([I, 7, 7, 7, 7, 9, 9]);
    expect(l.after).toEqual([7, 7, 7, 7, 9, 9, 9]);
    expect(onTime(records, l).map((r) => r.ts)).toEqual([10, 8, 12, 10]);
  });

  it("two inputs: the minimum of both, held at -Infinity until both have sent", () => {
    const records = [
      { side: "left" as const, ts: 10 },
      { side: "left" as const, ts: 3 }, // the right input has sent nothing: on time
      { side: "right" as const, ts: 5 }, // min(9, 4) = 4
      { side: "left" as const, ts: 4 }, // 4 <= 4: late
      { side: "right" as const, ts: 20 }, // min(9, 19) = 9
      { side: "right" as const, ts: 9 }, // 9 <= 9: late
      { side: "left" as const, ts: 12 }, // min(11, 19) = 11
    ];
    const l = lateness(records, { boundMs: 0 });
    expect(l.late).toEqual([false, false, false, true, false, true, false]);
    expect(l.after).toEqual([I, I, 4, 4, 9, 9, 11]);
    // A bound per input: the right input's 5 then holds the watermark at -1.
    expect(lateness(records, { boundMs: [0, 5] }).after).toEqual([I, I, -1, -1, 9, 9, 11]);
  });

  it("counts a single-input stream of sided records as two inputs unless told otherwise", () => {
    const records = [{ side: "left" as const, ts: 10 }, { side: "left" as const, ts: 1 }];
    expect(lateness(records, { boundMs: 0 }).late).toEqual([false, false]);
    expect(lateness(records, { boundMs: 0, inputs: 1 }).late).toEqual([false, true]);
  });

  it("agrees with the runtime's bounded generator per input and its watermark tracker over them", () => {
    for (let seed = 1; seed <= 20; seed++) {
      const random = seededRandom(seed);
      const bounds = [Math.floor(random() * 5), Math.floor(random() * 5)];
      const records = Array.from({ length: 60 }, () => ({ side: random() < 0.5 ? ("left" as const) : ("right" as const), ts: Math.floor(random() * 40) }));
      const generators = bounds.map((b) => createWatermarkGenerator({ kind: "bounded", maxOutOfOrdernessMs: b }));
      const tracker = new WatermarkTracker(["left", "right"]);
      const late: boolean[] = [];
      for (const r of records) {
        late.push(r.ts <= tracker.current());
        const input = r.side === "left" ? 0 : 1;
        generators[input]!.onEvent(r.ts, 0);
        tracker.update(r.side, generators[input]!.current());
      }
      expect(lateness(records, { boundMs: bounds }).late, `seed ${seed}`).toEqual(late);
    }
  });

  it("refuses records without a finite time", () => {
    expect(() => lateness([{}], { boundMs: 1 })).toThrow(/finite ts/);
  });
});

describe("delivery", () => {
  it("is determined by the seed", () => {
    expect(accuracyInputs(7)).toEqual(accuracyInputs(7));
    expect(accuracyInputs(7)).not.toEqual(accuracyInputs(8));
  });

  it("delivers out of order, some records twice, in arrival order; with a bound >= maxDelayMs only held-back records are late", () => {
    const random = seededRandom(3);
    const records = Array.from({ length: 2000 }, (_, i) => ({ value: i, ts: i * 10 }));
    const delivered = deliver(random, records, { maxDelayMs: 100, lateFraction: 0.05, lateDelayMs: 1000, duplicateFraction: 0.05 });
    const ats = delivered.map((d) => d.at);
    expect(ats).toEqual([...ats].sort((a, b) => a - b));
    expect(delivered.filter((d) => d.duplicate).length).toBeGreaterThan(50);
    expect(delivered.filter((d) => !d.duplicate).map((d) => d.value).sort((a, b) => a - b)).toEqual(records.map((r) => r.value));
    expect(delivered.some((d, i) => i > 0 && d.ts < delivered[i - 1]!.ts)).toBe(true);
    const l = lateness(delivered, { boundMs: 100 });
    const late = delivered.filter((_, i) => l.late[i]);
    expect(late.length).toBeGreaterThan(20);
    for (const d of late) expect(d.at - d.ts).toBeGreaterThan(100);
  });

  it("interleaves two inputs by arrival time, left first on a tie", () => {
    const left = [{ value: "l1", ts: 1, at: 5 }, { value: "l2", ts: 2, at: 9 }];
    const right = [{ value: "r1", ts: 0, at: 5 }, { value: "r2", ts: 3, at: 7 }];
    expect(interleave(left, right).map((r) => `${r.side}:${r.value}`)).toEqual(["left:l1", "right:r1", "right:r2", "left:l2"]);
  });
});

describe("orders, logistics and user levels", () => {
  const random = seededRandom(11);
  const orders = generateOrders(random, { count: 300, users: 10 });
  const logistics = generateLogistics(random, orders);
  const byId = new Map(orders.map((o) => [o.orderId, o]));

  it("gives orders in event-time order, several per user", () => {
    expect(orders.map((o) => o.orderTime)).toEqual([...orders.map((o) => o.orderTime)].sort((a, b) => a - b));
    expect(new Set(orders.map((o) => o.userId)).size).toBeLessThanOrEqual(10);
  });

  it("gives logistics events within a day, on both bounds, just outside, none for some orders, and some for unknown orders", () => {
    const offsets = logistics.filter((e) => byId.has(e.orderId)).map((e) => e.eventTime - byId.get(e.orderId)!.orderTime);
    expect(offsets.some((d) => d === 0)).toBe(true);
    expect(offsets.some((d) => d === DAY_MS)).toBe(true);
    expect(offsets.some((d) => d > DAY_MS)).toBe(true);
    expect(offsets.some((d) => d < 0)).toBe(true);
    expect(offsets.filter((d) => d > 0 && d < DAY_MS).length).toBeGreaterThan(offsets.length / 2);
    const withEvents = new Set(logistics.map((e) => e.orderId));
    expect(orders.filter((o) => !withEvents.has(o.orderId)).length).toBeGreaterThan(10);
    expect(logistics.some((e) => !byId.has(e.orderId))).toBe(true);
  });

  it("gives user-level versions with inserts first, updates, delete versions and equal version times", () => {
    const levels = generateUserLevels(seededRandom(5), { users: 40 });
    expect(levels.some((c) => c.rowKind === "-D")).toBe(true);
    expect(levels.some((c) => c.rowKind === "+U")).toBe(true);
    const firstKind = new Map<string, string>();
    for (const c of levels) if (!firstKind.has(c.row.userId)) firstKind.set(c.row.userId, c.rowKind);
    expect([...firstKind.values()].every((k) => k === "+I")).toBe(true);
    const seen = new Set<string>();
    let tie = false;
    for (const c of levels) {
      const id = `${c.row.userId}@${c.row.validFrom}`;
      if (seen.has(id)) tie = true;
      seen.add(id);
    }
    expect(tie).toBe(true);
  });
});

describe("oplog", () => {
  const oplog = generateOplog(seededRandom(13), { rows: 40 });

  it("has strictly increasing commit times and the contract's fields", () => {
    for (let i = 1; i < oplog.length; i++) expect(oplog[i]!.commit_ts).toBeGreaterThan(oplog[i - 1]!.commit_ts);
    for (const op of oplog) {
      expect(op.op_type === "I" ? op.before === null && op.after !== null : op.op_type === "D" ? op.before !== null && op.after === null : op.before !== null && op.after !== null).toBe(true);
    }
  });

  it("names in changed_fields exactly the fields an update changed, and has updates that change nothing meaningful", () => {
    const updates = oplog.filter((op) => op.op_type === "U");
    for (const op of updates) {
      const changed = (Object.keys(op.after!) as (keyof OplogRow)[]).filter((f) => op.after![f] !== op.before![f]);
      expect(op.changed_fields).toEqual(changed);
    }
    expect(updates.some((op) => op.changed_fields.length === 0)).toBe(true);
    expect(updates.some((op) => op.changed_fields.length === 1 && op.changed_fields[0] === "updated_at")).toBe(true);
    expect(updates.some((op) => op.changed_fields.includes("status") || op.changed_fields.includes("amount"))).toBe(true);
  });

  it("chains before to the previous after of the same row, through deletes and reinserts", () => {
    const current = new Map<string, unknown>();
    for (const op of oplog) {
      const id = (op.after ?? op.before)!.id;
      expect(op.before ?? null).toEqual(current.get(id) ?? null);
      if (op.after === null) current.delete(id);
      else current.set(id, op.after);
    }
    expect(oplog.some((op) => op.op_type === "D")).toBe(true);
  });

  it("is delivered at least once, out of order across rows but in commit order per row", () => {
    const delivered = deliverOplog(seededRandom(2), oplog, { duplicateFraction: 0.1 });
    expect(delivered.filter((d) => d.duplicate).length).toBeGreaterThan(0);
    expect(delivered.some((d, i) => i > 0 && d.ts < delivered[i - 1]!.ts)).toBe(true);
    const last = new Map<string, number>();
    for (const d of delivered.filter((x) => !x.duplicate)) {
      const id = (d.value.after ?? d.value.before)!.id;
      expect(d.ts).toBeGreaterThan(last.get(id) ?? -Infinity);
      last.set(id, d.ts);
    }
  });
});
