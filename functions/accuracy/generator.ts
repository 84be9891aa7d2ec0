/**
 * Seeded messy inputs for issue 15's accuracy scenario and its SQL-oracle comparisons: orders,
 * logistics events up to (and a little beyond) a day after their order, user-level versions
 * (with deletes and equal version times), and a database oplog (inserts, updates that change
 * nothing meaningful, deletes) — delivered out of order, partly twice and partly late. Everything
 * comes from `seededRandom`, so a failing case is reproduced from its seed.
 *
 * Delivery model: the processing clock runs with event time; a record arrives at `at = ts + d`
 * with `d` uniform in `[0, maxDelayMs]`, except a `lateFraction` of records that arrive a further
 * `1..lateDelayMs` later, and a `duplicateFraction` delivered a second time with their own delay.
 * With a watermark bound of at least `maxDelayMs`, only held-back records can be late (every
 * record seen before has `ts <= at`, so the watermark stays below `at - bound`); held-back ones
 * are late only when something newer arrived before them.
 * Records are returned in arrival order (`at`), the array index being the order the oracle and a
 * harness use. It lives with the scenario (functions/accuracy/) and is re-exported for the
 * oracle's tests by test/support/accuracy-generator.ts. Whether a record is late is not decided here but by `lateness`, the same plain loop
 * the runtime's bounded-out-of-orderness watermark runs (runtime/core/watermarks.ts).
 */
import { seededRandom } from "../seeded-random.ts";
import type { Change } from "../../runtime/spec/changelog.ts";

/** One record of one input, in arrival order: the shape test/support/sql-oracle.ts reads too. */
export interface OracleRecord<T> {
  readonly value: T | Change<T>;
  readonly ts?: number;
}

/** One record of a two-input function, in arrival order; `left` is input 0 (as the SQL oracle reads it). */
export type SidedRecord<L, R> =
  | { readonly side: "left"; readonly value: L | Change<L>; readonly ts?: number }
  | { readonly side: "right"; readonly value: R | Change<R>; readonly ts?: number };

export const DAY_MS = 86_400_000;
export const HOUR_MS = 3_600_000;
const MINUTE_MS = 60_000;

type Random = () => number;
const int = (random: Random, lo: number, hi: number): number => lo + Math.floor(random() * (hi - lo + 1));
const pick = <T>(random: Random, xs: readonly T[]): T => xs[Math.floor(random() * xs.length)]!;
const chance = (random: Random, p: number): boolean => random() < p;

// ---------------------------------------------------------------------------------------------
// Lateness

/** What a bounded-out-of-orderness watermark makes of an input sequence. */
export interface Lateness {
  /** Whether record i was late: `ts <= before[i]` (it goes to the late side output). */
  readonly late: readonly boolean[];
  /** The actor's watermark when record i arrives (`-Infinity` before any evidence). */
  readonly before: readonly number[];
  /** The actor's watermark after record i (`before[i + 1]`): the `watermarks` the oracles take. */
  readonly after: readonly number[];
}

export interface LatenessOptions {
  /** `maxOutOfOrdernessMs` of each input's bounded watermark (one number for all inputs, or one per input). */
  readonly boundMs: number | readonly number[];
  /** How many inputs feed the actor (default 2 when any record has a `side`, else 1); an input that never sends holds the watermark at -Infinity. */
  readonly inputs?: number;
}

/**
 * Which records a bounded-out-of-orderness watermark makes late, by a plain loop: each input's
 * watermark is `max ts seen on it - bound - 1` (`-Infinity` before its first record; it never goes
 * back), the actor's is the minimum over its inputs (the `WatermarkTracker` with no idle input),
 * and a record is late when its time is `<=` the actor's watermark as it arrives — the watermark
 * moves only after the record (a record never makes itself late). A record's input is
 * `input`, else 1 for `side: "right"`, else 0. Every record (late or duplicate) is seen by its
 * input's generator, as the source sees every message.
 *
 * It models one watermark generator per input that passes its watermark on at once; in a
 * deployment watermarks travel behind records, so fewer records may turn out late there. To
 * reproduce it in a harness, call `advanceWatermark(before[i])` before sending record i.
 */
export function lateness(records: readonly { readonly ts?: number; readonly side?: "left" | "right"; readonly input?: number }[], options: LatenessOptions): Lateness {
  const inputOf = (r: (typeof records)[number]): number => r.input ?? (r.side === "right" ? 1 : 0);
  const inputs = options.inputs ?? (records.some((r) => r.side !== undefined) ? 2 : 1);
  const bounds = typeof options.boundMs === "number" ? Array.from({ length: inputs }, () => options.boundMs as number) : [...options.boundMs];
  if (bounds.length !== inputs || bounds.some((b) => !Number.isFinite(b) || b < 0)) throw new RangeError(`need ${inputs} bound(s) >= 0`);
  const maxTs = Array.from({ length: inputs }, () => -Infinity);
  const late: boolean[] = [];
  const before: number[] = [];
  const after: number[] = [];
  let combined = -Infinity;
  records.forEach((r, i) => {
    const ts = r.ts;
    const input = inputOf(r);
    if (typeof ts !== "number" || !Number.isFinite(ts)) throw new RangeError(`record ${i} needs a finite ts`);
    if (!Number.isInteger(input) || input < 0 || input >= inputs) throw new RangeError(`record ${i}: input ${input} of ${inputs}`);
    before.push(combined);
    late.push(ts <= combined);
    if (ts > maxTs[input]!) maxTs[input] = ts;
    let min = Infinity;
    for (let j = 0; j < inputs; j++) min = Math.min(min, maxTs[j]! - bounds[j]! - 1);
    combined = Math.max(combined, min);
    after.push(combined);
  });
  return { late, before, after };
}

/** The records that were not late, in their order. */
export function onTime<T>(records: readonly T[], l: Lateness): T[] {
  return records.filter((_, i) => !l.late[i]);
}

// ---------------------------------------------------------------------------------------------
// Delivery

/** A record as delivered: its value, event time and arrival (processing) time. */
export interface Delivered<T> extends OracleRecord<T> {
  readonly value: T;
  readonly ts: number;
  /** When it arrived (processing time, epoch ms); the array is sorted by it. */
  readonly at: number;
  /** Whether this is the second delivery of a record. */
  readonly duplicate: boolean;
}

export interface DeliveryOptions {
  /** Largest delay of an ordinary record (default one minute). */
  readonly maxDelayMs?: number;
  /** Share of records held back further (default 0.05). */
  readonly lateFraction?: number;
  /** Largest extra delay of a held-back record (default one hour). */
  readonly lateDelayMs?: number;
  /** Share of records delivered twice (default 0.05). */
  readonly duplicateFraction?: number;
}

function delay(random: Random, o: DeliveryOptions): number {
  const max = o.maxDelayMs ?? MINUTE_MS;
  const d = int(random, 0, max);
  return chance(random, o.lateFraction ?? 0.05) ? max + int(random, 1, o.lateDelayMs ?? HOUR_MS) : d;
}

/**
 * Delivers `records` (with their event times) out of order, some late, some twice; returns them
 * in arrival order (ties: generation order, first deliveries first).
 */
export function deliver<T>(random: Random, records: readonly { readonly value: T; readonly ts: number }[], options: DeliveryOptions = {}): Delivered<T>[] {
  const out: (Delivered<T> & { n: number })[] = [];
  records.forEach((r, n) => {
    out.push({ value: r.value, ts: r.ts, at: r.ts + delay(random, options), duplicate: false, n });
    if (chance(random, options.duplicateFraction ?? 0.05)) out.push({ value: r.value, ts: r.ts, at: r.ts + delay(random, options), duplicate: true, n: n + records.length });
  });
  out.sort((a, b) => a.at - b.at || a.n - b.n);
  return out.map(({ n: _n, ...d }) => d);
}

/** Two delivered inputs interleaved by arrival time (ties: left first), as one actor receives them. */
export function interleave<L, R>(
  left: readonly { readonly value: L | Change<L>; readonly ts: number; readonly at: number }[],
  right: readonly { readonly value: R | Change<R>; readonly ts: number; readonly at: number }[],
): (SidedRecord<L, R> & { readonly ts: number; readonly at: number })[] {
  const out: (SidedRecord<L, R> & { readonly ts: number; readonly at: number })[] = [];
  let i = 0;
  let j = 0;
  while (i < left.length || j < right.length) {
    if (j >= right.length || (i < left.length && left[i]!.at <= right[j]!.at)) {
      const l = left[i++]!;
      out.push({ side: "left", value: l.value, ts: l.ts, at: l.at });
    } else {
      const r = right[j++]!;
      out.push({ side: "right", value: r.value, ts: r.ts, at: r.at });
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Orders, logistics, user levels

export interface Order {
  readonly orderId: string;
  readonly userId: string;
  readonly amount: number;
  /** Event time. */
  readonly orderTime: number;
}

export interface LogisticsEvent {
  readonly eventId: string;
  readonly orderId: string;
  readonly status: "picked" | "shipped" | "in-transit" | "delivered";
  /** Event time. */
  readonly eventTime: number;
}

export interface UserLevel {
  readonly userId: string;
  readonly level: "bronze" | "silver" | "gold" | "platinum";
  /** Version time (event time). */
  readonly validFrom: number;
}

export interface OrderOptions {
  readonly count?: number;
  readonly users?: number;
  /** Event time of the first order (default 2026-01-01T00:00Z). */
  readonly startMs?: number;
  /** Orders spread over this span (default two days). */
  readonly spanMs?: number;
}

const START = Date.UTC(2026, 0, 1);

/** Orders in event-time order, over `users` users (a few hot ones). Several orders can share a time. */
export function generateOrders(random: Random, o: OrderOptions = {}): Order[] {
  const count = o.count ?? 200;
  const users = o.users ?? 20;
  const start = o.startMs ?? START;
  const span = o.spanMs ?? 2 * DAY_MS;
  const times = Array.from({ length: count }, () => start + int(random, 0, span)).sort((a, b) => a - b);
  return times.map((orderTime, i) => ({
    orderId: `o${i}`,
    // Squaring skews towards low ids: some users order often (many-to-many per user).
    userId: `u${Math.floor(random() ** 2 * users)}`,
    amount: int(random, 1, 500),
    orderTime,
  }));
}

/**
 * Logistics events for `orders`, in event-time order: most orders get 1–3 events within a day of
 * the order (`[orderTime, orderTime + DAY]`), some exactly on the bounds, some just outside (a
 * minute before, or up to an hour after the day), and about 15 % none at all (left-padded rows).
 * A few events name an order that does not exist (right-padded rows of an outer join).
 */
export function generateLogistics(random: Random, orders: readonly Order[], withinMs = DAY_MS): LogisticsEvent[] {
  const statuses = ["picked", "shipped", "in-transit", "delivered"] as const;
  const events: LogisticsEvent[] = [];
  for (const order of orders) {
    if (chance(random, 0.15)) continue;
    const n = int(random, 1, 3);
    for (let k = 0; k < n; k++) {
      const r = random();
      const offset =
        r < 0.05 ? 0 : r < 0.1 ? withinMs : r < 0.17 ? withinMs + int(random, 1, HOUR_MS) : r < 0.2 ? -int(random, 1, MINUTE_MS) : int(random, 0, withinMs);
      events.push({ eventId: `${order.orderId}-e${k}`, orderId: order.orderId, status: statuses[Math.min(k, 3)]!, eventTime: order.orderTime + offset });
    }
  }
  const orphans = Math.max(1, Math.floor(orders.length / 50));
  const first = orders[0]?.orderTime ?? START;
  for (let k = 0; k < orphans; k++) events.push({ eventId: `orphan-e${k}`, orderId: `missing-${k}`, status: "picked", eventTime: first + int(random, 0, DAY_MS) });
  return events.sort((a, b) => a.eventTime - b.eventTime);
}

export interface UserLevelOptions {
  readonly users?: number;
  readonly startMs?: number;
  readonly spanMs?: number;
}

/**
 * User-level versions as a changelog in version-time order: each user gets 0–4 versions (`+I`
 * first, then `+U`), some starting after the user's first orders (no version yet: padded or
 * dropped), about 10 % followed by a delete version (`-D`), and some with the same version time
 * as the previous one (the later arrival must win). A few users get none.
 */
export function generateUserLevels(random: Random, o: UserLevelOptions = {}): Change<UserLevel>[] {
  const users = o.users ?? 20;
  const start = o.startMs ?? START;
  const span = o.spanMs ?? 2 * DAY_MS;
  const levels = ["bronze", "silver", "gold", "platinum"] as const;
  const out: Change<UserLevel>[] = [];
  for (let u = 0; u < users; u++) {
    const userId = `u${u}`;
    const n = chance(random, 0.1) ? 0 : int(random, 1, 4);
    let t = start - HOUR_MS + int(random, 0, Math.floor(span / 3));
    for (let k = 0; k < n; k++) {
      if (k > 0 && !chance(random, 0.15)) t += int(random, 1, Math.floor(span / 3));
      out.push({ rowKind: k === 0 ? "+I" : "+U", row: { userId, level: pick(random, levels), validFrom: t } });
    }
    if (n > 0 && chance(random, 0.1)) {
      t += int(random, 1, Math.floor(span / 3));
      out.push({ rowKind: "-D", row: { userId, level: out[out.length - 1]!.row.level, validFrom: t } });
    }
  }
  return out.sort((a, b) => a.row.validFrom - b.row.validFrom);
}

// ---------------------------------------------------------------------------------------------
// Database oplog

/** A table row in the oplog. `updated_at` changes on every write; the other fields are what matters. */
export interface OplogRow {
  readonly id: string;
  readonly status: "new" | "paid" | "shipped" | "closed";
  readonly amount: number;
  readonly updated_at: number;
}

/** One oplog record, in the contract's shape (section 1). */
export interface OplogRecord {
  readonly op_type: "I" | "U" | "D";
  readonly table: string;
  readonly commit_ts: number;
  readonly changed_fields: readonly string[];
  readonly before: OplogRow | null;
  readonly after: OplogRow | null;
}

export interface OplogOptions {
  /** Distinct rows per table (default 30). */
  readonly rows?: number;
  readonly tables?: readonly string[];
  readonly startMs?: number;
  readonly spanMs?: number;
}

/**
 * A database oplog in commit order: every row is inserted, then updated a few times, and about
 * 15 % are deleted (some reinserted afterwards). A third of the updates change nothing
 * meaningful: only `updated_at` (`changed_fields: ["updated_at"]`) or nothing at all
 * (`changed_fields: []`). `commit_ts` strictly increases, so `table`, `id` and `commit_ts` name
 * one operation.
 */
export function generateOplog(random: Random, o: OplogOptions = {}): OplogRecord[] {
  const rows = o.rows ?? 30;
  const tables = o.tables ?? ["orders", "payments"];
  const start = o.startMs ?? START;
  const span = o.spanMs ?? HOUR_MS;
  const statuses = ["new", "paid", "shipped", "closed"] as const;
  type Op = { t: number; table: string; id: string; kind: "I" | "U" | "D"; nothing: boolean };
  const ops: Op[] = [];
  for (const table of tables) {
    for (let r = 0; r < rows; r++) {
      const id = `${table}-${r}`;
      let t = start + int(random, 0, Math.floor(span / 2));
      ops.push({ t, table, id, kind: "I", nothing: false });
      const updates = int(random, 0, 4);
      for (let k = 0; k < updates; k++) ops.push({ t: (t += int(random, 1, Math.floor(span / 10))), table, id, kind: "U", nothing: chance(random, 1 / 3) });
      if (chance(random, 0.15)) {
        ops.push({ t: (t += int(random, 1, Math.floor(span / 10))), table, id, kind: "D", nothing: false });
        if (chance(random, 0.3)) ops.push({ t: (t += int(random, 1, Math.floor(span / 10))), table, id, kind: "I", nothing: false });
      }
    }
  }
  ops.sort((a, b) => a.t - b.t);
  const current = new Map<string, OplogRow>();
  let lastTs = -Infinity;
  return ops.map((op) => {
    const commit_ts = (lastTs = Math.max(op.t, lastTs + 1));
    const before = current.get(op.id) ?? null;
    if (op.kind === "I") {
      const after: OplogRow = { id: op.id, status: "new", amount: int(random, 1, 500), updated_at: commit_ts };
      current.set(op.id, after);
      return { op_type: "I", table: op.table, commit_ts, changed_fields: ["id", "status", "amount", "updated_at"], before: null, after };
    }
    if (op.kind === "D") {
      current.delete(op.id);
      return { op_type: "D", table: op.table, commit_ts, changed_fields: [], before, after: null };
    }
    const old = before!;
    const touchOnly = op.nothing && chance(random, 0.5);
    const after: OplogRow = op.nothing
      ? { ...old, updated_at: touchOnly ? commit_ts : old.updated_at }
      : chance(random, 0.5)
        ? { ...old, status: pick(random, statuses.filter((s) => s !== old.status)), updated_at: commit_ts }
        : { ...old, amount: old.amount + int(random, 1, 50), updated_at: commit_ts };
    current.set(op.id, after);
    const changed = (Object.keys(after) as (keyof OplogRow)[]).filter((f) => after[f] !== old[f]);
    return { op_type: "U", table: op.table, commit_ts, changed_fields: changed, before: old, after };
  });
}

/**
 * Delivers an oplog at least once and out of order across rows, but in commit order per row (a
 * change-data-capture source keeps per-key order): a row's later operation never overtakes an
 * earlier one, while a duplicate (redelivery) may arrive any time after its first delivery.
 * Event time is `commit_ts`.
 */
export function deliverOplog(random: Random, oplog: readonly OplogRecord[], options: DeliveryOptions = {}): Delivered<OplogRecord>[] {
  const lastAt = new Map<string, number>();
  const out: (Delivered<OplogRecord> & { n: number })[] = [];
  oplog.forEach((op, n) => {
    const id = `${op.table}:${(op.after ?? op.before)?.id}`;
    const at = Math.max(op.commit_ts + delay(random, options), lastAt.get(id) ?? -Infinity);
    lastAt.set(id, at);
    out.push({ value: op, ts: op.commit_ts, at, duplicate: false, n });
    if (chance(random, options.duplicateFraction ?? 0.05)) out.push({ value: op, ts: op.commit_ts, at: at + int(random, 0, options.maxDelayMs ?? MINUTE_MS), duplicate: true, n: n + oplog.length });
  });
  out.sort((a, b) => a.at - b.at || a.n - b.n);
  return out.map(({ n: _n, ...d }) => d);
}

// ---------------------------------------------------------------------------------------------
// The scenario's inputs

export interface AccuracyInputs {
  readonly orders: readonly Order[];
  readonly logistics: readonly LogisticsEvent[];
  readonly userLevels: readonly Change<UserLevel>[];
  readonly oplog: readonly OplogRecord[];
  /** Orders as delivered (event time `orderTime`). */
  readonly deliveredOrders: readonly Delivered<Order>[];
  /** Orders (left) and logistics events (right) as the interval join receives them. */
  readonly ordersAndLogistics: readonly (SidedRecord<Order, LogisticsEvent> & { readonly ts: number; readonly at: number })[];
  /** Orders (left) and user-level versions (right) as the temporal join receives them. */
  readonly ordersAndLevels: readonly (SidedRecord<Order, UserLevel> & { readonly ts: number; readonly at: number })[];
  /** The oplog as delivered (event time `commit_ts`). */
  readonly deliveredOplog: readonly Delivered<OplogRecord>[];
}

/** Everything the accuracy scenario reads, from one seed. */
export function accuracyInputs(seed: number, options: { readonly orders?: OrderOptions; readonly delivery?: DeliveryOptions; readonly oplog?: OplogOptions } = {}): AccuracyInputs {
  const random = seededRandom(seed);
  const orders = generateOrders(random, options.orders);
  const logistics = generateLogistics(random, orders);
  const userLevels = generateUserLevels(random, { users: options.orders?.users ?? 20, startMs: options.orders?.startMs, spanMs: options.orders?.spanMs });
  const oplog = generateOplog(random, options.oplog);
  const deliveredOrders = deliver(random, orders.map((o) => ({ value: o, ts: o.orderTime })), options.delivery);
  const deliveredLogistics = deliver(random, logistics.map((e) => ({ value: e, ts: e.eventTime })), options.delivery);
  // Versions too arrive out of order, twice or late: a temporal join orders them by version time.
  const deliveredLevels = deliver(random, userLevels.map((c) => ({ value: c, ts: c.row.validFrom })), options.delivery);
  return {
    orders,
    logistics,
    userLevels,
    oplog,
    deliveredOrders,
    ordersAndLogistics: interleave(deliveredOrders, deliveredLogistics),
    ordersAndLevels: interleave<Order, UserLevel>(deliveredOrders, deliveredLevels),
    deliveredOplog: deliverOplog(random, oplog, options.delivery),
  };
}
