/**
 * `oplog()`: a source's changelog mapper (`fromStream(…, { changelog })`) for database change
 * records in the common oplog shape — an operation type, the table, the commit time, the changed
 * fields and the row before and after — as CDC tools such as Debezium, Canal or Maxwell write
 * them with differing field names. It turns each record into Flink's row kinds: an insert into
 * `+I after`, an update into `-U before` (when the record has it) then `+U after`, a delete into
 * `-D before`. Every row carries the record's metadata (`_table`, `_commit_ts`,
 * `_changed_fields`), so a function can filter by table or order by commit time without the
 * envelope. A record that is not of this shape makes the mapper throw, which dead-letters it with
 * the reason (design note bv).
 */
import type { Change } from "../spec/changelog.ts";

/** Field names of the oplog record, and whether rows carry the metadata. */
export interface OplogOptions {
  /** Field holding the operation: "I", "U" or "D" (default "op_type"). */
  readonly opType?: string;
  /** Field holding the table name, copied into each row as `_table` (default "table"). */
  readonly table?: string;
  /** Field holding the commit time, copied into each row as `_commit_ts` (default "commit_ts"). */
  readonly commitTs?: string;
  /** Field holding the names of the changed fields, copied as `_changed_fields` (default "changed_fields"). */
  readonly changedFields?: string;
  /** Field holding the row before the change (default "before"). */
  readonly before?: string;
  /** Field holding the row after the change (default "after"). */
  readonly after?: string;
  /** Add `_table`, `_commit_ts` and `_changed_fields` to each row (default true). */
  readonly metadata?: boolean;
}

/** A row as `oplog()` hands it on: the table's columns plus the record's metadata (absent fields are left out). */
export type OplogRow = Record<string, unknown> & {
  readonly _table?: string;
  readonly _commit_ts?: number;
  readonly _changed_fields?: readonly string[];
};

/**
 * A changelog mapper for oplog records `{ op_type: "I" | "U" | "D", table, commit_ts,
 * changed_fields, before?, after? }` (field names configurable).
 * @example
 * defineFunction({
 *   name: "orders",
 *   input: fromStream("ORDERS_OPLOG", { changelog: oplog() }),
 *   key: (c: Change<OplogRow>) => String(c.row.order_id),
 *   process: (ctx, c) => ctx.emit(c),
 * });
 */
export function oplog(options: OplogOptions = {}): (raw: unknown) => Change<OplogRow>[] {
  const f = {
    opType: options.opType ?? "op_type",
    table: options.table ?? "table",
    commitTs: options.commitTs ?? "commit_ts",
    changedFields: options.changedFields ?? "changed_fields",
    before: options.before ?? "before",
    after: options.after ?? "after",
  };
  const withMetadata = options.metadata ?? true;
  return (raw) => {
    if (!isRecord(raw)) throw new TypeError(`an oplog record must be an object, not ${what(raw)}`);
    const op = raw[f.opType];
    const meta = withMetadata ? metadataOf(raw, f) : {};
    const row = (field: string, required: boolean): OplogRow | undefined => {
      const r = raw[field];
      if (r === undefined || r === null) {
        if (required) throw new TypeError(`oplog record with ${f.opType} ${JSON.stringify(op)} has no "${field}" row`);
        return undefined;
      }
      if (!isRecord(r)) throw new TypeError(`"${field}" of an oplog record must be an object, not ${what(r)}`);
      return { ...r, ...meta };
    };
    switch (op) {
      case "I":
        return [{ rowKind: "+I", row: row(f.after, true)! }];
      case "U": {
        const before = row(f.before, false);
        const after = row(f.after, true)!;
        return before === undefined ? [{ rowKind: "+U", row: after }] : [{ rowKind: "-U", row: before }, { rowKind: "+U", row: after }];
      }
      case "D":
        return [{ rowKind: "-D", row: row(f.before, true)! }];
      default:
        throw new TypeError(`"${f.opType}" of an oplog record must be "I", "U" or "D", not ${what(op)}`);
    }
  };
}

function metadataOf(raw: Record<string, unknown>, f: { table: string; commitTs: string; changedFields: string }): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  const table = raw[f.table];
  if (table !== undefined) {
    if (typeof table !== "string") throw new TypeError(`"${f.table}" of an oplog record must be a string, not ${what(table)}`);
    out._table = table;
  }
  const ts = raw[f.commitTs];
  if (ts !== undefined) {
    if (typeof ts !== "number" || !Number.isFinite(ts)) throw new TypeError(`"${f.commitTs}" of an oplog record must be a finite number, not ${what(ts)}`);
    out._commit_ts = ts;
  }
  const changed = raw[f.changedFields];
  if (changed !== undefined) {
    if (!Array.isArray(changed) || !changed.every((c) => typeof c === "string")) throw new TypeError(`"${f.changedFields}" of an oplog record must be a list of field names`);
    out._changed_fields = changed;
  }
  return out;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value) && !(value instanceof Uint8Array);
}

function what(value: unknown): string {
  if (value === undefined) return "undefined";
  if (value === null) return "null";
  if (Array.isArray(value)) return "a list";
  if (typeof value === "object") return "an object";
  const text = JSON.stringify(value) ?? String(value);
  return text.length > 60 ? `${text.slice(0, 60)}…` : text;
}
