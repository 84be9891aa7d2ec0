/**
 * An upsert sink into a KV bucket is exactly once across a worker crash between commit and apply
 * (design note bv). A database oplog (inserts, updates, deletes of 120 orders, seeded) feeds
 * test/fixtures/upsert-orders.ts, whose `status` function upserts each order's current row into
 * bucket UPSERT_STATUS (and publishes its changes at least once to upsert.changes). Checkpoints
 * are taken on request only. Half the oplog is applied normally; then writes to the bucket stop
 * being acknowledged (its stream's subjects are taken away and a subscriber that never answers
 * takes them: the worker repeats its writes, as on a cluster whose leader is gone), the rest of
 * the oplog is processed and covered by a committed checkpoint whose upserts cannot be applied,
 * and the worker is SIGKILLed there. A new worker recovers and applies them. The bucket must end equal to a plain loop over the oplog, and
 * every key's history in the bucket (kept 64 deep here) must follow the loop's order: values may
 * be skipped (coalesced), never repeated out of order — no older row over a newer one.
 */
import { describe, expect, it } from "vitest";
import { jetstreamManager } from "@nats-io/jetstream";
import { Kvm } from "@nats-io/kv";
import { seededRandom } from "../../functions/seeded-random.ts";
import { resolve } from "node:path";
import { requestCheckpoint } from "../../runtime/nats/control.ts";
import { deployModule, start, undeploy } from "../../runtime/deploy/deploy.ts";
import { ensureStream, publishAll, readAll } from "../../runtime/nats/streams.ts";
import { startSupervisor } from "../../runtime/supervisor/supervisor.ts";
import type { OrderStatus } from "../fixtures/upsert-orders.ts";
import { connect, natsServer } from "../support/nats-server.ts";
import { startWorkerProcess, type EddyProcess } from "../support/processes.ts";
import { waitFor } from "../support/wait.ts";

const BUCKET = "UPSERT_STATUS";
const KV_STREAM = `KV_${BUCKET}`;
const decoder = new TextDecoder();

interface OplogRecord {
  readonly op_type: "I" | "U" | "D";
  readonly table: string;
  readonly commit_ts: number;
  readonly changed_fields: string[];
  readonly before: { id: number; status: string } | null;
  readonly after: { id: number; status: string } | null;
}

/** A seeded oplog: an insert for an order not there, else mostly updates, sometimes a delete. */
function generateOplog(seed: number, count: number, orders: number): OplogRecord[] {
  const random = seededRandom(seed);
  const statuses = ["new", "paid", "packed", "shipped", "delivered"];
  const current = new Map<number, string>();
  const out: OplogRecord[] = [];
  for (let i = 0; i < count; i++) {
    const id = Math.floor(random() * orders);
    const status = statuses[Math.floor(random() * statuses.length)]!;
    const was = current.get(id);
    const base = { table: "orders", commit_ts: 1_000 + i, changed_fields: ["status"] };
    if (was === undefined) {
      out.push({ op_type: "I", ...base, before: null, after: { id, status } });
      current.set(id, status);
    } else if (random() < 0.15) {
      out.push({ op_type: "D", ...base, before: { id, status: was }, after: null });
      current.delete(id);
    } else {
      out.push({ op_type: "U", ...base, before: { id, status: was }, after: { id, status } });
      current.set(id, status);
    }
  }
  return out;
}

/** The plain loop: each KV key's states in order (null: deleted), and the final table. */
function expectedTable(oplog: readonly OplogRecord[]): { history: Map<string, Array<OrderStatus | null>>; final: Map<string, OrderStatus>; changes: number } {
  const final = new Map<string, OrderStatus>();
  let changes = 0;
  const history = new Map<string, Array<OrderStatus | null>>();
  for (const r of oplog) {
    const row = r.after ?? r.before!;
    const key = `order.${row.id}`;
    const last = final.get(key);
    let next: OrderStatus | null;
    if (r.op_type === "D") next = null;
    else next = { id: row.id, status: r.after!.status, updates: last === undefined ? 0 : last.updates + 1 };
    if (next === null) final.delete(key);
    else final.set(key, next);
    if (next === null && last === undefined) continue;
    changes += next === null || last === undefined ? 1 : 2;
    history.set(key, [...(history.get(key) ?? []), next]);
  }
  return { history, final, changes };
}

/** The bucket as its stream holds it: every write per key in order (null: a delete marker), and the current rows. */
async function bucketContents(nc: Awaited<ReturnType<typeof connect>>): Promise<{ writes: Map<string, Array<OrderStatus | null>>; current: Map<string, OrderStatus> }> {
  const writes = new Map<string, Array<OrderStatus | null>>();
  for (const m of await readAll(nc, KV_STREAM)) {
    const key = m.subject.slice(`$KV.${BUCKET}.`.length);
    const value = m.headers["KV-Operation"] === undefined ? (JSON.parse(decoder.decode(m.data)) as OrderStatus) : null;
    writes.set(key, [...(writes.get(key) ?? []), value]);
  }
  const current = new Map<string, OrderStatus>();
  for (const [key, list] of writes) {
    const last = list.at(-1);
    if (last != null) current.set(key, last);
  }
  return { writes, current };
}

/** Whether `seen` is `all` with some items left out (in the same order). */
function isSubsequence<T>(seen: readonly T[], all: readonly T[]): boolean {
  let i = 0;
  for (const x of all) if (i < seen.length && JSON.stringify(seen[i]) === JSON.stringify(x)) i++;
  return i === seen.length;
}

const sorted = (m: Map<string, OrderStatus>) => [...m].sort(([a], [b]) => a.localeCompare(b));

describe("an upsert sink into a KV bucket", () => {
  it("ends equal to a plain loop over the oplog after a worker is killed between commit and apply", async () => {
    await using server = await natsServer();
    const nc = await connect(server);
    const supervisor = await startSupervisor(nc, { checkpointIntervalMs: 3_600_000, checkpointTimeoutMs: 20_000 });
    const workers: EddyProcess[] = [];
    try {
      await ensureStream(nc, "UPSERT_OPLOG", ["upsert.oplog"]);
      await ensureStream(nc, "UPSERT_CHANGES", ["upsert.changes"]);
      const changes = async () => (await readAll(nc, "UPSERT_CHANGES")).map((m) => ({ kind: m.headers["Eddy-Row-Kind"], body: JSON.parse(decoder.decode(m.data)) as { rowKind: string; row: OrderStatus } }));
      // Made here with a history, so that the test sees every write; eddy keeps an existing bucket's configuration.
      await new Kvm(nc).create(BUCKET, { history: 64 });
      const oplog = generateOplog(15, 1200, 120);
      const half = 600;
      const publish = (records: readonly OplogRecord[]) => publishAll(nc, records.map((r) => ({ subject: "upsert.oplog", data: JSON.stringify(r) })));

      workers.push(startWorkerProcess("test/fixtures/upsert-orders.ts", server.url));
      await publish(oplog.slice(0, half));
      const firstHalf = expectedTable(oplog.slice(0, half));
      await waitFor("the first half processed", async () => (await changes()).length === firstHalf.changes, { timeoutMs: 60_000, intervalMs: 200 });
      expect((await requestCheckpoint(nc, "upserts")).status).toBe("committed");
      await waitFor("the first half upserted", async () => JSON.stringify(sorted((await bucketContents(nc)).current)) === JSON.stringify(sorted(firstHalf.final)), { timeoutMs: 60_000, intervalMs: 200 });

      // Writes to the bucket are no longer acknowledged: its stream lets go of its subjects, and
      // a subscriber that never answers takes them.
      const jsm = await jetstreamManager(nc);
      const config = (await jsm.streams.info(KV_STREAM)).config;
      await jsm.streams.update(KV_STREAM, { ...config, subjects: [`$KV_BLOCKED.${BUCKET}.>`] });
      let swallowed = 0;
      const blackHole = nc.subscribe(`$KV.${BUCKET}.>`, { callback: () => void swallowed++ });
      const blockedAt = (await jsm.streams.info(KV_STREAM)).state.last_seq;
      await publish(oplog.slice(half));
      const { final, history, changes: allChanges } = expectedTable(oplog);
      await waitFor("the whole oplog processed", async () => (await changes()).length === allChanges, { timeoutMs: 60_000, intervalMs: 200 });
      // A checkpoint covering every record commits; its upserts are tried and not acknowledged.
      expect((await requestCheckpoint(nc, "upserts")).status).toBe("committed");
      await waitFor("the committed upserts being tried", () => swallowed > 0, { timeoutMs: 30_000, intervalMs: 50 });
      expect((await jsm.streams.info(KV_STREAM)).state.last_seq).toBe(blockedAt);
      await workers[0]!.kill();

      blackHole.unsubscribe();
      await jsm.streams.update(KV_STREAM, { ...config });
      workers.push(startWorkerProcess("test/fixtures/upsert-orders.ts", server.url));
      const contents = await waitFor(
        "every upsert applied",
        async () => {
          const c = await bucketContents(nc);
          return JSON.stringify(sorted(c.current)) === JSON.stringify(sorted(final)) ? c : undefined;
        },
        { timeoutMs: 120_000, intervalMs: 300 },
      );
      expect(sorted(contents.current)).toEqual(sorted(final));
      // The changelog sink said each change's kind in its header, as its body does.
      const published = await changes();
      expect(published.every((c) => c.kind === c.body.rowKind)).toBe(true);
      expect(new Set(published.map((c) => c.kind))).toEqual(new Set(["+I", "-U", "+U", "-D"]));
      for (const [key, writes] of contents.writes) {
        // Consecutive equal writes are one (a put repeated by a replay changes nothing).
        const distinct = writes.filter((w, i) => i === 0 || JSON.stringify(w) !== JSON.stringify(writes[i - 1]));
        expect(isSubsequence(distinct, history.get(key) ?? []), `writes of ${key}: ${JSON.stringify(writes)} follow ${JSON.stringify(history.get(key))}`).toBe(true);
      }
    } catch (e) {
      for (const w of workers) console.log(w.output().slice(-4000));
      throw e;
    } finally {
      for (const w of workers) await w.kill();
      await supervisor.stop();
      await nc.close();
    }
  }, 240_000);

  it("gets its bucket from eddy deploy, with the job's replica count and one value per key, and again from eddy start", async () => {
    await using server = await natsServer();
    const nc = await connect(server);
    try {
      await ensureStream(nc, "UPSERT_OPLOG", ["upsert.oplog"]);
      await ensureStream(nc, "UPSERT_CHANGES", ["upsert.changes"]);
      const jsm = await jetstreamManager(nc);
      await expect(jsm.streams.info(KV_STREAM)).rejects.toThrow(/not found/);
      await deployModule(nc, resolve(import.meta.dirname, "../fixtures/upsert-orders.ts"));
      const created = (await jsm.streams.info(KV_STREAM)).config;
      expect([created.num_replicas, created.max_msgs_per_subject, created.subjects]).toEqual([1, 1, [`$KV.${BUCKET}.>`]]);
      // Stopped, its bucket removed by someone: starting the job again creates it.
      await undeploy(nc, "upserts");
      await jsm.streams.delete(KV_STREAM);
      await start(nc, "upserts");
      expect((await jsm.streams.info(KV_STREAM)).config.max_msgs_per_subject).toBe(1);
    } finally {
      await nc.close();
    }
  }, 60_000);
});
