/**
 * Preloaded into a benchmark's worker (`node --import`) when the latency benchmark runs with
 * `--gc`: writes each garbage collection of the process to the file `EDDY_GC_LOG` names, one line
 * per collection — wall-clock start (ms), duration (ms), kind (`minor`, `major`, `incremental`,
 * `weakcb`) — so the benchmark can report the collections of its measured part next to the
 * latencies (latency-stats.ts `summarizeGc`). Session 19 found the latency tail this way: nearly
 * every slow stretch ended in a full collection.
 *
 * Lines are buffered and appended every 200 ms and at exit; an observer costs little next to the
 * collections it reports, but it is a benchmark option, never on in a measured default run.
 */
import { appendFileSync } from "node:fs";
import { constants, performance, PerformanceObserver, type PerformanceEntry } from "node:perf_hooks";

const file = process.env.EDDY_GC_LOG;
if (file !== undefined && file !== "") {
  const kinds = new Map<number, string>([
    [constants.NODE_PERFORMANCE_GC_MINOR, "minor"],
    [constants.NODE_PERFORMANCE_GC_MAJOR, "major"],
    [constants.NODE_PERFORMANCE_GC_INCREMENTAL, "incremental"],
    [constants.NODE_PERFORMANCE_GC_WEAKCB, "weakcb"],
  ]);
  let lines: string[] = [];
  const flush = () => {
    if (lines.length === 0) return;
    appendFileSync(file, `${lines.join("\n")}\n`);
    lines = [];
  };
  new PerformanceObserver((list) => {
    for (const e of list.getEntries() as Array<PerformanceEntry & { detail?: { kind?: number } }>) {
      lines.push(`${(performance.timeOrigin + e.startTime).toFixed(3)} ${e.duration.toFixed(3)} ${kinds.get(e.detail?.kind ?? -1) ?? "other"}`);
    }
  }).observe({ entryTypes: ["gc"] });
  setInterval(flush, 200).unref();
  process.on("exit", flush);
}
