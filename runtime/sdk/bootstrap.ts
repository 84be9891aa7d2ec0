/**
 * Bootstrapping state: filling a function's state from old data when no savepoint of it can be
 * restored (the accumulator changed, the savepoint is lost, the partition count changed).
 *
 * A bootstrap module (`eddy state bootstrap <job> <fn> --from … --with <module>`) receives the old
 * items one at a time — the state entries of an old savepoint, the lines of a file, the messages
 * of a stream — and writes new state for the item's key through the very API the function uses
 * (`ctx.state`, `ctx.timers`), plus `ctx.windows` for windowed functions, which also registers
 * the timers that fire a window, so bootstrapped windows fire like any other. What it writes is
 * sent to the function as writes through its input log (state-writes.ts), so it works with the
 * job stopped or running.
 */
import { gridWindowOf, registerWindowTimers, windowIdOf, WINDOWS_STATE, type SessionEntry } from "../core/window-layout.ts";
import type { TimeWindow, WindowSpec } from "../core/windows.ts";
import type { StateDeclarations, StateHandles } from "./state.ts";
import type { TimerService } from "./function.ts";

/** One entry of an old savepoint, decoded: what a bootstrap from `savepoint:<id>` receives. */
export interface SavepointEntry {
  /** The function of the savepoint the entry belongs to. */
  readonly fn: string;
  readonly state: string;
  readonly key: string;
  /** The map entry, for map state (a windowed function's window: its start, as a string). */
  readonly subkey?: string;
  readonly value: unknown;
}

/** Writes the contents of a window of a `windowed()` function. */
export interface WindowWriter<Acc = any> {
  /**
   * Sets the accumulator of the window starting at `start` (for session windows give its `end`)
   * and registers the timers that fire it (and clean it up after the allowed lateness).
   */
  put(window: { readonly start: number; readonly end?: number }, accumulator: Acc): void;
  /** The accumulator written so far for the window starting at `start`. */
  get(start: number): Acc | undefined;
}

/** What a bootstrap module sees: the function's state API, scoped to the item's key. */
export interface BootstrapContext<S extends StateDeclarations = StateDeclarations> {
  readonly key: string;
  readonly state: StateHandles<S>;
  readonly timers: TimerService;
  /** For windowed functions; using it on another function throws. */
  readonly windows: WindowWriter;
}

/**
 * A bootstrap module's default export.
 * @example
 * // Old windows counted views; the new accumulator is { count, users }.
 * export default defineBootstrap<SavepointEntry>({
 *   bootstrap(ctx, e) {
 *     if (e.state === "windows") ctx.windows.put({ start: Number(e.subkey) }, { count: e.value as number, users: [] });
 *   },
 * });
 */
export interface BootstrapSpec<In = any, S extends StateDeclarations = StateDeclarations> {
  /** The key whose state an item writes (default: the item's `key` field, as savepoint entries have). */
  readonly key?: (item: In) => string;
  /** Writes new state for one old item. */
  bootstrap(ctx: BootstrapContext<S>, item: In): void;
}

export function defineBootstrap<In = SavepointEntry, S extends StateDeclarations = StateDeclarations>(spec: BootstrapSpec<In, S>): BootstrapSpec<In, S> {
  if (typeof spec?.bootstrap !== "function") throw new TypeError("defineBootstrap needs a bootstrap(ctx, item) function");
  return spec;
}

/** Window layout needed to write windows (FunctionSpec.windowing). */
interface Layout {
  readonly window: WindowSpec;
  readonly allowedLatenessMs: number;
}

/**
 * The `ctx.windows` of a windowed function, over its `windows` map state and timers, stored as
 * `windowed()` stores a window (runtime/core/window-layout.ts): the accumulator (a session:
 * `[end, acc]`) under the window's id, its firing timer, and its cleanup timer if it has one.
 */
export function windowWriter(layout: Layout | undefined, fn: string, state: () => StateHandles<StateDeclarations>, timers: TimerService): WindowWriter {
  const fail = (): never => {
    throw new TypeError(`function "${fn}" is not a windowed() function: write its state through ctx.state`);
  };
  if (layout === undefined) return { put: fail, get: fail };
  const spec = layout.window;
  const windows = () => (state() as Record<string, { set(k: string, v: unknown): void; get(k: string): unknown }>)[WINDOWS_STATE]!;
  return {
    put(w, acc) {
      if (spec.kind !== "global" && !Number.isSafeInteger(w.start)) throw new RangeError(`window start must be a whole number of ms, got ${w.start}`);
      const id = windowIdOf(spec, w.start);
      let window: TimeWindow;
      if (spec.kind === "session") {
        if (w.end === undefined || !Number.isSafeInteger(w.end) || w.end <= w.start) throw new RangeError("a session window needs its end (> start)");
        window = { start: w.start, end: w.end };
      } else {
        window = gridWindowOf(spec, id);
      }
      windows().set(id, spec.kind === "session" ? ([window.end, acc] satisfies SessionEntry<unknown>) : acc);
      registerWindowTimers(timers, window, id, layout.allowedLatenessMs);
    },
    get(start) {
      const v = windows().get(windowIdOf(spec, start));
      return spec.kind === "session" && Array.isArray(v) ? v[1] : v;
    },
  };
}
