/**
 * eddy runs on Node's compile cache (runtime/cli/main.mjs): a process start reuses the stripped and
 * compiled TypeScript of earlier ones (and, its entry point being JavaScript, needs no type
 * stripper), and a worker keeps what it compiled even when it is killed, as workers are, instead
 * of only at a clean exit.
 */
import { spawn, spawnSync } from "node:child_process";
import { mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { CLI, ROOT } from "../support/cli.ts";
import { waitFor } from "../support/wait.ts";

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function cacheDir(): string {
  const d = mkdtempSync(join(tmpdir(), "eddy-compile-cache-"));
  dirs.push(d);
  return d;
}

const filesUnder = (dir: string): number => readdirSync(dir, { recursive: true, withFileTypes: true }).filter((e) => e.isFile()).length;

describe("the compile cache", () => {
  it("is written by a command that ends, and not where it is turned off", () => {
    const on = cacheDir();
    expect(spawnSync(process.execPath, [CLI, "--help"], { cwd: ROOT, env: { ...process.env, NODE_COMPILE_CACHE: on } }).status).toBe(0);
    expect(filesUnder(on)).toBeGreaterThan(10);

    const off = cacheDir();
    expect(spawnSync(process.execPath, [CLI, "--help"], { cwd: ROOT, env: { ...process.env, NODE_COMPILE_CACHE: off, NODE_DISABLE_COMPILE_CACHE: "1" } }).status).toBe(0);
    expect(filesUnder(off)).toBe(0);
  });

  it("spares a start with a warm cache Node's type stripper: the entry point is JavaScript", () => {
    const dir = cacheDir();
    // Reports, as the process exits, whether Node loaded its TypeScript stripper (amaro).
    const probe = `data:text/javascript,process.on("exit", () => process.stderr.write("amaro:" + process.moduleLoadList.some((m) => m.includes("amaro")) + "\\n"))`;
    const start = () => spawnSync(process.execPath, ["--import", probe, CLI, "--help"], { cwd: ROOT, encoding: "utf8", env: { ...process.env, NODE_COMPILE_CACHE: dir } });
    const cold = start();
    expect(cold.status).toBe(0);
    expect(cold.stderr).toContain("amaro:true");
    const warm = start();
    expect(warm.status).toBe(0);
    expect(warm.stderr).toContain("amaro:false");
  });

  it("is written by a worker that is then killed (it never exits on its own)", async () => {
    const dir = cacheDir();
    // No server answers there: the worker keeps trying to connect until it is killed.
    const worker = spawn(process.execPath, [CLI, "worker", "--nats", "nats://127.0.0.1:1"], { cwd: ROOT, env: { ...process.env, NODE_COMPILE_CACHE: dir }, stdio: "ignore" });
    try {
      await waitFor("the worker's compile cache on disk", () => filesUnder(dir) > 10, { timeoutMs: 30_000 });
    } finally {
      worker.kill("SIGKILL");
    }
  });
});
