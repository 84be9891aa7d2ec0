/**
 * The pure decisions of the changelog joins (design note bx), on plain data so they are tested
 * without an operator: which stored row a retraction takes away, how a side's rows are grouped
 * into map entries, which version of a temporal join's right side a left row meets and which
 * versions no left row can need any more.
 *
 * Why they exist: a changelog join must find "one equal row" for every `-U`/`-D`, however many
 * rows a key holds, while a worker that lacks the key reads only the map entries a record names
 * (note bj). So rows are stored in entries named by a hash of their canonical text — a retraction
 * reads the one entry its row hashes to — each entry a small list of distinct rows with their
 * multiplicity (hash collisions just share an entry).
 */
import { fnv1a32 } from "./hash.ts";

/**
 * Canonical JSON text of a row: object keys sorted, so two rows with equal fields are equal
 * whatever order their fields were written in (as a downstream table compares them).
 */
export function canonicalRow(row: unknown): string {
  const text = JSON.stringify(row, (_k, v: unknown) =>
    v !== null && typeof v === "object" && !Array.isArray(v)
      ? Object.fromEntries(Object.entries(v as Record<string, unknown>).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)))
      : v,
  );
  // JSON.stringify(undefined) is undefined: such a row still needs an identity.
  return text ?? "undefined";
}

/** The map entry (sub-key) a row with canonical text `text` is stored under. */
export function rowSlot(text: string): string {
  return `${text.length.toString(36)}.${fnv1a32(text).toString(36)}`;
}

/**
 * A distinct row of one side of a changelog join with its multiplicity `n` (equal rows are one
 * element) and, on an outer side, `p`: how many of those copies are currently emitted padded
 * (`output(row, null)`) because they had no partner when they were added or lost their last one.
 */
export interface StoredRow<T = unknown> {
  readonly row: T;
  readonly n: number;
  readonly p?: number;
}

/**
 * Why a value written into a changelog join's side from outside (`eddy state put`, a bootstrap)
 * is not an entry's rows, or undefined if it is: an array of `{ row, n, p? }`, `n` a count >= 1,
 * `p` (padded copies) between 0 and `n`.
 */
export function storedRowsProblem(value: unknown): string | undefined {
  if (!Array.isArray(value)) return "expected an array of { row, n, p? }";
  for (const [i, e] of value.entries()) {
    if (e === null || typeof e !== "object" || !("row" in e)) return `[${i}]: expected { row, n, p? }`;
    const { n, p } = e as { n?: unknown; p?: unknown };
    if (!Number.isSafeInteger(n) || (n as number) < 1) return `[${i}].n: expected a count >= 1`;
    if (p !== undefined && (!Number.isSafeInteger(p) || (p as number) < 0 || (p as number) > (n as number))) return `[${i}].p: expected a count between 0 and n`;
  }
  return undefined;
}

/** Index of the row whose canonical text is `text` in an entry's rows, or -1. */
export function findRow(rows: readonly StoredRow[], text: string): number {
  for (let i = 0; i < rows.length; i++) if (canonicalRow(rows[i]!.row) === text) return i;
  return -1;
}

/**
 * The entry after adding one copy of `row` (canonical text `text`); `padded` says whether that
 * copy is emitted padded, and `outer` whether the side counts padded copies at all.
 */
export function addCopy<T>(rows: readonly StoredRow<T>[] | undefined, row: T, text: string, outer: boolean, padded: boolean): StoredRow<T>[] {
  const next = [...(rows ?? [])];
  const i = findRow(next, text);
  const p = padded ? 1 : 0;
  if (i < 0) next.push(outer ? { row, n: 1, p } : { row, n: 1 });
  else {
    const held = next[i]!;
    next[i] = outer ? { row: held.row, n: held.n + 1, p: (held.p ?? 0) + p } : { row: held.row, n: held.n + 1 };
  }
  return next;
}

/**
 * Takes one copy of the row with canonical text `text` out of an entry: the entry left (empty:
 * delete it) and whether the copy taken was a padded one (padded copies go first: a padded copy
 * has no joined outputs, so retracting it retracts exactly its padded row). Undefined when the
 * entry has no such row (a retraction of a row not in state).
 */
export function removeCopy<T>(rows: readonly StoredRow<T>[] | undefined, text: string): { readonly rows: StoredRow<T>[]; readonly padded: boolean } | undefined {
  if (rows === undefined) return undefined;
  const i = findRow(rows, text);
  if (i < 0) return undefined;
  const held = rows[i]!;
  const padded = (held.p ?? 0) > 0;
  const next = [...rows];
  if (held.n <= 1) next.splice(i, 1);
  else next[i] = held.p === undefined ? { row: held.row, n: held.n - 1 } : { row: held.row, n: held.n - 1, p: held.p - (padded ? 1 : 0) };
  return { rows: next, padded };
}

// --- temporal join -------------------------------------------------------------------------------

/** A version of a temporal join's right side at one version time: a row, or a delete (no row). */
export type TemporalVersion<R = unknown> = { readonly row: R } | { readonly deleted: true };

/** Why a value written into a temporal join's versions from outside is not a version, or undefined. */
export function versionProblem(value: unknown): string | undefined {
  if (value === null || typeof value !== "object" || Array.isArray(value)) return "expected { row } or { deleted: true }";
  const keys = Object.keys(value);
  if (keys.length === 1 && keys[0] === "row") return undefined;
  if (keys.length === 1 && keys[0] === "deleted" && (value as { deleted: unknown }).deleted === true) return undefined;
  return "expected { row } or { deleted: true }";
}

/** Map sub-key of the version at `time`, and back. */
export const versionKey = (time: number): string => String(time);
export const versionTime = (key: string): number => Number(key);

/**
 * The version a left row at time `t` meets: the latest with version time <= t. Undefined when
 * there is none; a delete version is returned as such (the caller treats it as no match).
 */
export function versionAt<R>(versions: Iterable<readonly [string, TemporalVersion<R>]>, t: number): TemporalVersion<R> | undefined {
  let best: TemporalVersion<R> | undefined;
  let bestTime = -Infinity;
  for (const [k, v] of versions) {
    const time = versionTime(k);
    if (time <= t && time >= bestTime) {
      best = v;
      bestTime = time;
    }
  }
  return best;
}

/**
 * The versions (sub-keys) no left row can need once every left row at or before `t` has been
 * joined and later left rows have times after `t`: every version older than the latest one at or
 * before `t`. That one stays even when it is a delete: a version older than it may still arrive
 * late, and must not become the match of later left rows.
 */
export function prunableVersions(versions: Iterable<readonly [string, TemporalVersion]>, t: number): string[] {
  let latest = -Infinity;
  const upTo: Array<readonly [string, number]> = [];
  for (const [k] of versions) {
    const time = versionTime(k);
    if (time > t) continue;
    upTo.push([k, time]);
    if (time > latest) latest = time;
  }
  return upTo.filter(([, time]) => time < latest).map(([k]) => k);
}
