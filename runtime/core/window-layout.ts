/**
 * How window operators keep their windows in keyed state and timers — one description, used by
 * `windowed()` (runtime/sdk/windows.ts), the bootstrap writer that fills a windowed function's
 * windows (runtime/sdk/bootstrap.ts) and `windowJoin` (runtime/sdk/joins.ts), so that what one
 * writes the others read. It is stored layout: checkpoints, savepoints and bootstrapped state
 * depend on it, so changing anything here needs a migration (design note x).
 *
 * - A window is named by its **id**, its start in decimal (`String(start)`); the global window's
 *   id is the string of `Number.MIN_SAFE_INTEGER`. A grid window's end follows from the window
 *   size; a session's end is stored next to its accumulator.
 * - `windowed()`: map state `windows`, sub-key = id, value = the accumulator (a session:
 *   `[end, accumulator]`). Timers `"f" + id` at the window's max timestamp (fires it) and, when the
 *   allowed lateness leaves a later time, `"c" + id` at `maxTimestamp + lateness` (drops it).
 * - `windowJoin`: map states `left` and `right`, sub-key = id, value = that side's records in
 *   the window; one timer named by the bare id at the window's max timestamp.
 */
import { GLOBAL_WINDOW, maxTimestamp, type TimeWindow, type WindowSpec } from "./windows.ts";

/** The map state of a `windowed()` function: one entry per open window of a key. */
export const WINDOWS_STATE = "windows";
/** The map states of a `windowJoin`: each side's records, one entry per window of a key. */
export const JOIN_LEFT_STATE = "left";
export const JOIN_RIGHT_STATE = "right";

/** The id of the window starting at `start`: the sub-key of its state and the suffix of its timers. */
export function windowId(start: number): string {
  // Every record asks for the ids of its windows, and the open windows are few: remembering their
  // strings saves a number-to-string conversion of a 13-digit start per window and record
  // (`String(start)` was 2.7 % of q5's profile with a checkpoint every second). Direct-mapped by
  // the start's low bits, so that starts that never repeat (sessions of many keys) cost a slot
  // write, not a map that fills and is cleared.
  const slot = start & (ID_SLOTS - 1);
  if (idStarts[slot] === start) return idStrings[slot]!;
  const id = String(start);
  idStarts[slot] = start;
  idStrings[slot] = id;
  return id;
}

const ID_SLOTS = 1024;
const idStarts = new Float64Array(ID_SLOTS).fill(Number.NaN);
const idStrings: string[] = new Array<string>(ID_SLOTS).fill("");

/**
 * The id under which the window a writer names by `start` is stored: the global window is the
 * one window of its kind, whatever start is given.
 */
export function windowIdOf(spec: Pick<WindowSpec, "kind">, start: number): string {
  return windowId(spec.kind === "global" ? GLOBAL_WINDOW.start : start);
}

/** The window of a fixed grid (tumbling, sliding) or the global window that `id` names. */
export function gridWindowOf(spec: WindowSpec, id: string): TimeWindow {
  if (spec.kind === "global") return GLOBAL_WINDOW;
  if (spec.kind === "session") throw new TypeError("a session's end is stored with it, not implied by its id");
  const start = Number(id);
  return { start, end: start + spec.size };
}

/** Stored value of a session window of `windowed()`: its current end and its accumulator. */
export type SessionEntry<Acc> = [end: number, acc: Acc];

/** Name of the timer that fires window `id` of `windowed()`. */
export function firingTimer(id: string): string {
  return "f" + id;
}

/** Name of the timer that drops window `id` of `windowed()` once its allowed lateness is over. */
export function cleanupTimer(id: string): string {
  return "c" + id;
}

/** Whether a `windowed()` timer is a firing timer (else a cleanup timer). */
export function isFiringTimer(name: string): boolean {
  return name.startsWith("f");
}

/** The id of the window a `windowed()` timer belongs to. */
export function timerWindowId(name: string): string {
  return name.slice(1);
}

/** Name of the one timer of window `id` of a `windowJoin`: the id itself. */
export function joinTimer(id: string): string {
  return id;
}

/** The id of the window a `windowJoin` timer belongs to. */
export function joinTimerWindowId(name: string): string {
  return name;
}

/**
 * When window `w` is dropped: its max timestamp plus the allowed lateness, capped so that the
 * timer stays storable (the global window's max timestamp is already the largest safe integer).
 */
export function cleanupTime(w: TimeWindow, lateness: number): number {
  return Math.min(maxTimestamp(w) + lateness, Number.MAX_SAFE_INTEGER);
}

/**
 * Whether `w` gets a cleanup timer: only if that is later than its firing. Otherwise (no
 * lateness, or the global window) the firing drops the window — a cleanup at the same time as
 * the firing could run first (timers of equal time fire by name) and drop it unfired.
 */
export function hasCleanupTimer(w: TimeWindow, lateness: number): boolean {
  return cleanupTime(w, lateness) > maxTimestamp(w);
}

/** Whether a record for `w` is too late: the watermark reached `w`'s max timestamp plus the lateness. */
export function isLateFor(w: TimeWindow, lateness: number, watermark: number): boolean {
  return maxTimestamp(w) + lateness <= watermark;
}

/**
 * Registers the timers of window `id` of `windowed()` as a window with state gets them: the
 * firing, and the cleanup when there is one.
 */
export function registerWindowTimers(
  timers: { registerEventTimeTimer(timestamp: number, name?: string): void },
  w: TimeWindow,
  id: string,
  lateness: number,
): void {
  timers.registerEventTimeTimer(maxTimestamp(w), firingTimer(id));
  if (hasCleanupTimer(w, lateness)) timers.registerEventTimeTimer(cleanupTime(w, lateness), cleanupTimer(id));
}
