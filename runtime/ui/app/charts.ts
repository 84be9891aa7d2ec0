/**
 * Small time-series charts of a function over the last minutes (throughput, lag, watermark lag),
 * with uPlot. The page keeps the points it received over server-sent events; nothing is stored
 * on the server, so a chart starts empty when the page opens.
 */
import uPlot from "uplot";
import type { FunctionSummary } from "../../core/console-view.ts";

const KEEP_S = 300;

/** One function's points: seconds since the epoch and the figures at that time. */
interface Series {
  t: number[];
  in: Array<number | null>;
  out: Array<number | null>;
  lag: Array<number | null>;
  wmLag: Array<number | null>;
}

const history = new Map<string, Series>();

/** Adds the functions' figures of one update to the history of `job`. */
export function record(job: string, at: number, functions: readonly FunctionSummary[]): void {
  const t = at / 1000;
  for (const f of functions) {
    const k = `${job}/${f.function}`;
    let s = history.get(k);
    if (s === undefined) history.set(k, (s = { t: [], in: [], out: [], lag: [], wmLag: [] }));
    s.t.push(t);
    s.in.push(f.livePartitions > 0 ? f.recordsInPerSecond : null);
    s.out.push(f.livePartitions > 0 ? f.recordsOutPerSecond : null);
    s.lag.push(f.maxLag);
    s.wmLag.push(f.maxWatermarkLagMs === null ? null : f.maxWatermarkLagMs / 1000);
    while (s.t.length > 0 && s.t[0]! < t - KEEP_S) for (const a of [s.t, s.in, s.out, s.lag, s.wmLag]) a.shift();
  }
}

/** The charts drawn on the page now, updated in place on every update. */
let drawn: { key: string; plots: Array<{ plot: uPlot; data: () => uPlot.AlignedData }> } | undefined;

/** Draws (or updates) the charts of one function into `el`'s chart slots. */
export function drawCharts(el: HTMLElement, job: string, fn: string): void {
  const key = `${job}/${fn}`;
  const s = history.get(key) ?? { t: [], in: [], out: [], lag: [], wmLag: [] };
  const slots = [...el.querySelectorAll<HTMLElement>("[data-chart]")];
  if (drawn !== undefined && drawn.key === key && slots.every((x) => x.querySelector(".uplot") !== null)) {
    for (const p of drawn.plots) p.plot.setData(p.data());
    return;
  }
  for (const p of drawn?.plots ?? []) p.plot.destroy();
  const width = Math.max(260, Math.min(560, (slots[0]?.clientWidth ?? 320) - 16));
  const make = (slot: HTMLElement | undefined, series: uPlot.Series[], data: () => uPlot.AlignedData) => {
    if (slot === undefined) return undefined;
    slot.querySelector(".uplot")?.remove();
    const plot = new uPlot({ width, height: 160, series: [{}, ...series], axes: [{}, { size: 50 }], legend: { show: true } }, data(), slot);
    return { plot, data };
  };
  const live = () => history.get(key) ?? s;
  const plots = [
    make(slots[0], [{ label: "in/s", stroke: "#2563eb" }, { label: "out/s", stroke: "#2f9e44" }], () => [live().t, live().in, live().out] as uPlot.AlignedData),
    make(slots[1], [{ label: "lag (records)", stroke: "#e8590c" }], () => [live().t, live().lag] as uPlot.AlignedData),
    make(slots[2], [{ label: "watermark lag (s)", stroke: "#7048e8" }], () => [live().t, live().wmLag] as uPlot.AlignedData),
  ].filter((x) => x !== undefined);
  drawn = { key, plots };
}

/** Forgets the drawn charts (the page changed). */
export function dropCharts(): void {
  for (const p of drawn?.plots ?? []) p.plot.destroy();
  drawn = undefined;
}
