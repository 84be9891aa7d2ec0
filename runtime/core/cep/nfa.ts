/**
 * The CEP matcher of one key: an NFA over a compiled pattern whose state is plain data.
 *
 * Its state lives in keyed state (checkpointed, readable through the state service, bounded),
 * so it is made of plain objects, arrays and numbers that msgpack encodes, never closures or
 * Maps. Partial matches share their events as Flink's SharedBuffer does: every event a partial
 * match took is stored once per key with a reference count, and each partial match points at a
 * node of a chain (event, stage, previous node), so a partial match costs a position and a few
 * numbers however many events it holds, and branches share their common prefix. What a match is
 * is defined in design note bp; how this NFA finds exactly those matches is design note br.
 *
 * Every step is a pure function of (state, input): `advance` feeds the key's next event in
 * processing order (ascending event time, ties in arrival order), `advanceTime` moves time
 * (the watermark). Each returns what completed, in the note's emission order after the skip
 * strategy, what timed out, and how many partial matches the cap dropped.
 */
import type { Contiguity, Match, MatchView } from "../../spec/cep.ts";
import type { ConditionStats } from "./conditions.ts";
import { END, leafAt, runLength, type CompiledPattern, type Leaf } from "./pattern.ts";

/**
 * A partial match (short field names: there may be many in state).
 * - `s`, `t`: index and event time of its first event;
 * - `l`, `n`: index of its last event and the shared-buffer node holding it;
 * - `p`: its position in the pattern (pattern.ts);
 * - `r`: index of the first event of the current leaf's run (for `until`);
 * - `u`: 1 once the run's `until` condition held (the run takes nothing more);
 * - `k`: indices into `options(p)` that can no longer be taken (contiguity, negation or greedy
 *   ruled them out on an event it skipped).
 */
export interface PartialMatch {
  s: number;
  t: number;
  l: number;
  n: number;
  p: number[];
  r: number;
  u: 0 | 1;
  k: number[];
}

/** The matcher state of one key. Plain data (msgpack). */
export interface NfaState {
  /** Layout version of this object. */
  v: 1;
  /** Index the next event gets (events of this key fed so far). */
  next: number;
  /** Time reached: the largest event time fed or time advanced to. */
  time: number;
  /** Next node id. */
  seq: number;
  /** Shared buffer, events: index → [value, event time, references from nodes]. */
  events: Record<string, [unknown, number, number]>;
  /** Shared buffer, nodes: id → [event index, leaf id, previous node id or -1, references]. */
  nodes: Record<string, [number, number, number, number]>;
  /** Live partial matches, oldest first. */
  partial: PartialMatch[];
  /** Suppressed intervals of start indices by the skip strategy, flat [from, to) pairs. */
  suppressed: number[];
  /** Partial matches dropped by the cap, ever. */
  dropped: number;
  /** CEL evaluations that failed and counted as false, ever. */
  celErrors: number;
}

/** An event of a match or partial match as the matcher returns it. */
export interface MatchedEvent {
  readonly value: unknown;
  readonly timestamp: number;
  /** Its index among this key's events in processing order. */
  readonly index: number;
}

/** What one step of the matcher produced. */
export interface StepResult {
  /** Completed matches, in emission order, after the skip strategy. */
  readonly matches: Match<MatchedEvent>[];
  /** Partial matches that timed out (`within`), with the events they had. */
  readonly timedOut: Match<MatchedEvent>[];
  /** Partial matches the cap dropped in this step. */
  readonly dropped: number;
}

/** What the caller tells the matcher besides the event. */
export interface StepContext {
  readonly key: string;
  /** Entity relations (`MatchView.seen`) for the event with index `index`; default: nothing seen. */
  readonly seen?: (field: string, value: unknown, index: number) => boolean;
  /**
   * Most partial matches kept for this key (default: no bound). New partial matches beyond it
   * are dropped (the newest go: older ones are nearer to completing) and counted.
   */
  readonly maxPartialMatches?: number;
}

/** An empty matcher state. */
export function initialState(): NfaState {
  return { v: 1, next: 0, time: -Infinity, seq: 0, events: {}, nodes: {}, partial: [], suppressed: [], dropped: 0, celErrors: 0 };
}

/** The number of partial matches a state holds. */
export function partialMatchCount(state: NfaState): number {
  return state.partial.length;
}

// --- shared buffer -----------------------------------------------------------------------------

function addNode(state: NfaState, index: number, value: unknown, ts: number, leaf: number, prev: number): number {
  const id = state.seq++;
  const ev = state.events[index];
  if (ev === undefined) state.events[index] = [value, ts, 1];
  else ev[2]++;
  if (prev >= 0) state.nodes[prev]![3]++;
  state.nodes[id] = [index, leaf, prev, 0];
  return id;
}

function retain(state: NfaState, node: number): void {
  state.nodes[node]![3]++;
}

function release(state: NfaState, node: number): void {
  let id = node;
  while (id >= 0) {
    const n = state.nodes[id]!;
    if (--n[3] > 0) return;
    delete state.nodes[id];
    const ev = state.events[n[0]]!;
    if (--ev[2] === 0) delete state.events[n[0]];
    id = n[2];
  }
}

/** The (event index, leaf id) pairs of a chain, first event first. */
function chain(state: NfaState, node: number): Array<[number, number]> {
  const out: Array<[number, number]> = [];
  for (let id = node; id >= 0; id = state.nodes[id]![2]) {
    const n = state.nodes[id]!;
    out.push([n[0], n[1]]);
  }
  return out.reverse();
}

function matchOf(state: NfaState, compiled: CompiledPattern, node: number): Match<MatchedEvent> {
  const out: Record<string, MatchedEvent[]> = {};
  for (const [index, leaf] of chain(state, node)) {
    const ev = state.events[index]!;
    (out[compiled.leaves[leaf]!.name] ??= []).push({ value: ev[0], timestamp: ev[1], index });
  }
  return out;
}

// --- the step ------------------------------------------------------------------------------------

interface Completed {
  readonly node: number;
  /** (event index, leaf id) pairs, for ordering and the skip strategy. */
  readonly seq: ReadonlyArray<[number, number]>;
}

/** Note bp's order of matches completed at one point: first event, index sequence, label sequence. */
function compareCompleted(a: Completed, b: Completed): number {
  const n = Math.min(a.seq.length, b.seq.length);
  for (let i = 0; i < n; i++) if (a.seq[i]![0] !== b.seq[i]![0]) return a.seq[i]![0] - b.seq[i]![0];
  if (a.seq.length !== b.seq.length) return a.seq.length - b.seq.length;
  for (let i = 0; i < n; i++) if (a.seq[i]![1] !== b.seq[i]![1]) return a.seq[i]![1] - b.seq[i]![1];
  return 0;
}

function isSuppressed(state: NfaState, start: number): boolean {
  const s = state.suppressed;
  for (let i = 0; i < s.length; i += 2) if (start >= s[i]! && start < s[i + 1]!) return true;
  return false;
}

function suppress(state: NfaState, from: number, to: number): void {
  if (to <= from) return;
  state.suppressed.push(from, to);
}

/** The skip point `P(M)` of note bp. */
function skipPoint(compiled: CompiledPattern, seq: ReadonlyArray<[number, number]>): number {
  const first = seq[0]![0];
  const last = seq[seq.length - 1]![0];
  switch (compiled.skip.strategy) {
    case "noSkip":
      return first;
    case "skipToNext":
      return first + 1;
    case "skipPastLastEvent":
      return last + 1;
    case "skipToFirst": {
      const hit = seq.find(([, leaf]) => compiled.skipLeaves.has(leaf));
      return hit === undefined ? first : hit[0];
    }
    case "skipToLast": {
      let point = first;
      for (const [index, leaf] of seq) if (compiled.skipLeaves.has(leaf)) point = index;
      return point;
    }
  }
}

/**
 * Orders the matches completed at one point, drops duplicates (two parses of one labelled
 * sequence are one match) and those the skip strategy suppresses, emits the rest, then drops
 * the partial matches whose start became suppressed.
 */
function emitAtPoint(state: NfaState, compiled: CompiledPattern, completed: Completed[], out: Match<MatchedEvent>[]): void {
  if (completed.length === 0) return;
  completed.sort(compareCompleted);
  let previous: Completed | undefined;
  for (const c of completed) {
    if (previous !== undefined && compareCompleted(previous, c) === 0) continue;
    previous = c;
    const first = c.seq[0]![0];
    if (isSuppressed(state, first)) continue;
    out.push(matchOf(state, compiled, c.node));
    suppress(state, first, skipPoint(compiled, c.seq));
  }
  for (const c of completed) release(state, c.node);
  if (state.suppressed.length > 0) {
    state.partial = state.partial.filter((pm) => {
      if (!isSuppressed(state, pm.s)) return true;
      release(state, pm.n);
      return false;
    });
  }
}

/** Forgets suppressed intervals that no partial match or future event can fall into. */
function compactSuppressed(state: NfaState): void {
  if (state.suppressed.length === 0) return;
  let low = state.next;
  for (const pm of state.partial) low = Math.min(low, pm.s);
  const kept: number[] = [];
  for (let i = 0; i < state.suppressed.length; i += 2) if (state.suppressed[i + 1]! > low) kept.push(state.suppressed[i]!, state.suppressed[i + 1]!);
  state.suppressed = kept;
}

/**
 * The view of a partial match for one event. `matched` is built on first use: many conditions
 * look at the event alone, and a view is made per partial match and event.
 */
function viewOf(state: NfaState, compiled: CompiledPattern, node: number, ctx: StepContext, seen: MatchView["seen"]): MatchView {
  let matched: Record<string, unknown[]> | undefined;
  return {
    get matched() {
      if (matched === undefined) {
        matched = {};
        for (const leaf of compiled.leaves) if (!leaf.negated) matched[leaf.name] = [];
        if (node >= 0) for (const [i, leaf] of chain(state, node)) matched[compiled.leaves[leaf]!.name]!.push(state.events[i]![0]);
      }
      return matched;
    },
    key: ctx.key,
    seen,
  };
}

/** `MatchView.seen` for the event with index `index`. */
function seenFor(ctx: StepContext, index: number): MatchView["seen"] {
  const seen = ctx.seen;
  return seen === undefined ? () => false : (field, value) => seen(field, value, index);
}

/**
 * Time reaches `t` (before an event at `t`, or the watermark): partial matches whose window
 * (`within`) closed complete if they end in a negated stage still unviolated, else time out.
 */
function reachTime(state: NfaState, compiled: CompiledPattern, t: number, result: { matches: Match<MatchedEvent>[]; timedOut: Match<MatchedEvent>[] }): void {
  if (t > state.time) state.time = t;
  const within = compiled.within;
  if (within === undefined || !state.partial.some((pm) => pm.t + within <= t)) return;
  const completed: Completed[] = [];
  const expired: PartialMatch[] = [];
  state.partial = state.partial.filter((pm) => {
    if (pm.t + within > t) return true;
    const opts = compiled.options(pm.p);
    const ends = opts.some((o, i) => o.leaf === END && !pm.k.includes(i));
    if (ends) completed.push({ node: pm.n, seq: chain(state, pm.n) });
    else expired.push(pm);
    return false;
  });
  emitAtPoint(state, compiled, completed, result.matches);
  for (const pm of expired) {
    if (!isSuppressed(state, pm.s)) result.timedOut.push(matchOf(state, compiled, pm.n));
    release(state, pm.n);
  }
}

/**
 * Moves time to `t` (the watermark): completes the partial matches ending in a negated stage
 * whose deadline passed and times out the others whose `within` ran out. Returns what happened;
 * `state` is updated in place.
 */
export function advanceTime(compiled: CompiledPattern, state: NfaState, t: number): StepResult {
  const result = { matches: [] as Match<MatchedEvent>[], timedOut: [] as Match<MatchedEvent>[], dropped: 0 };
  reachTime(state, compiled, t, result);
  compactSuppressed(state);
  return result;
}

/**
 * Feeds the key's next event (processing order: its event time is at least every earlier one's
 * and at least the time reached). Returns what completed, timed out or was dropped; `state` is
 * updated in place.
 * @throws RangeError for an event earlier than the time already reached
 */
export function advance(compiled: CompiledPattern, state: NfaState, value: unknown, timestamp: number, ctx: StepContext): StepResult {
  if (!(timestamp >= state.time)) throw new RangeError(`CEP events must come in event-time order: ${timestamp} is before ${state.time}`);
  const result = { matches: [] as Match<MatchedEvent>[], timedOut: [] as Match<MatchedEvent>[], dropped: 0 };
  reachTime(state, compiled, timestamp, result);
  const k = state.next++;
  const stats: ConditionStats = { celErrors: 0 };
  const where = (leaf: Leaf, view: MatchView) => leaf.where(value, view, stats);

  const kept: PartialMatch[] = [];
  const created: PartialMatch[] = [];
  const completed: Completed[] = [];
  /** Nodes made for this event, by (previous node, leaf): one labelled sequence, one node. */
  const madeNodes = new Map<string, number>();
  const nodeFor = (prev: number, leaf: number): number => {
    const key = `${prev}:${leaf}`;
    let id = madeNodes.get(key);
    if (id === undefined) {
      id = addNode(state, k, value, timestamp, leaf, prev);
      madeNodes.set(key, id);
    }
    return id;
  };
  /** New partial matches by (node, position), so two parses reaching the same place are one. */
  const madePartials = new Set<string>();
  const land = (node: number, start: number, startTs: number, pos: readonly number[], runFirst: number, closed: 0 | 1): void => {
    const id = `${node}|${pos.join(",")}|${runFirst}|${closed}`;
    if (madePartials.has(id)) return;
    madePartials.add(id);
    const opts = compiled.options(pos);
    let ends = false;
    const killed: number[] = [];
    opts.forEach((o, i) => {
      if (o.leaf !== END) return;
      if (o.relaxedNegs.length === 0 && o.strictNegs.length === 0) ends = true;
    });
    if (ends) {
      retain(state, node);
      completed.push({ node, seq: chain(state, node) });
      // Ways to end past a negated stage would complete the same match again later.
      opts.forEach((o, i) => {
        if (o.leaf === END) killed.push(i);
      });
    }
    if (killed.length === opts.length) return;
    retain(state, node);
    // Positions are never changed in place, so partial matches share the compiled pattern's arrays.
    created.push({ s: start, t: startTs, l: k, n: node, p: pos as number[], r: runFirst, u: closed, k: killed });
  };

  const seen = seenFor(ctx, k);
  // Per partial match, whether the event fits each leaf: 0 unknown, 1 yes, 2 no (reused, reset per partial match).
  const fits = new Int8Array(compiled.leaves.length);
  for (const pm of state.partial) {
    const view = viewOf(state, compiled, pm.n, ctx, seen);
    const leaf = leafAt(compiled, pm.p);
    const run = runLength(pm.p);
    const next = k === pm.l + 1;
    const closed = pm.u === 1 || (leaf.until !== undefined && leaf.until(value, view, stats));
    // Greedy (note bp, 4): while the loop could take this event, no way out of it may take it or a later one.
    const canGrow = leaf.max === null || run < leaf.max;
    const greedyBlock = leaf.greedy && canGrow && !closed && (leaf.inner !== "strict" || next) && where(leaf, view);
    const opts = compiled.options(pm.p);
    fits.fill(0);
    const fitsLeaf = (id: number): boolean => {
      if (fits[id] === 0) fits[id] = where(compiled.leaves[id]!, view) ? 1 : 2;
      return fits[id] === 1;
    };
    const violates = (negs: readonly number[]): boolean => {
      for (const id of negs) if (fitsLeaf(id)) return true;
      return false;
    };
    let killed = pm.k;
    const kill = (i: number): void => {
      if (killed === pm.k) killed = [...pm.k];
      killed.push(i);
    };
    for (let i = 0; i < opts.length; i++) {
      const o = opts[i]!;
      if (pm.k.includes(i)) continue;
      if (o.leaf === END) {
        // Events at or after the deadline never get here: time reached it first (note bp, 5).
        if (violates(o.relaxedNegs) || (next && violates(o.strictNegs))) kill(i);
        continue;
      }
      if ((next && violates(o.strictNegs)) || (o.loop ? closed : greedyBlock)) {
        kill(i);
        continue;
      }
      if (permits(o.rule, next) && fitsLeaf(o.leaf)) {
        land(nodeFor(pm.n, o.leaf), pm.s, pm.t, o.pos, o.loop ? pm.r : k, o.loop && closed ? 1 : 0);
      }
      // Skipping this event: a strict step can no longer be taken, a relaxed one not if the event fit.
      if (o.rule === "strict" || (o.rule === "relaxed" && fitsLeaf(o.leaf)) || violates(o.relaxedNegs)) kill(i);
    }
    pm.u = closed ? 1 : 0;
    if (killed !== pm.k) pm.k = killed.sort((a, b) => a - b);
    if (pm.k.length === opts.length) release(state, pm.n);
    else kept.push(pm);
  }

  const empty = viewOf(state, compiled, -1, ctx, seen);
  for (const o of compiled.starts) {
    if (where(compiled.leaves[o.leaf]!, empty)) land(nodeFor(-1, o.leaf), k, timestamp, o.pos, k, 0);
  }
  // Nodes are created with no reference; one that no partial match or completion took goes now.
  for (const id of madeNodes.values()) {
    if (state.nodes[id]![3] === 0) {
      state.nodes[id]![3] = 1;
      release(state, id);
    }
  }

  state.partial = kept;
  const cap = ctx.maxPartialMatches ?? Infinity;
  for (const pm of created) {
    if (state.partial.length < cap) state.partial.push(pm);
    else {
      result.dropped++;
      release(state, pm.n);
    }
  }
  // The cap drops before matches are emitted so that a dropped partial match's completion (made
  // by this very event) still counts: completions do not live in state.
  emitAtPoint(state, compiled, completed, result.matches);
  state.dropped += result.dropped;
  state.celErrors += stats.celErrors;
  compactSuppressed(state);
  return result;
}

function permits(rule: Contiguity, next: boolean): boolean {
  return rule !== "strict" || next;
}
