/**
 * A reference model of Flink's event-time `WindowOperator` (with `EventTimeTrigger`, allowed
 * lateness and the late side output), written for obviousness rather than speed, so property
 * tests can compare `windowed()` with it over random inputs and watermark schedules.
 *
 * It keeps every accepted record in the window it belongs to and, at each step, decides from
 * scratch what Flink emits:
 *
 * - a record whose every window has `maxTimestamp + lateness <= watermark` goes to the late
 *   output; otherwise it is added to each window that is not late, and a window whose
 *   `maxTimestamp` the watermark already reached fires at once ("late" firing);
 * - a session record joins every live session of its key that its proto-session `[ts, ts + gap)`
 *   touches (closed intervals, repeatedly); the session is the union;
 * - a watermark step from `W0` to `W1 > W0` fires every live window with
 *   `W0 < maxTimestamp <= W1` ("on-time"), then forgets every window with
 *   `maxTimestamp + lateness <= W1`.
 *
 * It shares no code with runtime/core/windows.ts: the window arithmetic is done again here.
 */

export type ModelWindowSpec =
  | { readonly kind: "tumbling"; readonly size: number; readonly offset?: number }
  | { readonly kind: "sliding"; readonly size: number; readonly slide: number; readonly offset?: number }
  | { readonly kind: "session"; readonly gap: number }
  | { readonly kind: "global" };

export type ModelStep =
  | { readonly kind: "record"; readonly key: string; readonly ts: number; readonly id: number }
  | { readonly kind: "watermark"; readonly wm: number };

export interface ModelFiring {
  readonly key: string;
  readonly start: number;
  readonly end: number;
  /** Ids of the records in the window when it fired, ascending. */
  readonly ids: number[];
  readonly firing: "early" | "on-time" | "late";
  /** Event time of the result: the window's last millisecond. */
  readonly timestamp: number;
}

export interface ModelStepOutput {
  readonly fired: ModelFiring[];
  /** Ids of the records sent to the late output. */
  readonly late: number[];
  /** Live windows after the step, as `key|start|end`, sorted. */
  readonly live: string[];
}

interface LiveWindow {
  readonly key: string;
  start: number;
  end: number;
  readonly records: Array<{ ts: number; id: number }>;
}

const TOP = Number.MAX_SAFE_INTEGER;
const BOTTOM = Number.MIN_SAFE_INTEGER;

/** The last millisecond of a window; the global window's is the last safe integer. */
function lastMs(start: number, end: number): number {
  return start === BOTTOM && end === TOP ? TOP : end - 1;
}

function floorDiv(a: number, b: number): number {
  return Math.floor(a / b);
}

/** The fixed-grid windows `[start, end)` containing `ts`. */
function gridWindows(spec: ModelWindowSpec, ts: number): Array<[number, number]> {
  switch (spec.kind) {
    case "tumbling": {
      const offset = spec.offset ?? 0;
      const start = offset + floorDiv(ts - offset, spec.size) * spec.size;
      return [[start, start + spec.size]];
    }
    case "sliding": {
      const offset = spec.offset ?? 0;
      const out: Array<[number, number]> = [];
      // Every grid start from well below ts up to ts; keep those whose window holds ts.
      for (let k = floorDiv(ts - spec.size - offset, spec.slide) - 1; offset + k * spec.slide <= ts; k++) {
        const start = offset + k * spec.slide;
        if (start <= ts && ts < start + spec.size) out.push([start, start + spec.size]);
      }
      return out;
    }
    case "global":
      return [[BOTTOM, TOP]];
    case "session":
      throw new Error("sessions are not a grid");
  }
}

/** Runs `steps` through the model; one output per step. */
export function runWindowModel(spec: ModelWindowSpec, lateness: number, steps: readonly ModelStep[]): ModelStepOutput[] {
  let watermark = -Infinity;
  let live: LiveWindow[] = [];
  const outputs: ModelStepOutput[] = [];
  const result = (w: LiveWindow, firing: "on-time" | "late"): ModelFiring => ({
    key: w.key,
    start: w.start,
    end: w.end,
    ids: w.records.map((r) => r.id).sort((a, b) => a - b),
    firing,
    timestamp: lastMs(w.start, w.end),
  });
  const isLate = (start: number, end: number) => lastMs(start, end) + lateness <= watermark;

  for (const step of steps) {
    const fired: ModelFiring[] = [];
    const late: number[] = [];
    if (step.kind === "watermark") {
      if (step.wm > watermark) {
        const before = watermark;
        watermark = step.wm;
        for (const w of live) {
          const last = lastMs(w.start, w.end);
          if (before < last && last <= watermark) fired.push(result(w, "on-time"));
        }
        live = live.filter((w) => !isLate(w.start, w.end));
      }
    } else if (spec.kind === "session") {
      let start = step.ts;
      let end = step.ts + spec.gap;
      const joined: LiveWindow[] = [];
      const rest = live.filter((w) => w.key !== step.key);
      let mine = live.filter((w) => w.key === step.key);
      for (let grew = true; grew; ) {
        grew = false;
        for (const w of mine) {
          if (w.start <= end && start <= w.end) {
            joined.push(w);
            start = Math.min(start, w.start);
            end = Math.max(end, w.end);
            grew = true;
          }
        }
        mine = mine.filter((w) => !joined.includes(w));
      }
      if (isLate(start, end)) {
        late.push(step.id);
      } else {
        const merged: LiveWindow = { key: step.key, start, end, records: [...joined.flatMap((w) => w.records), { ts: step.ts, id: step.id }] };
        live = [...rest, ...mine, merged];
        if (lastMs(start, end) <= watermark) fired.push(result(merged, "late"));
      }
    } else {
      const windows = gridWindows(spec, step.ts);
      let accepted = false;
      for (const [start, end] of windows) {
        if (isLate(start, end)) continue;
        accepted = true;
        let w = live.find((x) => x.key === step.key && x.start === start && x.end === end);
        if (w === undefined) {
          w = { key: step.key, start, end, records: [] };
          live.push(w);
        }
        w.records.push({ ts: step.ts, id: step.id });
        if (lastMs(start, end) <= watermark) fired.push(result(w, "late"));
      }
      if (!accepted && windows.length > 0) late.push(step.id);
    }
    outputs.push({ fired, late, live: live.map((w) => `${w.key}|${w.start}|${w.end}`).sort() });
  }
  return outputs;
}
