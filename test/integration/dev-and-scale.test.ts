/**
 * Local operation: `eddy scale <n>` keeps n detached worker processes (tracked in a state
 * directory), and `eddy dev` runs a cluster in one process that runs what is deployed to it.
 */
import { describe, expect, it } from "vitest";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { spawn } from "node:child_process";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { connect as natsConnect } from "@nats-io/transport-node";
import { scaleWorkers } from "../../runtime/dev/scale.ts";
import { deployModule } from "../../runtime/deploy/deploy.ts";
import { ensureStream, publishAll, readAll } from "../../runtime/nats/streams.ts";
import { ensureControlPlane } from "../../runtime/nats/topology.ts";
import { connect, natsServer } from "../support/nats-server.ts";
import { startEddy } from "../support/processes.ts";
import { waitFor } from "../support/wait.ts";

const ROOT = resolve(import.meta.dirname, "../..");

describe("eddy scale", () => {
  it("starts and stops local worker processes to reach the requested count", async () => {
    await using server = await natsServer();
    const nc = await connect(server);
    const dir = mkdtempSync(join(tmpdir(), "eddy-scale-"));
    try {
      await ensureControlPlane(nc);
      const up = scaleWorkers(2, server.url, dir);
      expect(up).toHaveLength(2);
      for (const w of up) expect(() => process.kill(w.pid, 0)).not.toThrow();
      expect(scaleWorkers(2, server.url, dir).map((w) => w.pid)).toEqual(up.map((w) => w.pid));
      const down = scaleWorkers(1, server.url, dir);
      expect(down.map((w) => w.pid)).toEqual([up[0]!.pid]);
      const alive = (pid: number) => {
        try {
          process.kill(pid, 0);
          return true;
        } catch {
          return false;
        }
      };
      await waitFor("the second worker to exit", () => !alive(up[1]!.pid));
      expect(scaleWorkers(0, server.url, dir)).toEqual([]);
    } finally {
      for (const w of scaleWorkers(0, server.url, dir)) process.kill(w.pid, "SIGKILL");
      rmSync(dir, { recursive: true, force: true });
      await nc.close();
    }
  });
  it("never signals a process that took the pid of a worker that is gone", async () => {
    const dir = mkdtempSync(join(tmpdir(), "eddy-scale-"));
    // An unrelated process under the pid a crashed worker had: its start time differs from the one recorded.
    const bystander = spawn("sleep", ["60"], { stdio: "ignore" });
    const exited = new Promise((r) => bystander.once("exit", r));
    try {
      mkdirSync(dir, { recursive: true });
      const stale = { pid: bystander.pid!, nats: "nats://127.0.0.1:4222", startedAt: Date.now() - 60_000, log: join(dir, "w.log"), procStart: "1" };
      writeFileSync(join(dir, "workers.json"), JSON.stringify([stale]));
      expect(scaleWorkers(0, "nats://127.0.0.1:4222", dir)).toEqual([]);
      await new Promise((r) => setTimeout(r, 200));
      expect(bystander.exitCode).toBeNull();
      expect(bystander.signalCode).toBeNull();
      expect(JSON.parse(readFileSync(join(dir, "workers.json"), "utf8"))).toEqual([]);
    } finally {
      bystander.kill("SIGKILL");
      await exited;
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("hands the NATS password to the workers in their environment, not on their command line or in workers.json", async () => {
    const secret = "s3cret-scale-password";
    await using server = await natsServer({ configText: `authorization { users = [ { user: "w", password: "${secret}" } ] }` });
    const dir = mkdtempSync(join(tmpdir(), "eddy-scale-"));
    const url = server.url.replace("nats://", `nats://w:${secret}@`);
    try {
      const [w] = scaleWorkers(1, url, dir);
      // The worker connects with the password (it prints this line once connected)...
      await waitFor("the worker to connect", () => readFileSync(w!.log, "utf8").includes("running deployed jobs"), { timeoutMs: 20_000, logs: () => readFileSync(w!.log, "utf8") });
      // ...which is nowhere that other users of the machine can read.
      const cmdline = readFileSync(`/proc/${w!.pid}/cmdline`, "utf8").split("\0").filter((a) => a !== "");
      expect(cmdline.join(" ")).not.toContain(secret);
      expect(cmdline.slice(-1)).toEqual(["worker"]);
      // With the young generation actor processes get (runtime/process/young-generation.ts).
      expect(cmdline).toContain("--max-semi-space-size=16");
      expect(readFileSync(`/proc/${w!.pid}/environ`, "utf8").split("\0")).toContain(`EDDY_NATS_URL=${url}`);
      const file = readFileSync(join(dir, "workers.json"), "utf8");
      expect(file).not.toContain(secret);
      expect(JSON.parse(file)).toEqual([expect.objectContaining({ pid: w!.pid, nats: server.url.replace("nats://", "nats://w:***@") })]);
      expect(statSync(join(dir, "workers.json")).mode & 0o777).toBe(0o600);
      expect(readFileSync(w!.log, "utf8")).not.toContain(secret);
    } finally {
      for (const w of scaleWorkers(0, url, dir)) process.kill(w.pid, "SIGKILL");
      rmSync(dir, { recursive: true, force: true });
    }
  }, 60_000);
});

describe("eddy dev", () => {
  it("runs a local cluster that runs what is deployed to it", async () => {
    await using dev = startEddy(["dev", "--checkpoint-interval", "300"]);
    const url = await waitFor("eddy dev to print its URL", () => /nats:\/\/127\.0\.0\.1:\d+/.exec(dev.output())?.[0], { timeoutMs: 20_000, logs: dev.output });
    const nc = await natsConnect({ servers: url });
    try {
      await ensureStream(nc, "COUNTER_IN", ["counter.in"]);
      await ensureStream(nc, "COUNTER_OUT", ["counter.out"]);
      await deployModule(nc, resolve(ROOT, "test/fixtures/counter.ts"));
      await publishAll(nc, [{ subject: "counter.in", data: JSON.stringify({ user: "ann" }) }]);
      const out = await waitFor("the count", async () => {
        const o = (await readAll(nc, "COUNTER_OUT")).map((m) => JSON.parse(new TextDecoder().decode(m.data)) as unknown);
        return o.length > 0 && o;
      }, { logs: dev.output });
      expect(out, dev.output()).toEqual([{ user: "ann", n: 1 }]);
    } finally {
      await nc.close();
      // Its nats-server is a child process: a SIGKILL of eddy dev would leave it running.
      await dev.stop();
    }
  });
});
