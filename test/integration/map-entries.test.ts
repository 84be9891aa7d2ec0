/**
 * Map state read entry by entry (design note bj), on a real nats-server: a worker with a state
 * cache of a few KB runs per-second windows kept 30 s for late records over a hundred sensors —
 * about thirty windows per sensor, far more than the cache holds whole — so sensors are evicted
 * and read back all the time, and a record reads its own window alone: KV gets, no listing of a
 * sensor's windows. The exactly-once output must equal the same aggregation in SQL (node:sqlite).
 */
import { describe, expect, it } from "vitest";
import { DatabaseSync } from "node:sqlite";
import { ensureStream, publishAll, readAll } from "../../runtime/nats/streams.ts";
import { requestEndOfInput } from "../../runtime/nats/control.ts";
import { startSupervisor } from "../../runtime/supervisor/supervisor.ts";
import { connect, natsServer } from "../support/nats-server.ts";
import { startEddy, type EddyProcess } from "../support/processes.ts";
import { waitFor } from "../support/wait.ts";
import type { Reading } from "../fixtures/window-entries.ts";

const decoder = new TextDecoder();
const SENSORS = 100;
const READINGS = 6000;
/** 16 KiB for the whole worker: the windows of a handful of sensors, against a hundred. */
const CACHE_MB = "0.015625";

interface Row {
  readonly key: string;
  readonly start: number;
  readonly end: number;
  readonly value: { readonly n: number; readonly s: number };
  readonly firing: string;
}

/** Repeatable readings in event-time order, 10 ms apart, from random sensors. */
function readings(): Reading[] {
  let x = 7;
  const rand = () => (x = (x * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
  return Array.from({ length: READINGS }, (_, seq) => ({ seq, sensor: `sensor-${Math.floor(rand() * SENSORS)}`, at: 1_000_000 + seq * 10, v: Math.floor(rand() * 100) }));
}

/** The windows the job must emit, computed by SQL: one row per sensor and second with readings. */
function expected(all: readonly Reading[]): Row[] {
  const db = new DatabaseSync(":memory:");
  db.exec("CREATE TABLE r (sensor TEXT, at INTEGER, v INTEGER)");
  const insert = db.prepare("INSERT INTO r VALUES (?, ?, ?)");
  for (const r of all) insert.run(r.sensor, r.at, r.v);
  const rows = db.prepare("SELECT sensor, (at / 1000) * 1000 AS start, count(*) AS n, sum(v) AS s FROM r GROUP BY sensor, start ORDER BY sensor, start").all() as Array<{ sensor: string; start: number; n: number; s: number }>;
  db.close();
  return rows.map((r) => ({ key: r.sensor, start: r.start, end: r.start + 1_000, value: { n: r.n, s: r.s }, firing: "on-time" }));
}

/** A counter summed over the worker's actors (of function `fn` if given), from its /metrics. */
async function metric(p: EddyProcess, name: string, fn?: string): Promise<number> {
  const port = /metrics on [^:\s]+:(\d+)\/metrics/.exec(p.output())?.[1];
  if (port === undefined) return NaN;
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  let sum = 0;
  for (const line of text.split("\n")) if (line.startsWith(`${name}{`) && (fn === undefined || line.includes(`function="${fn}"`))) sum += Number(line.slice(line.lastIndexOf(" ") + 1));
  return sum;
}

describe("map state read entry by entry", () => {
  it("reads windows one by one with a tiny cache, never a sensor's whole map, and the output equals SQL's", async () => {
    await using server = await natsServer();
    const nc = await connect(server);
    const supervisor = await startSupervisor(nc, { checkpointIntervalMs: 1000, checkpointTimeoutMs: 5000 });
    const all = readings();
    await ensureStream(nc, "WIN_EVENTS", ["win.events"]);
    await ensureStream(nc, "WIN_OUT", ["win.out"]);
    const worker = startEddy(["worker", "--pipeline", "test/fixtures/window-entries.ts", "--nats", server.url, "--state-cache-mb", CACHE_MB, "--metrics-port", "0"]);
    try {
      const publish = (rs: readonly Reading[]) => publishAll(nc, rs.map((r) => ({ subject: "win.events", data: JSON.stringify(r) })));
      let seen = "";
      const logs = () => `${seen}\n${worker.output().slice(-3000)}`;
      // The first half fills the cache past its budget; in the second, evicted sensors come back.
      await publish(all.slice(0, READINGS / 2));
      await waitFor("the first half windowed, sensors evicted", async () => {
        const [handled, evictions] = [await metric(worker, "eddy_records_in_total", "per-second"), await metric(worker, "eddy_state_cache_evictions_total")];
        seen = `records ${handled}, evictions ${evictions}`;
        return handled >= READINGS / 2 && evictions > 0 ? true : undefined;
      }, { timeoutMs: 180_000, logs, retryErrors: true });
      await publish(all.slice(READINGS / 2));
      // Checked while the job runs (a finished job's actors stop, and their metrics with them).
      await waitFor("the second half windowed, sensors read back", async () => {
        const [handled, gets] = [await metric(worker, "eddy_records_in_total", "per-second"), await metric(worker, "eddy_state_gets_total")];
        seen = `records ${handled}, gets ${gets}`;
        return handled >= READINGS && gets > 100 ? true : undefined;
      }, { timeoutMs: 180_000, logs, retryErrors: true });
      // Window by window: KV gets, and not one listing of a sensor's windows.
      // (Asked again if the metrics request fails, as on a loaded machine it can.)
      const listings = await waitFor("the listings metric", async () => {
        const n = await metric(worker, "eddy_state_listings_total");
        return Number.isNaN(n) ? undefined : n;
      }, { timeoutMs: 30_000, logs, retryErrors: true });
      expect(listings).toBe(0);
      await requestEndOfInput(nc, "winentries");
      const want = expected(all);
      const out = await waitFor("every window", async () => {
        const rows = (await readAll(nc, "WIN_OUT", "win.out")).map((m) => JSON.parse(decoder.decode(m.data)) as Row);
        return rows.length >= want.length ? rows : undefined;
      }, { timeoutMs: 240_000 });
      expect(out.length).toBe(want.length);
      expect([...out].sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : a.start - b.start))).toEqual(want);
    } finally {
      await worker.kill();
      if (process.env.EDDY_TEST_DEBUG) console.log(worker.output());
      await supervisor.stop();
      await nc.close();
    }
  }, 400_000);
});
