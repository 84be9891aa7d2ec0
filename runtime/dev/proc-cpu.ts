/**
 * CPU time of a process read from /proc (Linux), so benchmarks can charge the broker's CPU to
 * the run as well as their own; the same /proc fields tell `eddy scale` when a process started.
 */
import { readFileSync } from "node:fs";

const TICKS_PER_SECOND = 100; // USER_HZ on Linux

/**
 * The fields of /proc/<pid>/stat after the command name, from the state (field 3) on: index `i`
 * is field `i + 3`. Throws when there is no such process or no /proc.
 */
export function procStatFields(pid: number): string[] {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  // The command name may contain spaces and parentheses: the fields start after the last ')'.
  return stat.slice(stat.lastIndexOf(")") + 2).split(" ");
}

/** User + system CPU seconds consumed so far by `pid` (its threads included). */
export function cpuSecondsOf(pid: number): number {
  const fields = procStatFields(pid);
  const utime = Number(fields[11]);
  const stime = Number(fields[12]);
  return (utime + stime) / TICKS_PER_SECOND;
}

/** CPU seconds of this Node process. */
export function ownCpuSeconds(): number {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1e6;
}
