/**
 * Final results of a changelog, for comparing an operator's output with an oracle's rows: every
 * `+I`/`+U` adds its row to a multiset and every `-U`/`-D` takes one equal row away, as a
 * downstream table would apply them. A retraction of a row that is not there is an error in the
 * changelog, not something to ignore, so it throws.
 */
import { asChange, isAddition, type Change } from "../../runtime/spec/changelog.ts";

/** A deterministic text for a row (object keys sorted), so equal rows compare equal. */
export function rowText(row: unknown): string {
  return JSON.stringify(row, (_k, v: unknown) =>
    v !== null && typeof v === "object" && !Array.isArray(v) ? Object.fromEntries(Object.entries(v as Record<string, unknown>).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) : v,
  );
}

/** Applies `changes` in order (plain values count as `+I`) and returns the rows left, sorted by `rowText`. */
export function applyChanges<T>(changes: Iterable<T | Change<T>>): T[] {
  const rows = new Map<string, { row: T; count: number }>();
  for (const value of changes) {
    const c = asChange<T>(value);
    const text = rowText(c.row);
    const held = rows.get(text);
    if (isAddition(c.rowKind)) rows.set(text, { row: c.row, count: (held?.count ?? 0) + 1 });
    else if (held === undefined) throw new Error(`retraction ${c.rowKind} of a row not in the result: ${text}`);
    else if (held.count === 1) rows.delete(text);
    else held.count -= 1;
  }
  return sortRows([...rows.values()].flatMap(({ row, count }) => Array.from({ length: count }, () => row)));
}

/** Rows sorted by `rowText`: a multiset in a canonical order, for `toEqual`. */
export function sortRows<T>(rows: readonly T[]): T[] {
  return [...rows].sort((a, b) => {
    const x = rowText(a);
    const y = rowText(b);
    return x < y ? -1 : x > y ? 1 : 0;
  });
}
