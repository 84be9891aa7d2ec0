/**
 * Event-time windows with Flink's semantics.
 *
 * A window is a half-open interval of event time `[start, end)` in milliseconds. Window
 * assigners are plain, serialisable specs (they travel inside deployment specs) interpreted by
 * `assignWindows`; session windows are the one merging kind and are combined by `mergeSession`.
 * How windows are named in state and timers is in window-layout.ts.
 */
import type { TimeWindow, WindowSpec } from "../spec/windows.ts";
import { InvalidArgumentError } from "../errors.ts";

export type { TimeWindow, WindowSpec } from "../spec/windows.ts";

/**
 * The single window of the `global` assigner. It spans every safe-integer timestamp; its end is
 * `Number.MAX_SAFE_INTEGER` (rather than Infinity) so that it has a finite `maxTimestamp` (the
 * end itself, see `maxTimestamp`) and an event-time timer that only the final
 * `+Infinity` watermark (end of input) reaches — the counterpart of Flink's
 * `GlobalWindow.maxTimestamp() == Long.MAX_VALUE`.
 */
export const GLOBAL_WINDOW: TimeWindow = Object.freeze({
  start: Number.MIN_SAFE_INTEGER,
  end: Number.MAX_SAFE_INTEGER,
});

function isGlobal(w: TimeWindow): boolean {
  return w.start === GLOBAL_WINDOW.start && w.end === GLOBAL_WINDOW.end;
}

/**
 * The largest timestamp inside `w` (`end - 1`): the time at which its event-time timer fires and
 * the event time of its result. The global window's is its end, `Number.MAX_SAFE_INTEGER`: it
 * holds every safe-integer time, the last one included, as Flink's holds `Long.MAX_VALUE`.
 */
export function maxTimestamp(w: TimeWindow): number {
  return isGlobal(w) ? w.end : w.end - 1;
}

/** Whether `ts` lies in `w` (`start <= ts <= maxTimestamp(w)`; `ts < end` for all but the global window). */
export function windowContains(w: TimeWindow, ts: number): boolean {
  return w.start <= ts && ts <= maxTimestamp(w);
}

/**
 * Flink's `TimeWindow.intersects`: `a.start <= b.end && b.start <= a.end`. It compares the
 * bounds as if the windows were closed, so windows that merely touch (`a.end === b.start`) also
 * intersect. For sessions `[ts, ts + gap)` this means two events exactly `gap` apart belong to one
 * session, exactly as in Flink.
 */
export function intersects(a: TimeWindow, b: TimeWindow): boolean {
  return a.start <= b.end && b.start <= a.end;
}

/** The smallest window containing both `a` and `b`. */
export function cover(a: TimeWindow, b: TimeWindow): TimeWindow {
  return { start: Math.min(a.start, b.start), end: Math.max(a.end, b.end) };
}

/** Whether two windows are the same interval. */
export function sameWindow(a: TimeWindow, b: TimeWindow): boolean {
  return a.start === b.start && a.end === b.end;
}

/** Whether the spec's windows are merged per key (only sessions are). */
export function isMergingSpec(spec: WindowSpec): spec is Extract<WindowSpec, { kind: "session" }> {
  return spec.kind === "session";
}

function requirePositiveInt(name: string, v: number): void {
  if (!Number.isSafeInteger(v) || v <= 0) {
    throw new InvalidArgumentError(`window ${name} must be a positive integer number of ms, got ${v}`);
  }
}

/** Throws a RangeError if the spec's numbers are not usable (non-integer, zero or negative sizes). */
export function validateWindowSpec(spec: WindowSpec): void {
  switch (spec.kind) {
    case "tumbling":
      requirePositiveInt("size", spec.size);
      if (spec.offset !== undefined && !Number.isSafeInteger(spec.offset)) {
        throw new InvalidArgumentError(`window offset must be an integer number of ms, got ${spec.offset}`);
      }
      return;
    case "sliding":
      requirePositiveInt("size", spec.size);
      requirePositiveInt("slide", spec.slide);
      if (spec.slide > spec.size) {
        throw new InvalidArgumentError(`sliding window slide (${spec.slide}) larger than its size (${spec.size}) would drop records between windows`);
      }
      if (spec.offset !== undefined && !Number.isSafeInteger(spec.offset)) {
        throw new InvalidArgumentError(`window offset must be an integer number of ms, got ${spec.offset}`);
      }
      return;
    case "session":
      requirePositiveInt("gap", spec.gap);
      return;
    case "global":
      return;
    default:
      throw new InvalidArgumentError(`unknown window kind ${(spec as { kind: unknown }).kind}`);
  }
}

/**
 * Start of the grid cell of width `size` (shifted by `offset`) that contains `ts`. Uses a floor
 * modulo so negative timestamps land in the cell below them, not the one above (JavaScript's `%`
 * keeps the dividend's sign, as Java's does; Flink corrects the remainder the same way).
 * Any offset is accepted: only its value modulo `size` matters.
 */
export function windowStart(ts: number, size: number, offset = 0): number {
  const r = (ts - offset) % size;
  return r < 0 ? ts - r - size : ts - r;
}

/**
 * The windows of `spec` that contain `ts`, ordered by start.
 *
 * - tumbling: the one window of the `size` grid containing `ts`;
 * - sliding: every window `[s, s + size)` with `s` on the `slide` grid and `s <= ts < s + size`
 *   (`size / slide` windows when `slide` divides `size`; none when `slide > size` and `ts` falls
 *   in a gap);
 * - session: the proto-session `[ts, ts + gap)`, to be merged with the key's existing sessions
 *   by `mergeSession`;
 * - global: `GLOBAL_WINDOW`.
 *
 * Timestamps are integer milliseconds; a non-safe-integer `ts` is rejected so every window's
 * bounds, id and timers are whole milliseconds.
 */
export function assignWindows(spec: WindowSpec, ts: number): TimeWindow[] {
  if (!Number.isSafeInteger(ts)) {
    throw new InvalidArgumentError(`event timestamp must be an integer number of ms, got ${ts}`);
  }
  switch (spec.kind) {
    case "tumbling": {
      const start = windowStart(ts, spec.size, spec.offset ?? 0);
      return [{ start, end: start + spec.size }];
    }
    case "sliding": {
      const { size, slide } = spec;
      const lastStart = windowStart(ts, slide, spec.offset ?? 0);
      // Walk back from the last window containing ts to the first; then reverse so callers see
      // windows in ascending order (Flink returns them descending).
      let first = lastStart;
      while (first - slide > ts - size) first -= slide;
      const out: TimeWindow[] = [];
      for (let s = first; s <= lastStart; s += slide) {
        if (s + size > ts) out.push({ start: s, end: s + size });
      }
      return out;
    }
    case "session":
      return [{ start: ts, end: ts + spec.gap }];
    case "global":
      return [GLOBAL_WINDOW];
    default:
      throw new InvalidArgumentError(`unknown window kind ${(spec as { kind: unknown }).kind}`);
  }
}

/** Result of adding a session window to a key's set of sessions. */
export interface SessionMerge {
  /** The session that now contains the added window. */
  readonly merged: TimeWindow;
  /**
   * Existing sessions folded into `merged`, whose state (and timers) must move to `merged`. An
   * existing session identical to `merged` is *not* listed: its state already lives under
   * `merged`'s key. Empty when `merged` is new or the added window fell inside one session.
   */
  readonly absorbed: TimeWindow[];
}

/**
 * Adds the proto-session `added` to a key's `existing` sessions, Flink-style: every existing
 * session that `intersects` the growing result (touching counts) is absorbed, repeatedly, so a
 * window bridging two sessions joins all three. The key's new session set is
 * `existing − absorbed − {merged} + {merged}`.
 *
 * The final set of sessions is independent of the order in which windows are added: it is the
 * set of connected components of the closed intervals `[start, end]`.
 */
export function mergeSession(existing: readonly TimeWindow[], added: TimeWindow): SessionMerge {
  let start = added.start;
  let end = added.end;
  const taken = new Array<boolean>(existing.length).fill(false);
  // Existing sets produced by mergeSession never intersect each other, so one pass suffices;
  // iterating to a fixpoint keeps the result right for any input set.
  let grew = true;
  while (grew) {
    grew = false;
    for (let i = 0; i < existing.length; i++) {
      if (taken[i]) continue;
      const w = existing[i];
      if (w.start <= end && start <= w.end) {
        taken[i] = true;
        if (w.start < start) start = w.start;
        if (w.end > end) end = w.end;
        grew = true;
      }
    }
  }
  const merged: TimeWindow = { start, end };
  const absorbed: TimeWindow[] = [];
  for (let i = 0; i < existing.length; i++) {
    if (taken[i] && !(existing[i].start === start && existing[i].end === end)) absorbed.push(existing[i]);
  }
  return { merged, absorbed };
}
