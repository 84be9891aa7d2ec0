/** Help pages list only flags eddy honours: no effect/cli --log-level or --wizard that would do nothing. */
import { describe, expect, it } from "vitest";
import { spawnSync } from "node:child_process";
import { resolve } from "node:path";

const ROOT = resolve(import.meta.dirname, "../..");
const help = (...cmd: string[]) => spawnSync(process.execPath, [resolve(ROOT, "runtime/cli/main.mjs"), ...cmd, "--help"], { cwd: ROOT, encoding: "utf8" });

describe("eddy --help", () => {
  for (const cmd of [[], ["worker"], ["supervisor"], ["k8s", "render"], ["state", "get"]]) {
    it(`eddy ${cmd.join(" ")} --help shows the global flags eddy honours and none it ignores`, () => {
      const r = help(...cmd);
      expect(r.status).toBe(0);
      const global = r.stdout.slice(r.stdout.indexOf("GLOBAL FLAGS"));
      for (const flag of ["--help", "--version", "--completions", "--creds", "--user", "--password", "--tls-ca", "--tls-cert", "--tls-key"]) expect(global).toContain(flag);
      expect(r.stdout).not.toContain("--log-level");
      expect(r.stdout).not.toContain("--wizard");
    });
  }

  it("the flags it drops are refused, not silently ignored", () => {
    const r = spawnSync(process.execPath, [resolve(ROOT, "runtime/cli/main.mjs"), "ls", "--log-level", "debug"], { cwd: ROOT, encoding: "utf8" });
    expect(r.status).toBe(2);
  });

  it("--completions prints a completion script", () => {
    const r = spawnSync(process.execPath, [resolve(ROOT, "runtime/cli/main.mjs"), "--completions", "bash"], { cwd: ROOT, encoding: "utf8" });
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/complete/);
  });
});
