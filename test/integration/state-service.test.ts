/**
 * Queryable and writable state over NATS (architecture.md §7), against a real nats-server and
 * real worker processes running a deployed job (test/fixtures/ledger.ts).
 *
 * - Every function's state is a NATS service (`$SRV.PING/INFO/STATS`); get, scan, put and delete
 *   are routed by partition to the owning actor; reads are live or committed, and committed
 *   reads work with the job stopped; writes are applied in order with the data.
 * - A key hammered with concurrent writes and data while a worker is SIGKILLed loses no update:
 *   every write and every record is in the final state, and the records are counted once.
 */
import { describe, expect, it } from "vitest";
import { resolve } from "node:path";
import { Svcm } from "@nats-io/services";
import type { NatsConnection } from "@nats-io/transport-node";
import { deployModule, start, undeploy } from "../../runtime/deploy/deploy.ts";
import { ensureStream, publishAll } from "../../runtime/nats/streams.ts";
import { stateClient, StateRequestError, StateUnavailableError } from "../../runtime/nats/state-client.ts";
import { startSupervisor } from "../../runtime/supervisor/supervisor.ts";
import { connect, natsServer } from "../support/nats-server.ts";
import { runEddy } from "../support/cli.ts";
import { startEddy, type EddyProcess } from "../support/processes.ts";
import { waitFor } from "../support/wait.ts";

const ROOT = resolve(import.meta.dirname, "../..");
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function ledger(nc: NatsConnection, url: string, workerCount: number) {
  await ensureStream(nc, "LEDGER_IN", ["ledger.in"]);
  await deployModule(nc, resolve(ROOT, "test/fixtures/ledger.ts"));
  const workers: EddyProcess[] = [];
  const start = () => {
    const w = startEddy(["worker", "--nats", url]);
    workers.push(w);
    return w;
  };
  for (let i = 0; i < workerCount; i++) start();
  const publish = (entries: Array<{ account: string; id: string }>) => publishAll(nc, entries.map((e) => ({ subject: "ledger.in", data: JSON.stringify(e) })));
  return { workers, start, publish, logs: () => workers.map((w) => w.output()).join("\n---\n") };
}

describe("state service", () => {
  it("serves get, scan, put and delete per partition, live and committed, and writes in order with the data", async () => {
    await using server = await natsServer();
    const nc = await connect(server);
    const supervisor = await startSupervisor(nc, { checkpointIntervalMs: 200 });
    const job = await ledger(nc, server.url, 1);
    try {
      await job.publish([1, 2, 3, 4].map((i) => ({ account: "a1", id: String(i) })).concat([{ account: "a2", id: "5" }, { account: "b1", id: "6" }]));
      const book = await stateClient(nc, "ledger", "book");
      await waitFor("the records counted", async () => (await book.get<number>("count", "a1")) === 4, { timeoutMs: 30_000, logs: job.logs, retryErrors: true });

      // Discoverable as a NATS service, with one endpoint per operation and partition.
      const svc = new Svcm(nc).client();
      const pings = [];
      for await (const p of await svc.ping("eddy-state-ledger-book")) pings.push(p);
      expect(pings).toHaveLength(1);
      const infos = [];
      for await (const i of await svc.info("eddy-state-ledger-book")) infos.push(i);
      expect(infos[0]!.endpoints.map((e) => e.subject).sort()).toEqual(
        [0, 1, 2].flatMap((p) => ["delete", "get", "put", "scan"].map((op) => `eddy.q.ledger.book.${p}.${op}`)).sort(),
      );
      const stats = [];
      for await (const s of await svc.stats("eddy-state-ledger-book")) stats.push(s);
      expect(stats[0]!.endpoints!.reduce((n, e) => n + e.num_requests, 0)).toBeGreaterThan(0);

      // Live reads: one key, a map state whole or by entry, and scans by prefix over all partitions.
      expect(await book.get("entries", "a1")).toEqual({ "d:1": 1, "d:2": 1, "d:3": 1, "d:4": 1 });
      expect(await book.get("entries", "a1", { subkey: "d:2" })).toBe(1);
      expect(await book.get("count", "nobody")).toBeUndefined();
      const scanned = [];
      for await (const e of book.scan({ state: "count", prefix: "a", pageSize: 1 })) scanned.push([e.key, e.value]);
      expect(scanned.sort()).toEqual([["a1", 4], ["a2", 1]]);

      // A write is applied in order with the data: records published after it count on top.
      await book.put("count", "a1", 100);
      expect(await book.get("count", "a1")).toBe(100);
      await job.publish([{ account: "a1", id: "7" }, { account: "a1", id: "8" }]);
      await waitFor("the records after the write", async () => (await book.get<number>("count", "a1")) === 102, { retryErrors: true });
      await book.put("entries", "a1", 7, { subkey: "w:x" });
      expect(await book.get("entries", "a1", { subkey: "w:x" })).toBe(7);
      await book.delete("entries", "a1", { subkey: "w:x" });
      expect(await book.get("entries", "a1", { subkey: "w:x" })).toBeUndefined();

      // Writes to a source function's state come through its own input log.
      const intake = await stateClient(nc, "ledger", "intake");
      await intake.put("seen", "b1", 50);
      await job.publish([{ account: "b1", id: "9" }]);
      await waitFor("the source's record after the write", async () => (await intake.get<number>("seen", "b1")) === 51, { retryErrors: true });

      // Bad writes are refused with a clear error, before anything reaches the log.
      await expect(book.put("nope", "a1", 1)).rejects.toThrow(StateRequestError);
      await expect(book.put("nope", "a1", 1)).rejects.toThrow(/not declared/);
      await expect(book.put("entries", "a1", 1)).rejects.toThrow(/sub-key/);

      // Committed reads come from KV once a checkpoint materialized the state...
      await waitFor("the committed count", async () => (await book.get<number>("count", "a1", { consistency: "committed" })) === 102, { retryErrors: true });
      const committed = [];
      for await (const e of book.scan({ state: "count", consistency: "committed" })) committed.push(e.key);
      expect(committed.sort()).toEqual(["a1", "a2", "b1"]);

      // ...and also with the job stopped, when live reads have nobody to ask.
      await undeploy(nc, "ledger");
      await waitFor("the worker to stop the job", async () => {
        const quick = await stateClient(nc, "ledger", "book", { timeoutMs: 300 });
        return await quick.get("count", "a1").then(() => false, (e: unknown) => e instanceof StateUnavailableError);
      }, { retryErrors: true });
      expect(await book.get("count", "a1", { consistency: "committed" })).toBe(102);
      const cli = await runEddy(["state", "get", "ledger", "book", "count", "a1", "--committed", "--json", "--nats", server.url]);
      expect(cli.code).toBe(0);
      expect(JSON.parse(cli.stdout)).toEqual({ found: true, value: 102 });
      const bad = await runEddy(["state", "put", "ledger", "book", "count", "a1", "not-json", "--nats", server.url]);
      expect(bad.code).not.toBe(0);
      expect(bad.stderr.trim().split("\n")).toHaveLength(1);
      expect(bad.stderr).toMatch(/not JSON/);

      // Writes sent while the job is stopped (what a bootstrap of a stopped job does) wait in the
      // input log and are applied when it runs again, before the data that follows them.
      await book.write([{ op: "put", state: "count", key: "a2", value: 40 }], { wait: false });
      await start(nc, "ledger");
      await waitFor("the queued write applied", async () => (await book.get<number>("count", "a2")) === 40, { timeoutMs: 30_000, logs: job.logs, retryErrors: true });
      await job.publish([{ account: "a2", id: "10" }]);
      await waitFor("data after the queued write", async () => (await book.get<number>("count", "a2")) === 41, { retryErrors: true });
    } finally {
      for (const w of job.workers) await w.kill();
      await supervisor.stop();
      await nc.close();
    }
  }, 120_000);

  it("loses no update when one key takes concurrent writes and data while a worker is killed", async () => {
    await using server = await natsServer();
    const nc = await connect(server);
    const supervisor = await startSupervisor(nc, { checkpointIntervalMs: 200, checkpointTimeoutMs: 3000 });
    const job = await ledger(nc, server.url, 2);
    try {
      const book = await stateClient(nc, "ledger", "book", { timeoutMs: 60_000 });
      await job.publish([{ account: "hot", id: "warmup" }]);
      await waitFor("the job running", async () => (await book.get<number>("count", "hot")) === 1, { timeoutMs: 30_000, logs: job.logs, retryErrors: true });

      const RECORDS = 300;
      const WRITES = 60;
      const data = (async () => {
        for (let i = 0; i < RECORDS; i += 20) {
          await job.publish(Array.from({ length: 20 }, (_, j) => ({ account: "hot", id: String(i + j) })));
          await sleep(50);
        }
      })();
      let next = 0;
      const writer = async () => {
        while (next < WRITES) {
          const j = next++;
          await book.put("entries", "hot", 1, { subkey: `w:${j}` });
        }
      };
      const writes = Promise.all(Array.from({ length: 6 }, writer));
      await waitFor("some writes applied", async () => next >= WRITES / 3, { retryErrors: true });
      await job.workers[0]!.kill(); // a crash in the middle of it all
      job.start();
      await Promise.all([data, writes]);

      const expected: Record<string, number> = { "d:warmup": 1 };
      for (let i = 0; i < RECORDS; i++) expected[`d:${i}`] = 1;
      for (let j = 0; j < WRITES; j++) expected[`w:${j}`] = 1;
      await waitFor("every record counted", async () => (await book.get<number>("count", "hot")) === RECORDS + 1, { timeoutMs: 60_000, logs: job.logs, retryErrors: true });
      expect(await book.get("entries", "hot")).toEqual(expected);
      expect(await book.get("count", "hot")).toBe(RECORDS + 1); // counted once each, after the recovery too
      await waitFor("the same state committed", async () => JSON.stringify(await book.get("entries", "hot", { consistency: "committed" })) === JSON.stringify(await book.get("entries", "hot")), { retryErrors: true });

      // After all that, a write still lands between the records before and after it.
      // Applied, not left queued: a queued write would mean no actor read the partition for a minute.
      expect(await book.put("count", "hot", 1000)).toMatchObject({ applied: true });
      await job.publish(Array.from({ length: 5 }, (_, i) => ({ account: "hot", id: `after-${i}` })));
      let seen: number | undefined;
      await waitFor("records after the write", async () => (seen = await book.get<number>("count", "hot")) === 1005, {
        retryErrors: true,
        logs: () => `count read last: ${String(seen)}\n${job.logs()}`,
      });
    } finally {
      for (const w of job.workers) await w.kill();
      await supervisor.stop();
      await nc.close();
    }
  }, 180_000);
});
