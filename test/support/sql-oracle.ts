/**
 * An independent SQL oracle for issue 15's operators: each operator's FINAL result (after its
 * retractions are applied) computed by a query on Node's built-in SQLite (`node:sqlite`, an
 * in-memory database per call) over the same input the operator gets. It was written from issue
 * 15 and its shared contract (the semantics design notes bw, bx and by record) alone, not from the
 * operators, so a comparison test catches a misreading on either side. Rows are stored as canonical JSON text
 * (`rowText`, keys sorted) next to the columns a query needs (key, event time, arrival order),
 * and come back parsed and sorted (`sortRows`), ready for `toEqual(applyChanges(emitted))`.
 *
 * | oracle              | operator (contract)                     | SQL it runs (Flink SQL name)                                                                 |
 * |---------------------|-----------------------------------------|----------------------------------------------------------------------------------------------|
 * | `sqlDedup`          | `dedup` keep first/last × event/proc.   | `ROW_NUMBER() OVER (PARTITION BY key ORDER BY time ASC/DESC, arrival ASC/DESC) = 1` (ROW_NUMBER dedup) |
 * | `sqlDropUnchanged`  | `dropUnchanged` (final rows)            | `ROW_NUMBER() … ORDER BY arrival DESC = 1` over `+I/+U/-D`, kept when it is an addition         |
 * | `sqlDropUnchangedChangelog` | `dropUnchanged` (whole output)  | `LAG(kind), LAG(projected) OVER (PARTITION BY key ORDER BY arrival)` → `+I` / `-U,+U` / `-D` / nothing |
 * | `sqlChangelogFinal` | any changelog (`applyChanges`)          | `SUM(±1) GROUP BY row HAVING > 0`, expanded by a recursive CTE (checked: no prefix goes below 0) |
 * | `sqlGroupAggregate` | `groupAggregate`                        | `SELECT key, <your aggregates> FROM final_one GROUP BY k` (a GROUP BY over a dynamic table)    |
 * | `sqlJoin`           | `streamJoin` with `type`                | `l [INNER/LEFT/RIGHT/FULL OUTER] JOIN r ON l.key = r.key` over both final multisets (regular join) |
 * | `sqlIntervalJoin`   | `intervalJoin` with/without `type`      | `… JOIN r ON l.key = r.key AND r.ts BETWEEN l.ts + lower AND l.ts + upper` (interval join)     |
 * | `sqlTemporalJoin`   | `temporalJoin` inner/left               | correlated subquery: latest version `v.ts <= l.ts ORDER BY v.ts DESC, v.arrival DESC LIMIT 1`, `-D` → none (`FOR SYSTEM_TIME AS OF l.ts`, event time) |
 * | `sqlLookupJoin`     | `lookupJoin` inner/left                 | `WHERE dim IS NOT NULL` (inner) over the value each record saw (`FOR SYSTEM_TIME AS OF proctime`) |
 * | `sqlDimensionAsOf`  | what the bucket held at processing time | correlated subquery: latest write `w.at <= at ORDER BY w.at DESC, w.seq DESC LIMIT 1`          |
 * | `sqlOplogTable`     | oplog → dedup → dropUnchanged (scenario a) | the source table's final state: `ROW_NUMBER() OVER (PARTITION BY table, id ORDER BY commit_ts DESC) = 1 AND op_type <> 'D'`, projected |
 * | `sqlUpsertBucket`   | upsert sink into a KV bucket (scenario d) | `ROW_NUMBER() OVER (PARTITION BY key ORDER BY arrival DESC) = 1` kept when it is `+I`/`+U` (last change per key wins) |
 *
 * Input shapes. Single-input operators take `OracleRecord`s in arrival order (the array index is
 * the arrival order): `{ value, ts? }`, where `value` is a plain row or a `Change` (a plain row is
 * `+I` of itself, as `asChange` says) and `ts` the record's event time (`ctx.timestamp`; needed
 * only by event-time operators). Two-input operators take one interleaved array of
 * `SidedRecord`s (`{ side: "left" | "right", value, ts? }`), again in arrival order, the way a test
 * sends them to a harness (`input: 0` is left).
 *
 * Lateness. Event-time oracles take an optional `watermarks`: the actor's watermark after each
 * input record (same length as the input; `lateness(...).after` from accuracy-generator.ts).
 * With it, a record is late when `ts <= ` the watermark after the previous record and is left
 * out (late records go to the side output and never join or pad), and a temporal join's left row
 * sees only the versions that arrived up to the record after which the watermark reached its
 * time (when it fires). Without it, every record counts as on time and every version as seen
 * before the left rows fire (the end-of-input flush). Either way the result is the one after the
 * input ends and the watermark passes everything (all outer rows padded, all left rows fired).
 *
 * Readings where the contract is silent:
 * - Append-only inputs (dedup, interval join both sides, temporal join's left side) drop
 *   `-U`/`-D` records, as the operators dead-letter them; `+U` counts as an insert of its row.
 * - Changelog inputs must be valid: retracting a row that is not there (at that point of the
 *   arrival order) throws, as `applyChanges` does; the operators' "counted and ignored" path is
 *   not modelled.
 * - Right-side temporal versions are never late: Flink's TemporalRowTimeJoinOperator checks only
 *   the probe (left) side, and the contract names only left rows for the late output. A version
 *   that arrives after a left row fired is simply not seen by it (the `watermarks` rule above).
 * - Dedup's and joins' `ttl` are not modelled (no expiry); test TTL separately.
 */
import { DatabaseSync } from "node:sqlite";
import { asChange, isAddition, type Change, type RowKind } from "../../runtime/spec/changelog.ts";
import { rowText, sortRows } from "./changes.ts";

/** One record of a single-input operator, in arrival order. */
export interface OracleRecord<T> {
  /** A plain row (an insert of itself) or a changelog record. */
  readonly value: T | Change<T>;
  /** The record's event time (`ctx.timestamp`); only event-time operators read it. */
  readonly ts?: number;
}

/** One record of a two-input operator, in arrival order; `left` is input 0. */
export type SidedRecord<L, R> =
  | { readonly side: "left"; readonly value: L | Change<L>; readonly ts?: number }
  | { readonly side: "right"; readonly value: R | Change<R>; readonly ts?: number };

export type JoinType = "inner" | "left" | "right" | "full";

type SqlValue = string | number | null;
type SqlRow = Record<string, SqlValue>;

/** The SQLite version the oracle runs on (RIGHT and FULL OUTER JOIN need 3.39). */
export function sqliteVersion(): string {
  return withDb((db) => String((db.prepare("SELECT sqlite_version() AS v").get() as SqlRow).v));
}

/** Whether this SQLite has RIGHT and FULL OUTER JOIN (3.39.0 and later). */
export function hasOuterJoins(version = sqliteVersion()): boolean {
  const [major = 0, minor = 0] = version.split(".").map(Number);
  return major > 3 || (major === 3 && minor >= 39);
}

function withDb<T>(body: (db: DatabaseSync) => T): T {
  const db = new DatabaseSync(":memory:");
  try {
    return body(db);
  } finally {
    db.close();
  }
}

/**
 * The input table every query reads: one row per input record, `arrival` its index, `kind` its
 * row kind, `k` its key, `ts` its event time, `row` its canonical JSON, plus `extra` columns.
 */
function loadInput(db: DatabaseSync, rows: readonly SqlRow[], extraColumns: readonly string[] = []): void {
  const columns = ["arrival", "side", "kind", "k", "ts", "row", ...extraColumns];
  db.exec(
    `CREATE TABLE input (arrival INTEGER PRIMARY KEY, side TEXT NOT NULL, kind TEXT NOT NULL, k TEXT, ts REAL, row TEXT${extraColumns.map((c) => `, ${c}`).join("")})`,
  );
  insertAll(db, "input", columns, rows);
  db.exec("CREATE INDEX input_by_key ON input (side, k, ts, arrival)");
}

function insertAll(db: DatabaseSync, table: string, columns: readonly string[], rows: readonly SqlRow[]): void {
  const insert = db.prepare(`INSERT INTO ${table} (${columns.join(", ")}) VALUES (${columns.map((c) => `:${c}`).join(", ")})`);
  db.exec("BEGIN");
  for (const row of rows) insert.run(Object.fromEntries(columns.map((c) => [c, row[c] ?? null])));
  db.exec("COMMIT");
}

/**
 * The watermark table: `wm` is the actor's watermark after record `arrival` (NULL = -Infinity).
 * Without watermarks it is empty, and every record counts as on time.
 */
function loadWatermarks(db: DatabaseSync, watermarks: readonly number[] | undefined, inputLength: number): void {
  db.exec("CREATE TABLE watermark (arrival INTEGER PRIMARY KEY, wm REAL)");
  if (watermarks === undefined) return;
  if (watermarks.length !== inputLength) throw new RangeError(`watermarks has ${watermarks.length} entries for ${inputLength} records`);
  insertAll(db, "watermark", ["arrival", "wm"], watermarks.map((wm, arrival) => ({ arrival, wm: wm === -Infinity ? null : wm })));
}

/** `NOT late`, for a row aliased `alias` of `input`: its time is after the watermark left by the record before it. */
function onTime(alias: string): string {
  return `NOT EXISTS (SELECT 1 FROM watermark w WHERE w.arrival = ${alias}.arrival - 1 AND w.wm IS NOT NULL AND ${alias}.ts <= w.wm)`;
}

function requireTs(ts: number | undefined, where: string, index: number): number {
  if (typeof ts !== "number" || !Number.isFinite(ts)) throw new RangeError(`${where}: record ${index} needs a finite event time ts, got ${ts}`);
  return ts;
}

const ADDITION = "kind IN ('+I', '+U')";

function parse<T>(text: SqlValue): T {
  if (typeof text !== "string") throw new TypeError(`expected a JSON row, got ${text}`);
  return JSON.parse(text) as T;
}

// ---------------------------------------------------------------------------------------------
// Changelog → final multiset

/**
 * `final_<side>(k, row)`: the final multiset of one side's changelog, one SQL row per copy. Built
 * as net counts (`+1` per addition, `-1` per retraction, per canonical row) expanded by a
 * recursive CTE. A running count that goes below zero is a retraction of a row that was not
 * there: the input is not a changelog the operators promise to handle, so it throws.
 */
function createFinal(db: DatabaseSync, side: string): void {
  const bad = db
    .prepare(
      `SELECT row, arrival FROM (
         SELECT row, arrival, SUM(CASE WHEN ${ADDITION} THEN 1 ELSE -1 END)
           OVER (PARTITION BY row ORDER BY arrival ROWS UNBOUNDED PRECEDING) AS held
         FROM input WHERE side = :side)
       WHERE held < 0 ORDER BY arrival LIMIT 1`,
    )
    .get({ side }) as SqlRow | undefined;
  if (bad !== undefined) throw new RangeError(`record ${bad.arrival} retracts a row that is not in the ${side} input: ${bad.row}`);
  db.exec(`CREATE TABLE final_${side} AS
    WITH RECURSIVE net AS (
      SELECT k, row, SUM(CASE WHEN ${ADDITION} THEN 1 ELSE -1 END) AS n, MIN(arrival) AS first
      FROM input WHERE side = '${side}' GROUP BY k, row HAVING n > 0),
    copies(k, row, first, i, n) AS (
      SELECT k, row, first, 1, n FROM net
      UNION ALL SELECT k, row, first, i + 1, n FROM copies WHERE i < n)
    SELECT k, row FROM copies ORDER BY first, i`);
}

function changeRow<T>(value: T | Change<T>): { kind: RowKind; text: string; row: T } {
  const c = asChange(value);
  return { kind: c.rowKind, text: rowText(c.row), row: c.row };
}

/**
 * The final multiset of a changelog (plain values are `+I`), computed in SQL: what `applyChanges`
 * computes by a loop, so each checks the other. Throws on retracting a row that is not there.
 */
export function sqlChangelogFinal<T>(input: readonly (T | Change<T>)[]): T[] {
  return withDb((db) => {
    loadInput(
      db,
      input.map((value, arrival) => {
        const c = changeRow(value);
        return { arrival, side: "one", kind: c.kind, k: "", row: c.text };
      }),
    );
    createFinal(db, "one");
    return sortRows((db.prepare("SELECT row FROM final_one").all() as SqlRow[]).map((r) => parse<T>(r.row)));
  });
}

// ---------------------------------------------------------------------------------------------
// Dedup

export interface DedupOracleSpec<T> {
  readonly input: readonly OracleRecord<T>[];
  readonly key: (row: T) => string;
  readonly keep: "first" | "last";
  readonly time: "event" | "processing";
  /** Replaces the event-time order: `compare(a, b) < 0` means a is earlier. */
  readonly compare?: (a: T, b: T) => number;
}

/**
 * The rows dedup keeps, one per key (Flink's ROW_NUMBER dedup):
 * - processing time: `ORDER BY arrival ASC` (first) or `DESC` (last);
 * - event time: `ORDER BY ts ASC, arrival ASC` (first: the smallest time, ties to the earlier
 *   arrival) or `ORDER BY ts DESC, arrival DESC` (last: the largest time, ties to the later arrival);
 * - with `compare`, its order replaces `ts`: each row gets the rank "how many rows of its key are
 *   strictly earlier", so rows `compare` calls equal tie.
 * Retractions in the input are dropped (dedup dead-letters them). Returns the kept rows, sorted.
 */
export function sqlDedup<T>(spec: DedupOracleSpec<T>): T[] {
  const records = spec.input.map((r, arrival) => ({ arrival, ...changeRow(r.value), ts: r.ts }));
  const kept = records.filter((r) => isAddition(r.kind));
  const keys = kept.map((r) => spec.key(r.row));
  let order: (r: (typeof kept)[number], i: number) => number | undefined = () => undefined;
  if (spec.time === "event") {
    const compare = spec.compare;
    if (compare === undefined) order = (r) => requireTs(r.ts, "sqlDedup", r.arrival);
    else order = (r, i) => kept.filter((o, j) => keys[j] === keys[i] && compare(o.row, r.row) < 0).length;
  }
  return withDb((db) => {
    loadInput(
      db,
      kept.map((r, i) => ({ arrival: r.arrival, side: "one", kind: r.kind, k: keys[i]!, ts: order(r, i) ?? null, row: r.text })),
    );
    const by = spec.time === "processing" ? (spec.keep === "first" ? "arrival ASC" : "arrival DESC") : spec.keep === "first" ? "ts ASC, arrival ASC" : "ts DESC, arrival DESC";
    const rows = db
      .prepare(`SELECT row FROM (SELECT row, ROW_NUMBER() OVER (PARTITION BY k ORDER BY ${by}) AS rn FROM input) WHERE rn = 1`)
      .all() as SqlRow[];
    return sortRows(rows.map((r) => parse<T>(r.row)));
  });
}

// ---------------------------------------------------------------------------------------------
// dropUnchanged

export interface DropUnchangedOracleSpec<T, P> {
  readonly input: readonly OracleRecord<T>[];
  readonly key: (row: T) => string;
  readonly project: (row: T) => P;
}

/**
 * Loads the dropUnchanged input: `-U` records are left out (the operator ignores them), and each
 * remaining record's projection is stored as canonical JSON, so "deep-equal" is text equality.
 */
function loadProjected<T, P>(db: DatabaseSync, spec: DropUnchangedOracleSpec<T, P>): void {
  const rows: SqlRow[] = [];
  spec.input.forEach((r, arrival) => {
    const c = changeRow(r.value);
    if (c.kind === "-U") return;
    rows.push({ arrival, side: "one", kind: c.kind, k: spec.key(c.row), row: rowText(spec.project(c.row)) });
  });
  loadInput(db, rows);
}

/**
 * dropUnchanged's final rows: per key, the last `+I`/`+U`/`-D` by arrival; when it is an
 * addition, its projection is the key's row, when it is `-D`, the key has none.
 */
export function sqlDropUnchanged<T, P>(spec: DropUnchangedOracleSpec<T, P>): P[] {
  return withDb((db) => {
    loadProjected(db, spec);
    const rows = db
      .prepare(
        `SELECT row FROM (SELECT row, kind, ROW_NUMBER() OVER (PARTITION BY k ORDER BY arrival DESC) AS rn FROM input)
         WHERE rn = 1 AND ${ADDITION}`,
      )
      .all() as SqlRow[];
    return sortRows(rows.map((r) => parse<P>(r.row)));
  });
}

/**
 * dropUnchanged's whole output changelog in arrival order (for tests that check what it drops,
 * not only where it ends up). Per key, against the previous `+I`/`+U`/`-D` (`LAG`):
 * addition after nothing or `-D` → `+I p`; addition with an equal projection → nothing; addition
 * with another → `-U previous`, `+U p`; `-D` after an addition → `-D previous`; else nothing.
 */
export function sqlDropUnchangedChangelog<T, P>(spec: DropUnchangedOracleSpec<T, P>): Change<P>[] {
  return withDb((db) => {
    loadProjected(db, spec);
    const rows = db
      .prepare(
        `WITH seq AS (
           SELECT arrival, kind, row,
             LAG(kind) OVER (PARTITION BY k ORDER BY arrival) AS prev_kind,
             LAG(row) OVER (PARTITION BY k ORDER BY arrival) AS prev_row
           FROM input),
         held AS (
           SELECT arrival, kind, row, CASE WHEN prev_kind IN ('+I', '+U') THEN prev_row END AS last FROM seq)
         SELECT arrival, 0 AS n, '+I' AS out_kind, row AS out_row FROM held WHERE ${ADDITION} AND last IS NULL
         UNION ALL SELECT arrival, 0, '-U', last FROM held WHERE ${ADDITION} AND last IS NOT NULL AND last <> row
         UNION ALL SELECT arrival, 1, '+U', row FROM held WHERE ${ADDITION} AND last IS NOT NULL AND last <> row
         UNION ALL SELECT arrival, 0, '-D', last FROM held WHERE kind = '-D' AND last IS NOT NULL
         ORDER BY arrival, n`,
      )
      .all() as SqlRow[];
    return rows.map((r) => ({ rowKind: r.out_kind as RowKind, row: parse<P>(r.out_row) }));
  });
}

// ---------------------------------------------------------------------------------------------
// groupAggregate

export interface GroupAggregateOracleSpec<In, R> {
  readonly input: readonly OracleRecord<In>[];
  readonly key: (row: In) => string;
  /**
   * The aggregate columns of the SELECT, over the final input multiset `final_one(k, row)`, where
   * `row` is the input row's JSON: e.g. `COUNT(*) AS n, SUM(json_extract(row, '$.amount')) AS total`.
   */
  readonly select: string;
  /** Turns one result row (the `key` column plus the selected ones) into the operator's output row; default: as is. */
  readonly result?: (row: Record<string, SqlValue>, key: string) => R;
}

/**
 * groupAggregate's final rows: `SELECT k AS key, <select> FROM final_one GROUP BY k` over the
 * final multiset of the input changelog. A key whose rows were all retracted has no group, as the
 * operator's `-D` leaves nothing.
 */
export function sqlGroupAggregate<In, R = Record<string, SqlValue>>(spec: GroupAggregateOracleSpec<In, R>): R[] {
  return withDb((db) => {
    loadInput(
      db,
      spec.input.map((r, arrival) => {
        const c = changeRow(r.value);
        return { arrival, side: "one", kind: c.kind, k: spec.key(c.row), row: c.text };
      }),
    );
    createFinal(db, "one");
    const rows = db.prepare(`SELECT k AS key, ${spec.select} FROM final_one GROUP BY k`).all() as SqlRow[];
    return sortRows(
      rows.map((r) => {
        const plain = { ...r };
        return spec.result === undefined ? (plain as R) : spec.result(plain, String(r.key));
      }),
    );
  });
}

// ---------------------------------------------------------------------------------------------
// Joins

/**
 * `SELECT l.row AS l, r.row AS r FROM <left> l <type> JOIN <right> r ON <on>`, with RIGHT and
 * FULL OUTER JOIN emulated by LEFT JOIN + UNION ALL of the unmatched right rows on SQLite before
 * 3.39 (or when `emulate` says so, so the emulation is tested too).
 */
export function joinSql(type: JoinType, left: string, right: string, on: string, emulate = !hasOuterJoins()): string {
  if (!emulate || type === "inner" || type === "left") {
    const join = { inner: "JOIN", left: "LEFT JOIN", right: "RIGHT JOIN", full: "FULL OUTER JOIN" }[type];
    return `SELECT l.row AS l, r.row AS r FROM ${left} l ${join} ${right} r ON ${on}`;
  }
  const unmatchedRight = `SELECT NULL AS l, r.row AS r FROM ${right} r WHERE NOT EXISTS (SELECT 1 FROM ${left} l WHERE ${on})`;
  if (type === "right") return `SELECT l.row AS l, r.row AS r FROM ${right} r JOIN ${left} l ON ${on} UNION ALL ${unmatchedRight}`;
  return `SELECT l.row AS l, r.row AS r FROM ${left} l LEFT JOIN ${right} r ON ${on} UNION ALL ${unmatchedRight}`;
}

function sidedRows<L, R>(input: readonly SidedRecord<L, R>[], leftKey: (l: L) => string, rightKey: (r: R) => string): SqlRow[] {
  return input.map((rec, arrival) => {
    if (rec.side !== "left" && rec.side !== "right") throw new RangeError(`record ${arrival}: side must be "left" or "right"`);
    const c = changeRow<unknown>(rec.value);
    const k = rec.side === "left" ? leftKey(c.row as L) : rightKey(c.row as R);
    return { arrival, side: rec.side, kind: c.kind, k, ts: rec.ts ?? null, row: c.text };
  });
}

function outputs<L, R, Out>(rows: readonly SqlRow[], output: (l: L | null, r: R | null) => Out): Out[] {
  return sortRows(rows.map((p) => output(p.l === null ? null : parse<L>(p.l), p.r === null ? null : parse<R>(p.r))));
}

export interface JoinOracleSpec<L, R, Out> {
  readonly input: readonly SidedRecord<L, R>[];
  readonly leftKey: (l: L) => string;
  readonly rightKey: (r: R) => string;
  readonly type: JoinType;
  readonly output: (l: L | null, r: R | null) => Out;
  /** Use the UNION ALL emulation of RIGHT/FULL OUTER JOIN even where SQLite has them. */
  readonly emulateOuterJoins?: boolean;
}

/**
 * A regular (unbounded) join's final rows: the SQL join of both sides' final multisets on equal
 * keys, padded per `type`; `output` maps each pair (null for a padded side). Many-to-many and
 * duplicates follow from the multisets.
 */
export function sqlJoin<L, R, Out>(spec: JoinOracleSpec<L, R, Out>): Out[] {
  return withDb((db) => {
    loadInput(db, sidedRows(spec.input, spec.leftKey, spec.rightKey));
    createFinal(db, "left");
    createFinal(db, "right");
    const sql = joinSql(spec.type, "final_left", "final_right", "l.k = r.k", spec.emulateOuterJoins);
    return outputs(db.prepare(sql).all() as SqlRow[], spec.output);
  });
}

export interface IntervalJoinOracleSpec<L, R, Out> extends Omit<JoinOracleSpec<L, R, Out>, "type"> {
  /** Default "inner" (an `intervalJoin` without `type`). */
  readonly type?: JoinType;
  readonly lowerBoundMs: number;
  readonly upperBoundMs: number;
  /** The actor's watermark after each record: late records are left out (see the module note). */
  readonly watermarks?: readonly number[];
}

/**
 * An interval join's final rows: on-time additions of both sides joined on equal keys and
 * `l.ts + lower <= r.ts <= l.ts + upper` (inclusive), padded per `type`: an outer row with no
 * partner within its interval comes out with null for the other side. Every record is its own
 * row (duplicates included); retractions are dropped (dead-lettered).
 */
export function sqlIntervalJoin<L, R, Out>(spec: IntervalJoinOracleSpec<L, R, Out>): Out[] {
  const { lowerBoundMs: lower, upperBoundMs: upper } = spec;
  if (!Number.isFinite(lower) || !Number.isFinite(upper) || lower > upper) throw new RangeError("need finite bounds with lowerBoundMs <= upperBoundMs");
  spec.input.forEach((r, i) => requireTs(r.ts, "sqlIntervalJoin", i));
  return withDb((db) => {
    loadInput(db, sidedRows(spec.input, spec.leftKey, spec.rightKey));
    loadWatermarks(db, spec.watermarks, spec.input.length);
    for (const side of ["left", "right"]) {
      db.exec(`CREATE TABLE ${side}_rows AS SELECT i.arrival, i.k, i.ts, i.row FROM input i WHERE i.side = '${side}' AND i.${ADDITION} AND ${onTime("i")}`);
      db.exec(`CREATE INDEX ${side}_rows_by_key ON ${side}_rows (k, ts)`);
    }
    const on = `l.k = r.k AND r.ts BETWEEN l.ts + ${lower} AND l.ts + ${upper}`;
    const sql = joinSql(spec.type ?? "inner", "left_rows", "right_rows", on, spec.emulateOuterJoins);
    return outputs(db.prepare(sql).all() as SqlRow[], spec.output);
  });
}

export interface TemporalJoinOracleSpec<L, R, Out> {
  /** Left rows (probe side) and right versions, interleaved in arrival order. */
  readonly input: readonly SidedRecord<L, R>[];
  readonly leftKey: (l: L) => string;
  readonly rightKey: (r: R) => string;
  /** Default "inner". */
  readonly type?: "inner" | "left";
  readonly output: (l: L, r: R | null) => Out;
  /** The actor's watermark after each record: late left rows are left out, and a left row sees only the versions that arrived before it fired. */
  readonly watermarks?: readonly number[];
}

/**
 * A temporal (versioned, event-time) join's rows: for each on-time left addition `l`, the right
 * version of its key with the latest version time `<= l.ts`, later arrival winning equal times
 * (`ORDER BY v.ts DESC, v.arrival DESC LIMIT 1`), among `+I`/`+U`/plain (a version) and `-D`
 * (a delete version) records; `-U` is ignored. No version, or a delete version, is no match:
 * inner drops the row, left emits `output(l, null)`. With `watermarks`, only versions that
 * arrived by the record after which the watermark reached `l.ts` count (when the row fires; the
 * end of input if never).
 */
export function sqlTemporalJoin<L, R, Out>(spec: TemporalJoinOracleSpec<L, R, Out>): Out[] {
  spec.input.forEach((r, i) => requireTs(r.ts, "sqlTemporalJoin", i));
  return withDb((db) => {
    loadInput(db, sidedRows(spec.input, spec.leftKey, spec.rightKey));
    loadWatermarks(db, spec.watermarks, spec.input.length);
    const rows = db
      .prepare(
        `WITH lefts AS (
           SELECT l.arrival, l.k, l.ts, l.row,
             (SELECT MIN(w.arrival) FROM watermark w WHERE w.arrival >= l.arrival AND w.wm >= l.ts) AS fired_after
           FROM input l WHERE l.side = 'left' AND l.${ADDITION} AND ${onTime("l")})
         SELECT l.row AS l,
           (SELECT CASE WHEN v.kind = '-D' THEN NULL ELSE v.row END FROM input v
             WHERE v.side = 'right' AND v.kind <> '-U' AND v.k = l.k AND v.ts <= l.ts
               AND (l.fired_after IS NULL OR v.arrival <= l.fired_after)
             ORDER BY v.ts DESC, v.arrival DESC LIMIT 1) AS r
         FROM lefts l`,
      )
      .all() as SqlRow[];
    const kept = spec.type === "left" ? rows : rows.filter((p) => p.r !== null);
    return outputs<L, R, Out>(kept, (l, r) => spec.output(l as L, r));
  });
}

export interface LookupJoinOracleSpec<In, D, Out> {
  /** The records in arrival order, each with the dimension value it saw when processed (null: the key was missing). */
  readonly input: readonly { readonly value: In; readonly dim: D | null }[];
  /** Default "inner". */
  readonly type?: "inner" | "left";
  readonly output: (r: In, dim: D | null) => Out;
}

/**
 * A lookup join's rows: each record with the dimension value it saw at processing time (the test
 * says which: a bucket's value at that moment, or a cached one; `sqlDimensionAsOf` computes the
 * former from a write log). Inner keeps records that found a value, left pads the others.
 */
export function sqlLookupJoin<In, D, Out>(spec: LookupJoinOracleSpec<In, D, Out>): Out[] {
  return withDb((db) => {
    loadInput(
      db,
      spec.input.map((r, arrival) => ({ arrival, side: "one", kind: "+I", k: "", row: rowText(r.value), dim: r.dim === null || r.dim === undefined ? null : rowText(r.dim) })),
      ["dim"],
    );
    const where = spec.type === "left" ? "" : "WHERE dim IS NOT NULL";
    const rows = db.prepare(`SELECT row, dim FROM input ${where} ORDER BY arrival`).all() as SqlRow[];
    return sortRows(rows.map((p) => spec.output(parse<In>(p.row), p.dim === null ? null : parse<D>(p.dim))));
  });
}

/** One write to a dimension table (a KV bucket): `value: null` deletes the key. Equal `at`: the later write in the array wins. */
export interface DimensionWrite<D> {
  readonly key: string;
  readonly value: D | null;
  readonly at: number;
}

/**
 * What the dimension table held for each lookup `{ key, at }`: the latest write of the key with
 * `w.at <= at` (later in the log wins equal times), null when there is none or it was a delete.
 * Lookups at the same time as a write see it.
 */
export function sqlDimensionAsOf<D>(writes: readonly DimensionWrite<D>[], lookups: readonly { readonly key: string; readonly at: number }[]): (D | null)[] {
  return withDb((db) => {
    db.exec("CREATE TABLE writes (seq INTEGER PRIMARY KEY, k TEXT NOT NULL, at REAL NOT NULL, value TEXT)");
    db.exec("CREATE TABLE lookups (seq INTEGER PRIMARY KEY, k TEXT NOT NULL, at REAL NOT NULL)");
    insertAll(db, "writes", ["seq", "k", "at", "value"], writes.map((w, seq) => ({ seq, k: w.key, at: w.at, value: w.value === null ? null : rowText(w.value) })));
    insertAll(db, "lookups", ["seq", "k", "at"], lookups.map((q, seq) => ({ seq, k: q.key, at: q.at })));
    const rows = db
      .prepare(
        `SELECT q.seq, (SELECT w.value FROM writes w WHERE w.k = q.k AND w.at <= q.at ORDER BY w.at DESC, w.seq DESC LIMIT 1) AS value
         FROM lookups q ORDER BY q.seq`,
      )
      .all() as SqlRow[];
    return rows.map((r) => (r.value === null ? null : parse<D>(r.value)));
  });
}

// ---------------------------------------------------------------------------------------------
// The scenario's ends: the mirrored source table and the upsert bucket

/** An oplog record in the contract's shape (section 1); `before`/`after` are the row's images. */
export interface OplogShape<Row> {
  readonly op_type: "I" | "U" | "D";
  readonly table: string;
  readonly commit_ts: number;
  readonly changed_fields?: readonly string[];
  readonly before?: Row | null;
  readonly after?: Row | null;
}

export interface OplogTableOracleSpec<Row, P> {
  /** Oplog records as delivered (duplicates and all; the order does not matter). */
  readonly input: readonly OracleRecord<OplogShape<Row>>[];
  /** The row's identity within its table (the primary key). */
  readonly id: (row: Row) => string;
  /** What the pipeline keeps of a row (e.g. without `updated_at`); gets the table name too. */
  readonly project: (row: Row, table: string) => P;
}

/**
 * What a change-data-capture pipeline over an oplog must end with, whatever it dedups and drops
 * on the way: the source table's current rows, projected. Per `(table, id)` the operation with
 * the largest `commit_ts` (a duplicate delivery is the same operation) decides: a `D` means no
 * row, an `I`/`U` its `after` image. This is the target for scenario (a) — dedup of duplicated
 * deliveries, the changelog mapper and dropUnchanged — when every row's operations reach it in
 * commit order, as the generator's `deliverOplog` delivers them.
 */
export function sqlOplogTable<Row, P>(spec: OplogTableOracleSpec<Row, P>): P[] {
  return withDb((db) => {
    const rows: SqlRow[] = spec.input.map((r, arrival) => {
      const op = asChange(r.value).row;
      const image = op.op_type === "D" ? op.before : op.after;
      if (image === null || image === undefined) throw new RangeError(`oplog record ${arrival} (${op.op_type}) has no ${op.op_type === "D" ? "before" : "after"} image`);
      return {
        arrival,
        side: "one",
        kind: op.op_type,
        k: JSON.stringify([op.table, spec.id(image)]),
        ts: op.commit_ts,
        row: op.op_type === "D" ? null : rowText(spec.project(image, op.table)),
      };
    });
    loadInput(db, rows);
    const out = db
      .prepare(
        `SELECT row FROM (SELECT row, kind, ROW_NUMBER() OVER (PARTITION BY k ORDER BY ts DESC, arrival DESC) AS rn FROM input)
         WHERE rn = 1 AND kind <> 'D'`,
      )
      .all() as SqlRow[];
    return sortRows(out.map((r) => parse<P>(r.row)));
  });
}

/**
 * What an upsert sink leaves in its KV bucket after applying `changes` (in emission order): per
 * `key(row)`, the last change decides — `+I`/`+U` (or a plain record) puts its row, `-U`/`-D`
 * deletes it. Coalescing per checkpoint (last change wins) ends in the same place. Keys are the
 * raw `key(row)` values, before any encoding of characters KV keys cannot hold. When the final
 * multiset of `changes` has one row per key, this equals it keyed by `key`.
 */
export function sqlUpsertBucket<T>(changes: readonly (T | Change<T>)[], key: (row: T) => string): Map<string, T> {
  return withDb((db) => {
    loadInput(
      db,
      changes.map((value, arrival) => {
        const c = changeRow(value);
        return { arrival, side: "one", kind: c.kind, k: key(c.row), row: c.text };
      }),
    );
    const out = db
      .prepare(
        `SELECT k, row FROM (SELECT k, row, kind, ROW_NUMBER() OVER (PARTITION BY k ORDER BY arrival DESC) AS rn FROM input)
         WHERE rn = 1 AND ${ADDITION} ORDER BY k`,
      )
      .all() as SqlRow[];
    return new Map(out.map((r) => [String(r.k), parse<T>(r.row)]));
  });
}
