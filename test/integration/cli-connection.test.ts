/**
 * Connection options of the `eddy` command line against a nats-server that requires users
 * (infra/nats/auth.conf): `--user/--password` flags and `NATS_USER/NATS_PASSWORD` with `NATS_URL`
 * reach the server, a wrong password is refused without being printed, and an unreadable
 * `--creds` file is named.
 */
import { describe, expect, it } from "vitest";
import { spawnSync } from "node:child_process";
import { readFile } from "node:fs/promises";
import { resolve } from "node:path";
import { natsServer } from "../support/nats-server.ts";

const ROOT = resolve(import.meta.dirname, "../..");
const CLI = resolve(ROOT, "runtime/cli/main.mjs");
const PASSWORDS = {
  EDDY_ADMIN_PASSWORD: "admin-cli-secret",
  EDDY_SUPERVISOR_PASSWORD: "supervisor-cli-secret",
};

/** The environment without any NATS setting of the machine running the tests. */
function cleanEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env = { ...process.env };
  for (const k of ["NATS_URL", "EDDY_NATS_URL", "NATS_CREDS", "NATS_USER", "NATS_PASSWORD", "NATS_CA", "NATS_CERT", "NATS_KEY"]) delete env[k];
  return { ...env, ...extra };
}

const eddy = (args: string[], env: NodeJS.ProcessEnv = cleanEnv()) => spawnSync(process.execPath, [CLI, ...args], { cwd: ROOT, env, encoding: "utf8", timeout: 60_000 });

describe("eddy's connection options against a server with users", () => {
  it("connects with --user/--password or NATS_USER/NATS_PASSWORD, refuses without, and prints no password", async () => {
    const passwords = Object.entries(PASSWORDS).map(([k, v]) => `${k}: "${v}"`);
    await using server = await natsServer({ configText: [...passwords, await readFile(resolve(ROOT, "infra/nats/auth.conf"), "utf8")].join("\n") });

    const anonymous = eddy(["ls", "--nats", server.url]);
    expect(anonymous.status).toBe(1);
    expect(anonymous.stderr).toMatch(/cannot connect to NATS/);

    const flags = eddy(["ls", "--nats", server.url, "--user", "eddy-admin", "--password", PASSWORDS.EDDY_ADMIN_PASSWORD]);
    expect(flags.stderr).toBe("");
    expect(flags.status).toBe(0);

    const fromEnv = eddy(["ls", "--json"], cleanEnv({ NATS_URL: server.url, NATS_USER: "eddy-admin", NATS_PASSWORD: PASSWORDS.EDDY_ADMIN_PASSWORD }));
    expect(fromEnv.stderr).toBe("");
    expect(fromEnv.status).toBe(0);
    expect(JSON.parse(fromEnv.stdout)).toEqual([]);

    // The flag overrides the variable.
    const flagWins = eddy(["ls", "--user", "eddy-admin", "--password", PASSWORDS.EDDY_ADMIN_PASSWORD], cleanEnv({ NATS_URL: server.url, NATS_USER: "eddy-admin", NATS_PASSWORD: "stale" }));
    expect(flagWins.status).toBe(0);

    const wrong = eddy(["ls", "--nats", server.url, "--user", "eddy-admin", "--password", "wrong-secret-1234"]);
    expect(wrong.status).toBe(1);
    expect(wrong.stderr.trim().split("\n")).toHaveLength(1);
    expect(wrong.stderr + wrong.stdout).not.toContain("wrong-secret-1234");
  });

  it("names a credentials file it cannot read (exit 1)", () => {
    const r = eddy(["ls", "--nats", "nats://127.0.0.1:1", "--creds", "/nonexistent/eddy.creds"]);
    expect(r.status).toBe(1);
    expect(r.stderr.trim()).toMatch(/^eddy: cannot read the NATS credentials file \/nonexistent\/eddy\.creds/);
  });
});
