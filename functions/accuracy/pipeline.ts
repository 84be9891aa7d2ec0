/**
 * The data accuracy scenario (issue 15 item 5): a warehouse team's DWD layer, exact on messy
 * inputs — a database oplog redelivered at least once, orders joined with logistics events up to a
 * day later, and each order joined with its user's level at order time; results are kept current
 * in KV buckets that dashboards read with a get or a watch. Its inputs come from generator.ts
 * (seeded, out of order, duplicated, late); test/integration/accuracy-scenario.test.ts runs it on
 * a real nats-server and checks every result against SQL (test/support/sql-oracle.ts).
 *
 *   ACCURACY "accuracy.oplog" ──> oplog (validate, event time commit_ts)
 *     ──> oplog-dedup (dedup per row, keep last by commit_ts: a stale redelivery is dropped)
 *     ──> row-changes (oplog(): an operation into -U before / +U after / -D before)
 *     ──> tables (dropUnchanged: no change but updated_at → nothing) ══> KV ACCURACY_TABLES
 *   ACCURACY "accuracy.orders" ──> orders ─┬─> shipments (left interval join, [order, order + 1 day])
 *   ACCURACY "accuracy.logistics" ──> logistics ─┘      └─> sink results.accuracy.shipments (exactly once)
 *   ACCURACY "accuracy.levels" ──> levels (a changelog of versions) ──> order-levels (left temporal
 *     join at order time) ══> KV ACCURACY_ORDERS
 *
 * A redelivery of a row's latest operation ties with it in dedup (equal commit_ts: the later
 * arrival wins, `-U`/`+U` of the same row) and is then dropped by dropUnchanged, which sees no
 * change; an older redelivery is dropped by dedup, so it can never set a row back.
 */
import {
  asChange,
  boundedOutOfOrderness,
  dedup,
  defineFunction,
  definePipeline,
  dropUnchanged,
  fromFunction,
  fromStream,
  intervalJoin,
  isAddition,
  oplog,
  temporalJoin,
  type Change,
  type OplogRow as MappedRow,
} from "../../runtime/sdk/index.ts";
import { DAY_MS, type LogisticsEvent, type OplogRecord, type Order, type UserLevel } from "./generator.ts";

/** How far each source's records may be out of order before they count as late. */
export const MAX_OUT_OF_ORDERNESS_MS = 60_000;
/** A logistics event belongs to an order when it happens within a day after it (bounds included). */
export const WITHIN_MS = DAY_MS;
export const STREAM = "ACCURACY";
export const TABLES_BUCKET = "ACCURACY_TABLES";
export const ORDERS_BUCKET = "ACCURACY_ORDERS";
export const SHIPMENTS_SUBJECT = "results.accuracy.shipments";

/** A mirrored table row: what matters of it (`updated_at` does not). */
export interface TableRow {
  readonly table: string;
  readonly id: string;
  readonly status: string;
  readonly amount: number;
}

/** An order with a logistics event of its first day, or none (`eventId: null`). */
export interface Shipment {
  readonly orderId: string;
  readonly userId: string;
  readonly orderTime: number;
  readonly eventId: string | null;
  readonly status: string | null;
  readonly eventTime: number | null;
}

/** An order with its user's level at order time (null: no level then, or deleted). */
export interface LeveledOrder {
  readonly orderId: string;
  readonly userId: string;
  readonly amount: number;
  readonly orderTime: number;
  readonly level: string | null;
}

/** A record on the scenario's stream is not what its subject says; it is dead-lettered with the reason. */
export class MalformedAccuracyRecordError extends Error {
  override readonly name = "MalformedAccuracyRecordError";
}

const isObject = (x: unknown): x is Record<string, unknown> => typeof x === "object" && x !== null && !Array.isArray(x);
const isTime = (x: unknown): x is number => typeof x === "number" && Number.isSafeInteger(x);
const isText = (x: unknown): x is string => typeof x === "string" && x.length > 0 && x.length <= 200;

function oplogRowProblem(row: unknown): string | undefined {
  if (!isObject(row)) return "a row image must be an object";
  if (!isText(row.id) || !isText(row.status) || typeof row.amount !== "number" || !Number.isFinite(row.amount)) return "a row needs id, status and a finite amount";
  return undefined;
}

/** Why `x` is no oplog record of the scenario's tables, or undefined. */
export function oplogProblem(x: unknown): string | undefined {
  if (!isObject(x)) return "an oplog record must be an object";
  if (x.op_type !== "I" && x.op_type !== "U" && x.op_type !== "D") return "op_type must be I, U or D";
  if (!isText(x.table) || !isTime(x.commit_ts)) return "an oplog record needs a table and an integer commit_ts";
  const image = x.op_type === "D" ? x.before : x.after;
  return oplogRowProblem(image);
}

/** Why `x` is no order, or undefined. */
export function orderProblem(x: unknown): string | undefined {
  if (!isObject(x) || !isText(x.orderId) || !isText(x.userId) || typeof x.amount !== "number" || !isTime(x.orderTime)) return "an order needs orderId, userId, amount and an integer orderTime";
  return undefined;
}

/** Why `x` is no logistics event, or undefined. */
export function logisticsProblem(x: unknown): string | undefined {
  if (!isObject(x) || !isText(x.eventId) || !isText(x.orderId) || !isText(x.status) || !isTime(x.eventTime)) return "a logistics event needs eventId, orderId, status and an integer eventTime";
  return undefined;
}

/** Why `x` is no user-level change (`{ rowKind, row: { userId, level, validFrom } }`), or undefined. */
export function levelProblem(x: unknown): string | undefined {
  if (!isObject(x) || !["+I", "-U", "+U", "-D"].includes(x.rowKind as string)) return "a level change needs a rowKind";
  const row = x.row;
  if (!isObject(row) || !isText(row.userId) || !isText(row.level) || !isTime(row.validFrom)) return "a level needs userId, level and an integer validFrom";
  return undefined;
}

/** What the tables bucket holds for a row: `<table>.<id>`. */
export const tableKey = (r: { readonly table: string; readonly id: string }): string => `${r.table}.${r.id}`;
const rowIdentity = (op: OplogRecord): string => `${op.table}.${(op.op_type === "D" ? op.before : op.after)!.id}`;

export interface AccuracyPipelineOptions {
  readonly job?: string;
  readonly partitions?: number;
}

export function accuracyPipeline(options: AccuracyPipelineOptions = {}) {
  const partitions = options.partitions ?? 2;
  const source = <T>(name: string, subject: string, problem: (x: unknown) => string | undefined, timestamp: (x: T) => number, changelog = false) =>
    defineFunction<unknown, T>({
      name,
      input: fromStream(STREAM, { subject }),
      timestamp: (x) => {
        const why = problem(x);
        if (why !== undefined) throw new MalformedAccuracyRecordError(why);
        return timestamp(x as T);
      },
      watermark: boundedOutOfOrderness(MAX_OUT_OF_ORDERNESS_MS),
      ...(changelog ? { changelog: true } : {}),
      process: (ctx, x) => ctx.emit(x as T),
    });

  // (a) The oplog: redeliveries deduplicated per row, then only meaningful changes.
  const oplogSource = source<OplogRecord>("oplog", "accuracy.oplog", oplogProblem, (op) => op.commit_ts);
  const latestOperation = dedup<OplogRecord>({ name: "oplog-dedup", input: fromFunction(oplogSource), partitions, key: rowIdentity, keep: "last", time: "event" });
  const toRowChanges = oplog();
  const rowChanges = defineFunction<Change<OplogRecord>, Change<MappedRow>>({
    name: "row-changes",
    input: fromFunction(latestOperation),
    partitions,
    key: (c) => rowIdentity(c.row),
    changelog: true,
    process(ctx, c) {
      // dedup's -U names the operation a newer one replaces: the +U after it is the operation to apply.
      if (!isAddition(c.rowKind)) return;
      for (const out of toRowChanges(c.row)) ctx.emit(out);
    },
  });
  const tables = {
    ...dropUnchanged<MappedRow, TableRow>({
      name: "tables",
      input: fromFunction(rowChanges),
      partitions,
      key: (r) => `${String(r._table)}.${String(r.id)}`,
      project: (r) => ({ table: String(r._table), id: String(r.id), status: String(r.status), amount: Number(r.amount) }),
    }),
    upsert: { bucket: TABLES_BUCKET, key: tableKey },
  };

  // (b) Orders with their logistics events of the first day: every order, padded when none came.
  const orders = source<Order>("orders", "accuracy.orders", orderProblem, (o) => o.orderTime);
  const logistics = source<LogisticsEvent>("logistics", "accuracy.logistics", logisticsProblem, (e) => e.eventTime);
  const shipments = {
    ...intervalJoin<Order, LogisticsEvent, Shipment, "left">({
      name: "shipments",
      left: fromFunction(orders),
      right: fromFunction(logistics),
      partitions,
      leftKey: (o) => o.orderId,
      rightKey: (e) => e.orderId,
      type: "left",
      lowerBoundMs: 0,
      upperBoundMs: WITHIN_MS,
      output: (o, e) => ({ orderId: o.orderId, userId: o.userId, orderTime: o.orderTime, eventId: e?.eventId ?? null, status: e?.status ?? null, eventTime: e?.eventTime ?? null }),
    }),
    sink: { subject: SHIPMENTS_SUBJECT },
  };

  // (c) Orders with the user's level valid at order time: a versioned table from a changelog.
  const levels = source<Change<UserLevel>>("levels", "accuracy.levels", levelProblem, (c) => asChange(c).row.validFrom, true);
  const orderLevels = {
    ...temporalJoin<Order, UserLevel, LeveledOrder, "left">({
      name: "order-levels",
      left: fromFunction(orders),
      right: fromFunction(levels),
      partitions,
      leftKey: (o) => o.userId,
      rightKey: (v) => v.userId,
      type: "left",
      output: (o, v) => ({ orderId: o.orderId, userId: o.userId, amount: o.amount, orderTime: o.orderTime, level: v?.level ?? null }),
    }),
    // (d) Current results in KV, exactly once: one key per order.
    upsert: { bucket: ORDERS_BUCKET, key: (o: LeveledOrder) => o.orderId },
  };

  return definePipeline({
    name: options.job ?? "accuracy",
    functions: [oplogSource, latestOperation, rowChanges, tables, orders, logistics, shipments, levels, orderLevels],
  });
}

export default accuracyPipeline();
