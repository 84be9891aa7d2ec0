/**
 * Changelog records: a row together with what happened to it — inserted, replaced (the old row
 * retracted, then the new one added) or deleted — the way Flink's RowKind marks rows in a dynamic
 * table. Dedup, outer joins and retracting aggregates emit them; joins, aggregates and sinks read
 * them; a source can turn a database oplog into them. They travel as ordinary record values
 * (`{ rowKind, row }`), so nothing between two functions needs to know about them, and a function
 * that never sees one is unaffected. Design note bv says how each operator and sink treats them.
 */

/**
 * What happened to a row, with Flink's short names: `+I` insert, `-U` the row before an update
 * (a retraction), `+U` the row after an update, `-D` delete (a retraction).
 */
export type RowKind = "+I" | "-U" | "+U" | "-D";

export const ROW_KINDS: readonly RowKind[] = ["+I", "-U", "+U", "-D"];

/**
 * One changelog record. A `-U` is followed by the `+U` that replaces it (same key); a consumer
 * that only keeps current rows may ignore `-U` when the `+U` overwrites by key (an upsert sink),
 * while one that counts or sums must subtract it.
 * @example
 * const replaced: Change<Order>[] = [{ rowKind: "-U", row: old }, { rowKind: "+U", row: next }];
 */
export interface Change<T> {
  readonly rowKind: RowKind;
  readonly row: T;
}

/** Whether `kind` adds the row to the result (`+I`, `+U`) or takes it away (`-U`, `-D`). */
export function isAddition(kind: RowKind): boolean {
  return kind === "+I" || kind === "+U";
}

/** A changelog record whose row is `row`: `+I` unless told otherwise. */
export function change<T>(row: T, rowKind: RowKind = "+I"): Change<T> {
  return { rowKind, row };
}

/**
 * Whether a record value is a changelog record: an object with exactly the fields `rowKind` (one
 * of the four kinds) and `row`. Operators that accept both treat any other value as `+I` of itself.
 */
export function isChange(value: unknown): value is Change<unknown> {
  if (value === null || typeof value !== "object" || Array.isArray(value)) return false;
  const keys = Object.keys(value);
  if (keys.length !== 2 || !("row" in value) || !("rowKind" in value)) return false;
  return ROW_KINDS.includes((value as { rowKind: RowKind }).rowKind);
}

/** A record value as a changelog record: itself if it is one, else an insert of it. */
export function asChange<T>(value: T | Change<T>): Change<T> {
  return isChange(value) ? (value as Change<T>) : { rowKind: "+I", row: value as T };
}
