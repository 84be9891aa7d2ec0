/**
 * `eddy scale <n>`: sets how many local worker processes run, like a replica count. Workers are
 * started detached (`eddy worker`, running whatever is deployed) and remembered in
 * `.eddy/workers.json` under the current directory, with their logs in `.eddy/logs/`; scaling
 * down stops the newest ones with SIGTERM, so the supervisor moves their partitions to the rest.
 *
 * The NATS URL may carry a password, so it reaches the workers in their environment
 * (`EDDY_NATS_URL`, readable only by the same user), never on their command line, which every
 * user of the machine can read in `ps`; `workers.json` records it with the secret redacted. The
 * other connection settings (`NATS_CREDS`, `NATS_USER`, `NATS_PASSWORD`, TLS files) are inherited
 * from this process's environment the same way.
 *
 * A pid in `workers.json` may outlive its worker (a crash, `kill -9`, a reboot) and be reused by
 * an unrelated process, which `eddy scale` must never signal: each entry records the process's
 * start time (from /proc, where there is one), and an entry counts only while the pid still
 * belongs to a process started then.
 */
import { natsUrlOf, redactNatsUrl } from "../nats/connection.ts";
import { youngGenerationFlags } from "../process/young-generation.ts";
import { procStatFields } from "./proc-cpu.ts";
import { spawn } from "node:child_process";
import { mkdirSync, openSync, closeSync, readFileSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";

export interface LocalWorker {
  readonly pid: number;
  /** The NATS URL, password or token redacted. */
  readonly nats: string;
  readonly startedAt: number;
  readonly log: string;
  /** The kernel's start time of the process (field 22 of /proc/<pid>/stat); absent without /proc. */
  readonly procStart?: string;
}

const CLI = resolve(import.meta.dirname, "../cli/main.mjs");

/** When the kernel started `pid`, in clock ticks since boot; undefined without /proc or process. */
function procStartOf(pid: number): string | undefined {
  try {
    return procStatFields(pid)[19];
  } catch {
    return undefined;
  }
}

/** Whether the worker `w` still runs: its pid is alive and, where /proc tells, started when it did. */
function alive(w: LocalWorker): boolean {
  try {
    process.kill(w.pid, 0);
  } catch {
    return false;
  }
  return w.procStart === undefined || procStartOf(w.pid) === w.procStart;
}

export function readWorkers(dir: string): LocalWorker[] {
  try {
    return (JSON.parse(readFileSync(join(dir, "workers.json"), "utf8")) as LocalWorker[]).filter(alive);
  } catch {
    return [];
  }
}

/** Brings the number of local workers to `count`; returns the ones running afterwards. */
export function scaleWorkers(count: number, nats: string, dir = resolve(".eddy")): LocalWorker[] {
  mkdirSync(join(dir, "logs"), { recursive: true });
  const workers = readWorkers(dir);
  while (workers.length > count) {
    const w = workers.pop()!;
    process.kill(w.pid, "SIGTERM");
  }
  while (workers.length < count) {
    const log = join(dir, "logs", `worker-${Date.now()}-${workers.length}.log`);
    const fd = openSync(log, "a");
    const child = spawn(process.execPath, [...youngGenerationFlags([], process.env.NODE_OPTIONS), CLI, "worker"], { detached: true, stdio: ["ignore", fd, fd], env: { ...process.env, EDDY_NATS_URL: nats } });
    closeSync(fd);
    child.unref();
    const procStart = procStartOf(child.pid!);
    workers.push({ pid: child.pid!, nats: redactNatsUrl(nats), startedAt: Date.now(), log, ...(procStart === undefined ? {} : { procStart }) });
  }
  writeFileSync(join(dir, "workers.json"), JSON.stringify(workers, null, 2) + "\n", { mode: 0o600 });
  return workers;
}

export async function runScale(o: { count: number; natsUrl: string | undefined }): Promise<number> {
  const nats = natsUrlOf(o.natsUrl);
  const workers = scaleWorkers(o.count, nats);
  console.log(`${workers.length} local worker${workers.length === 1 ? "" : "s"}${workers.length > 0 ? ": " + workers.map((w) => w.pid).join(", ") : ""} (logs in .eddy/logs)`);
  return 0;
}
