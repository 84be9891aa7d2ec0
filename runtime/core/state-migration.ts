/**
 * Taking saved state into code that declares it differently: schema migrations on restore.
 *
 * `planRestore` compares a savepoint's manifest with the functions of the job it is restored
 * into and decides, per state, whether its values are kept as they are, migrated (the declared
 * version differs and the declaration has a migration from the saved one), dropped (no longer
 * declared) or refused. It refuses rather than guesses: a changed kind, a missing migration, a
 * changed partition count or a function that became (or stopped being) a source is an
 * `IncompatibleSavepointError`, unless the caller names the state in `skip` to start it empty.
 * Everything the restore leaves behind or starts empty is listed in the plan so that the CLI can
 * say so — like Flink's allowNonRestoredState, but reported instead of silent.
 *
 * `migratePartition` then rewrites one partition's export by the plan: pure and deterministic,
 * no I/O, so the CLI, the supervisor and tests all run the same code. `migrateValue` is the same
 * migration for one value, for code that reads stored state directly.
 */
import type { StateDeclaration, StateDeclarations } from "../spec/state.ts";
import { parseKvKey, versionsKey } from "./kv-keys.ts";
import { CorruptSavepointError, type PartitionExport, type SavepointManifest } from "./savepoint.ts";
import { unwrapStored } from "./state-ttl.ts";
import { decodeValue, encodeValue } from "./wire.ts";
import { InputError, InvalidArgumentError } from "../errors.ts";

/** A function of the job a savepoint is restored into. */
export interface RestoreTarget {
  readonly name: string;
  readonly partitions: number;
  readonly isSource: boolean;
  readonly state: StateDeclarations;
}

/** How one saved state is restored: as stored (`from === to`) or migrated from `from` to `to`. */
export interface StateRestore {
  readonly kind: string;
  /** Schema version in the savepoint. */
  readonly from: number;
  /** Declared schema version. */
  readonly to: number;
  readonly declaration: StateDeclaration;
}

/** How one function's saved partitions are restored. */
export interface FunctionRestore {
  readonly name: string;
  readonly partitions: number;
  readonly isSource: boolean;
  /** Restored states by name; saved entries of any other state are dropped. */
  readonly states: ReadonlyMap<string, StateRestore>;
}

/** A (function, state) pair, for reports. */
export interface StateRef {
  readonly fn: string;
  readonly state: string;
}

/** What a restore of a savepoint into a job does; see `planRestore`. */
export interface RestorePlan {
  readonly job: string;
  readonly savepoint: string;
  readonly checkpoint: number;
  /** Target functions that have saved state to restore, by name. */
  readonly functions: ReadonlyMap<string, FunctionRestore>;
  /** States whose values are migrated, with the versions. */
  readonly migrated: ReadonlyArray<StateRef & { readonly from: number; readonly to: number }>;
  /** Saved functions the job no longer has: their state is not restored. */
  readonly droppedFunctions: readonly string[];
  /** Saved states their function no longer declares: not restored. */
  readonly droppedStates: readonly StateRef[];
  /** Functions of the job without saved state: they start empty. */
  readonly emptyFunctions: readonly string[];
  /** Declared states without saved values: they start empty. */
  readonly emptyStates: readonly StateRef[];
  /** Saved states the caller chose to start empty (`skip`), with why they could not be restored, if they could not. */
  readonly skipped: ReadonlyArray<StateRef & { readonly reason?: string }>;
}

export interface PlanRestoreOptions {
  /**
   * States (`"<fn>.<state>"`) to start empty instead of restoring them, e.g. one whose kind
   * changed and that will be bootstrapped otherwise. Their saved entries are dropped.
   */
  readonly skip?: ReadonlySet<string>;
}

/** The savepoint cannot be restored into this code; the message says what differs and what to do. */
export class IncompatibleSavepointError extends InputError {
  override readonly name = "IncompatibleSavepointError";
}

/** `skip` names a state that neither the savepoint nor the job has; fix the name. */
export class UnknownStateError extends InputError {
  override readonly name = "UnknownStateError";
}

/** A stored value has a schema version its declaration has no migration from; declare one. */
export class MissingMigrationError extends InputError {
  override readonly name = "MissingMigrationError";
}

/** A migration threw; the message names the function, state and key it threw for. Fix the migration. */
export class StateMigrationFailedError extends InputError {
  override readonly name = "StateMigrationFailedError";
}

/**
 * Plans restoring `manifest` into functions `target`. Throws `IncompatibleSavepointError` on the
 * first state or function that cannot be restored (unless skipped), naming job, function, state
 * and versions.
 */
export function planRestore(manifest: SavepointManifest, target: readonly RestoreTarget[], options: PlanRestoreOptions = {}): RestorePlan {
  const skip = options.skip ?? new Set<string>();
  const where = `savepoint ${manifest.id} of job "${manifest.job}"`;
  const saved = new Map(manifest.functions.map((f) => [f.name, f]));
  const targets = new Map(target.map((f) => [f.name, f]));
  for (const s of skip) {
    const dot = s.indexOf(".");
    const fn = s.slice(0, dot);
    const state = s.slice(dot + 1);
    if (dot < 0 || (saved.get(fn)?.state[state] === undefined && targets.get(fn)?.state[state] === undefined)) {
      throw new UnknownStateError(`cannot skip "${s}": neither the ${where} nor the job has a state "${state}" of a function "${fn}" (write <function>.<state>)`);
    }
  }

  const functions = new Map<string, FunctionRestore>();
  const migrated: Array<StateRef & { from: number; to: number }> = [];
  const droppedStates: StateRef[] = [];
  const emptyStates: StateRef[] = [];
  const skipped: Array<StateRef & { reason?: string }> = [];
  for (const t of target) {
    const f = saved.get(t.name);
    if (f === undefined) continue;
    const fn = `function "${t.name}" of ${where}`;
    if (f.isSource !== t.isSource) {
      const reads = (source: boolean) => (source ? "a user stream" : "other functions");
      throw new IncompatibleSavepointError(
        `${fn}: it read ${reads(f.isSource)} when saved and now reads ${reads(t.isSource)}; its input positions and watermarks cannot be carried over (rename the function to start it empty)`,
      );
    }
    if (f.partitions !== t.partitions) {
      throw new IncompatibleSavepointError(
        `${fn}: saved with ${f.partitions} partitions, the job has ${t.partitions}; state is partitioned by key (run \`eddy state repartition\` on the savepoint first, or deploy with ${f.partitions} partitions)`,
      );
    }
    const states = new Map<string, StateRestore>();
    for (const [name, s] of Object.entries(f.state)) {
      const decl = t.state[name];
      if (decl === undefined) {
        droppedStates.push({ fn: t.name, state: name });
        continue;
      }
      const version = decl.version ?? 1;
      const problem =
        decl.kind !== s.kind
          ? `kind changed from ${s.kind} to ${decl.kind}; values cannot be carried over (rename the state to start it empty, or skip it)`
          : s.version !== version && decl.migrations?.[s.version] === undefined
            ? `saved under schema version ${s.version}, declared version ${version}, and there is no migration from version ${s.version} (declare migrations: { ${s.version}: (old) => ... })`
            : undefined;
      if (skip.has(`${t.name}.${name}`)) {
        skipped.push({ fn: t.name, state: name, ...(problem === undefined ? {} : { reason: problem }) });
        continue;
      }
      if (problem !== undefined) throw new IncompatibleSavepointError(`${fn}, state "${name}": ${problem}`);
      states.set(name, { kind: s.kind, from: s.version, to: version, declaration: decl });
      if (s.version !== version) migrated.push({ fn: t.name, state: name, from: s.version, to: version });
    }
    for (const name of Object.keys(t.state)) {
      if (f.state[name] === undefined) emptyStates.push({ fn: t.name, state: name });
    }
    functions.set(t.name, { name: t.name, partitions: t.partitions, isSource: t.isSource, states });
  }
  return {
    job: manifest.job,
    savepoint: manifest.id,
    checkpoint: manifest.checkpoint,
    functions,
    migrated,
    droppedFunctions: manifest.functions.filter((f) => !targets.has(f.name)).map((f) => f.name),
    droppedStates,
    emptyFunctions: target.filter((t) => !saved.has(t.name)).map((t) => t.name),
    emptyStates,
    skipped,
  };
}

/**
 * One partition's export as the target code reads it: values of migrated states decoded,
 * migrated and re-encoded (a migration returning `undefined` drops the value); entries of
 * dropped, skipped and unknown states left out; timers, `_wm` and `_pos` kept as they are.
 * Entries keep their order. Throws `CorruptSavepointError` for entries that do not fit the
 * saved declarations, `StateMigrationFailedError` when a migration throws.
 */
export function migratePartition(plan: RestorePlan, exp: PartitionExport): PartitionExport {
  const f = plan.functions.get(exp.fn);
  if (f === undefined) throw new InvalidArgumentError(`function "${exp.fn}" is not restored by the plan (see droppedFunctions)`);
  if (!Number.isSafeInteger(exp.partition) || exp.partition < 0 || exp.partition >= f.partitions) {
    throw new CorruptSavepointError(`${exp.fn}/${exp.partition}: function "${exp.fn}" has ${f.partitions} partitions`);
  }
  const entries: Array<readonly [string, Uint8Array]> = [];
  for (const entry of exp.entries) {
    const [key, value] = entry;
    const parsed = parseKvKey(key);
    if (parsed === undefined || parsed.partition !== exp.partition) throw new CorruptSavepointError(`${exp.fn}/${exp.partition}: unexpected key ${JSON.stringify(key)}`);
    if (parsed.kind === "applied" || parsed.kind === "published") continue; // bookkeeping of the bucket it came from
    if (parsed.kind === "key-filter" || parsed.kind === "key-filter-block") continue; // of the keys of the bucket it came from
    if (parsed.kind === "versions") continue; // rewritten below: the values now have the declared versions
    if (parsed.kind !== "state") {
      entries.push(entry);
      continue;
    }
    // A bucket keeps the entries of states an older version dropped; a savepoint's manifest does
    // not know their version, so they are never restored.
    const s = f.states.get(parsed.state);
    if (s === undefined) continue;
    if ((parsed.subkey !== undefined) !== (s.kind === "map")) {
      throw new CorruptSavepointError(`${exp.fn}/${exp.partition}: key ${JSON.stringify(key)} does not fit ${s.kind} state "${parsed.state}"`);
    }
    if (s.from === s.to) {
      entries.push(entry); // the very bytes: nothing to decode
      continue;
    }
    let migrated: unknown;
    try {
      migrated = migrateValue(s.declaration, s.from, decodeValue(value));
    } catch (e) {
      if (e instanceof MissingMigrationError) throw e;
      const sub = parsed.subkey === undefined ? "" : `, entry ${JSON.stringify(parsed.subkey)}`;
      throw new StateMigrationFailedError(
        `function "${exp.fn}", state "${parsed.state}", key ${JSON.stringify(parsed.key)}${sub}: migration from version ${s.from} to ${s.to} failed: ${(e as Error).message}`,
        { cause: e },
      );
    }
    if (migrated !== undefined) entries.push([key, encodeValue(migrated)]);
  }
  const versions: Record<string, number> = {};
  for (const [name, st] of f.states) versions[name] = st.to;
  entries.push([versionsKey(exp.partition), encodeValue(versions)]);
  // Broadcast state (partition 0's export) has no versions: carried as it is (design note bq).
  return { fn: exp.fn, partition: exp.partition, entries, ...(exp.broadcast === undefined ? {} : { broadcast: exp.broadcast }) };
}

/**
 * A value stored under schema version `storedVersion` as declaration `decl` reads it: unchanged
 * when the versions agree, else through `decl.migrations[storedVersion]`. `value` is what is
 * stored for one key (one entry's value for map state); a list state's migration is applied to
 * each element. `undefined` means the value is dropped. Throws `MissingMigrationError`.
 * A value stored with a TTL envelope is migrated without it and comes back plain: a migration
 * rewrites the value, and its time to live starts again (design note bd).
 */
export function migrateValue(decl: StateDeclaration, storedVersion: number, stored: unknown): unknown {
  const version = decl.version ?? 1;
  if (storedVersion === version) return stored;
  const value = unwrapStored(stored).value;
  const migrate = decl.migrations?.[storedVersion];
  if (migrate === undefined) {
    throw new MissingMigrationError(`${decl.kind} state of schema version ${version} has no migration from stored version ${storedVersion}`);
  }
  if (decl.kind !== "list") return migrate(value);
  if (!Array.isArray(value)) throw new TypeError(`a stored list is not an array`);
  const out: unknown[] = [];
  for (const element of value) {
    const m = migrate(element);
    if (m !== undefined) out.push(m);
  }
  // An empty list is no list: the runtime deletes a key's list rather than storing [].
  return out.length === 0 ? undefined : out;
}
