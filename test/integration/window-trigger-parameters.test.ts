/**
 * An early-firing window whose interval is a live parameter, on a real server (issue 16 item 2,
 * design note ca): page views per page and hour fire early only once `eddy params set` gives the
 * page an interval; the parameter stays in force across a worker SIGKILL (it is broadcast state of
 * the committed checkpoint, and the parameters stream for a replay); removing it stops the early
 * firings; the on-time result of each window is emitted once, and an upsert by window ends with
 * the exact count. Early results are updates of the same window: their values never decrease.
 */
import { describe, expect, it } from "vitest";
import { resolve } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { deployModule } from "../../runtime/deploy/deploy.ts";
import { ensureStream, publishAll, readAll } from "../../runtime/nats/streams.ts";
import { startSupervisor } from "../../runtime/supervisor/supervisor.ts";
import type { WindowResult } from "../../runtime/sdk/index.ts";
import { eddyOk, runEddy } from "../support/cli.ts";
import { connect, natsServer } from "../support/nats-server.ts";
import { startEddy, type EddyProcess } from "../support/processes.ts";
import { waitFor } from "../support/wait.ts";
import type { View } from "../fixtures/early-windows.ts";

const decoder = new TextDecoder();
const T0 = 1_767_225_600_000; // 2026-01-01, an hour's start
const HOUR = 3_600_000;

describe("a live early-firing interval on a real server", () => {
  it("is applied while the job runs, survives a worker kill, and is removed again; final results are exact", { timeout: 300_000 }, async () => {
    await using server = await natsServer();
    const nc = await connect(server);
    const supervisor = await startSupervisor(nc, { checkpointIntervalMs: 300, checkpointTimeoutMs: 10_000 });
    let worker: EddyProcess = startEddy(["worker", "--nats", server.url]);
    const logs = () => worker.output();
    const ok = (...args: string[]) => eddyOk([...args, "--nats", server.url], { logs });
    const patiently = { timeoutMs: 90_000, logs };
    let publishing = true;
    let feeder: Promise<void> = Promise.resolve();
    try {
      await ensureStream(nc, "EW_EVENTS", ["ew.events"]);
      await ensureStream(nc, "EW_PARAMS", ["ew.params.views.>"]);
      await ensureStream(nc, "EW_OUT", ["ew.out"]);
      await deployModule(nc, resolve(import.meta.dirname, "../fixtures/early-windows.ts"));
      const results = async () => (await readAll(nc, "EW_OUT")).map((m) => JSON.parse(decoder.decode(m.data)) as WindowResult<number>);
      const early = async (page: string) => (await results()).filter((r) => r.key === page && r.firing === "early");
      const published: View[] = [];
      // Views of pages a and b inside the first hour, a few every 100 ms, until told to stop.
      let id = 0;
      feeder = (async () => {
        while (publishing) {
          const batch = ["a", "b", "a"].map((page): View => ({ id: ++id, page, ts: T0 + Math.min(id * 10, HOUR - 1) }));
          published.push(...batch);
          await publishAll(nc, batch.map((v) => ({ subject: "ew.events", data: JSON.stringify(v) })));
          await sleep(100);
        }
      })();
      const active = async () => (JSON.parse(await ok("params", "ls", "early-windows", "views", "--json")) as { active?: Record<string, unknown> }).active ?? {};

      // A bad value or name is refused before anything is published; a usage error exits 2.
      const [badName, usage, noParams] = await Promise.all([
        runEddy(["params", "set", "early-windows", "views", "a b", "5", "--nats", server.url]),
        runEddy(["params", "set", "early-windows", "--nats", server.url]),
        runEddy(["params", "ls", "early-windows", "events", "--nats", server.url]),
      ]);
      expect([badName.code, badName.stderr.trim()]).toEqual([1, expect.stringMatching(/^eddy: parameter name must be dot-separated tokens/)]);
      expect(usage.code).toBe(2);
      expect([noParams.code, noParams.stderr.trim()]).toEqual([1, "eddy: early-windows/events has no live parameters (it needs a windowParameters() source events-params beside it)"]);
      expect(await readAll(nc, "EW_PARAMS")).toEqual([]);

      // Without a parameter, the default interval (an hour) fires nothing early.
      await waitFor("views flowing", async () => (published.length > 60 ? true : undefined), patiently);
      await sleep(2_000);
      expect(await results()).toEqual([]);

      // Page a fires early every 300 ms once the parameter is in force; b keeps the default.
      await ok("params", "set", "early-windows", "views", "earlyMs.a", "300");
      await waitFor("early firings of page a", async () => ((await early("a")).length >= 3 ? true : undefined), patiently);
      // `params ls` shows what KV holds: the checkpoint that published those firings may still be
      // on its way into KV (materialization follows the commit).
      await waitFor("earlyMs.a in force in KV", async () => (JSON.stringify(await active()) === JSON.stringify({ "earlyMs.a": 300 }) ? true : undefined), patiently);
      // eddy status (and the console, from the same reading) shows them too.
      expect(JSON.parse(await ok("status", "early-windows", "--json")).parameters).toEqual([{ function: "views", active: { "earlyMs.a": 300 } }]);

      // A worker SIGKILL: the recovered job keeps the interval.
      const beforeKill = (await early("a")).length;
      await worker.kill();
      worker = startEddy(["worker", "--nats", server.url]);
      await waitFor("early firings of page a after the kill", async () => ((await early("a")).length >= beforeKill + 3 ? true : undefined), patiently);
      expect(await early("b")).toEqual([]);

      // Removed: page a is back to the default, and its early firings stop.
      await ok("params", "set", "early-windows", "views", "earlyMs.a", "null");
      await waitFor("earlyMs.a removed", async () => (Object.keys(await active()).length === 0 ? true : undefined), patiently);
      await sleep(5_000);
      const settled = (await early("a")).length;
      await sleep(5_000);
      expect((await early("a")).length).toBe(settled);

      // The end of the hour: each window fires on time once, with the exact count.
      publishing = false;
      await feeder;
      const close: View[] = [{ id: ++id, page: "a", ts: T0 + HOUR + 1 }, { id: ++id, page: "b", ts: T0 + HOUR + 1 }];
      await publishAll(nc, close.map((v) => ({ subject: "ew.events", data: JSON.stringify(v) })));
      await waitFor("on-time results", async () => ((await results()).filter((r) => r.firing === "on-time").length >= 2 ? true : undefined), patiently);
      const all = await results();
      const onTime = all.filter((r) => r.firing === "on-time" && r.start === T0);
      const count = (page: string) => published.filter((v) => v.page === page && v.ts < T0 + HOUR).length;
      expect(onTime.map((r) => [r.key, r.value]).sort()).toEqual([["a", count("a")], ["b", count("b")]]);
      const upsert = new Map(all.filter((r) => r.start === T0).map((r) => [r.key, r.value]));
      expect(Object.fromEntries(upsert)).toEqual({ a: count("a"), b: count("b") });
      const values = all.filter((r) => r.key === "a" && r.start === T0).map((r) => r.value);
      expect(values).toEqual([...values].sort((x, y) => x - y));
      expect(values.at(-1)).toBe(count("a"));
    } finally {
      publishing = false;
      await feeder.catch(() => {});
      await worker.kill();
      await supervisor.stop();
    }
  });
});
