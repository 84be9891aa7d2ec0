/**
 * The data accuracy scenario end to end (issue 15 items 5 and 6): functions/accuracy/pipeline.ts
 * deployed on a real nats-server, fed the seeded generator's messy inputs — a redelivered,
 * reordered oplog, orders and logistics events out of order and partly twice, user-level
 * versions as a changelog, some records held back far enough to be late — while a worker is
 * SIGKILLed and replaced. The final KV buckets and the exactly-once sink's output equal what the
 * SQL oracle (test/support/sql-oracle.ts, node:sqlite) computes over the same inputs.
 *
 * Which records are late must not depend on how fast watermarks travel, so the inputs go out
 * in phases: (1) every record on time for its own source's watermark (then on time at the joins
 * too, whose watermark is never ahead of a source's), in arrival order, the oplog alongside;
 * once the job has processed it (no lag under a committed checkpoint, and each join's committed
 * watermark at `W`, the minimum of its inputs' final watermarks), (2) the held-back records,
 * which cannot move any watermark — a join finds each late exactly when `ts <= W`, as the
 * oracle's plain loop over "phase 1, then phase 2" says; (3) one record per source far later,
 * which moves every watermark past the rest (it matches only itself and is left out).
 */
import { describe, expect, it } from "vitest";
import { resolve } from "node:path";
import { deployModule } from "../../runtime/deploy/deploy.ts";
import { ensureStream, publishAll, readAll } from "../../runtime/nats/streams.ts";
import { committedWatermarks } from "../../runtime/nats/committed-state.ts";
import { deadLetterStream } from "../../runtime/core/naming.ts";
import { jobLag } from "../../runtime/nats/lag.ts";
import { readJobView } from "../../runtime/nats/job-views.ts";
import { startSupervisor } from "../../runtime/supervisor/supervisor.ts";
import { asChange, type Change } from "../../runtime/spec/changelog.ts";
import { accuracyInputs, DAY_MS, lateness, type LogisticsEvent, type Order, type UserLevel } from "../../functions/accuracy/generator.ts";
import { MAX_OUT_OF_ORDERNESS_MS, ORDERS_BUCKET, SHIPMENTS_SUBJECT, STREAM, TABLES_BUCKET, tableKey, WITHIN_MS, type LeveledOrder, type Shipment, type TableRow } from "../../functions/accuracy/pipeline.ts";
import { rowText, sortRows } from "../support/changes.ts";
import { sqlIntervalJoin, sqlOplogTable, sqlTemporalJoin, type SidedRecord } from "../support/sql-oracle.ts";
import { connect, natsServer } from "../support/nats-server.ts";
import { startEddy, type EddyProcess } from "../support/processes.ts";
import { waitFor } from "../support/wait.ts";

const ROOT = resolve(import.meta.dirname, "../..");
const JOB = "accuracy";
const PARTITIONS = 2;
const decoder = new TextDecoder();

type Source = "orders" | "logistics" | "levels";
interface Outgoing {
  readonly source: Source;
  readonly value: Order | LogisticsEvent | Change<UserLevel>;
  readonly ts: number;
  readonly at: number;
}

/** The rows of a KV bucket as its stream holds them (the last write per key; a delete marker removes it). */
async function bucket<T>(nc: Awaited<ReturnType<typeof connect>>, name: string): Promise<Map<string, T>> {
  const rows = new Map<string, T>();
  for (const m of await readAll(nc, `KV_${name}`)) {
    const key = m.subject.slice(`$KV.${name}.`.length);
    if (m.headers["KV-Operation"] === undefined) rows.set(key, JSON.parse(decoder.decode(m.data)) as T);
    else rows.delete(key);
  }
  return new Map([...rows].sort(([a], [b]) => a.localeCompare(b)));
}

const sorted = <T>(m: Map<string, T>) => new Map([...m].sort(([a], [b]) => a.localeCompare(b)));

describe("the data accuracy scenario", () => {
  it("ends with the KV buckets and sink output SQL computes over the same messy inputs, across a worker kill", async () => {
    const x = accuracyInputs(15, { orders: { count: 150, users: 15 }, oplog: { rows: 25 }, delivery: { lateFraction: 0.08, duplicateFraction: 0.08 } });
    const bySource = {
      orders: x.deliveredOrders.map((d) => ({ source: "orders" as const, value: d.value, ts: d.ts, at: d.at })),
      logistics: x.ordersAndLogistics.filter((r) => r.side === "right").map((r) => ({ source: "logistics" as const, value: r.value as LogisticsEvent, ts: r.ts, at: r.at })),
      levels: x.ordersAndLevels.filter((r) => r.side === "right").map((r) => ({ source: "levels" as const, value: asChange(r.value as UserLevel | Change<UserLevel>), ts: r.ts, at: r.at })),
    };
    // Phase 1: on time for its own source; phase 2: the rest. Each in arrival order.
    const phase1: Outgoing[] = [];
    const phase2: Outgoing[] = [];
    for (const list of Object.values(bySource)) {
      const own = lateness(list, { boundMs: MAX_OUT_OF_ORDERNESS_MS, inputs: 1 });
      list.forEach((r, i) => (own.late[i] ? phase2 : phase1).push(r));
    }
    const byArrival = (a: Outgoing, b: Outgoing) => a.at - b.at;
    phase1.sort(byArrival);
    phase2.sort(byArrival);
    expect(phase2.length).toBeGreaterThan(0);

    // The oracle's view of each join: its two inputs in the order the phases deliver them.
    const sidedOf = <L, R>(left: Source, right: Source) =>
      [...phase1, ...phase2].filter((r) => r.source === left || r.source === right).map((r) => ({ side: r.source === left ? "left" : "right", value: r.value, ts: r.ts }) as SidedRecord<L, R> & { ts: number });
    const ij = sidedOf<Order, LogisticsEvent>("orders", "logistics");
    const tj = sidedOf<Order, UserLevel>("orders", "levels");
    const ijLate = lateness(ij, { boundMs: MAX_OUT_OF_ORDERNESS_MS });
    const tjLate = lateness(tj, { boundMs: MAX_OUT_OF_ORDERNESS_MS });
    // W of each join: its watermark once phase 1 is in; phase 2 never moves it.
    const wOf = (l: ReturnType<typeof lateness>, n: number) => l.after[n - 1]!;
    const ijPhase1 = ij.length - phase2.filter((r) => r.source !== "levels").length;
    const tjPhase1 = tj.length - phase2.filter((r) => r.source !== "logistics").length;
    expect(ijLate.after.at(-1)).toBe(wOf(ijLate, ijPhase1));
    expect(tjLate.after.at(-1)).toBe(wOf(tjLate, tjPhase1));
    expect(ijLate.late.some(Boolean) && tjLate.late.some(Boolean)).toBe(true);

    const shipmentOf = (o: Order, e: LogisticsEvent | null): Shipment => ({ orderId: o.orderId, userId: o.userId, orderTime: o.orderTime, eventId: e?.eventId ?? null, status: e?.status ?? null, eventTime: e?.eventTime ?? null });
    const expectedShipments = sqlIntervalJoin<Order, LogisticsEvent, Shipment>({ input: ij, leftKey: (o) => o.orderId, rightKey: (e) => e.orderId, type: "left", lowerBoundMs: 0, upperBoundMs: WITHIN_MS, output: (o, e) => shipmentOf(o!, e), watermarks: ijLate.after });
    // Lateness decides part of the result: counted as on time, the late records would change it.
    expect(sqlIntervalJoin<Order, LogisticsEvent, Shipment>({ input: ij, leftKey: (o) => o.orderId, rightKey: (e) => e.orderId, type: "left", lowerBoundMs: 0, upperBoundMs: WITHIN_MS, output: (o, e) => shipmentOf(o!, e) })).not.toEqual(expectedShipments);
    const leveled = sqlTemporalJoin<Order, UserLevel, LeveledOrder>({
      input: tj,
      leftKey: (o) => o.userId,
      rightKey: (v) => v.userId,
      type: "left",
      output: (o, v): LeveledOrder => ({ orderId: o.orderId, userId: o.userId, amount: o.amount, orderTime: o.orderTime, level: v?.level ?? null }),
      watermarks: tjLate.after,
    });
    const expectedOrders = new Map<string, LeveledOrder>();
    for (const row of leveled) {
      // A duplicated order meets the same version both times: one key, one value.
      expect(expectedOrders.get(row.orderId) ?? row).toEqual(row);
      expectedOrders.set(row.orderId, row);
    }
    const project = (row: { id: string; status: string; amount: number }, table: string): TableRow => ({ table, id: row.id, status: row.status, amount: row.amount });
    const expectedTables = new Map(sqlOplogTable({ input: x.deliveredOplog, id: (r) => r.id, project }).map((r) => [tableKey(r), r] as const));

    // Phase 3: one record per source far after everything, matching only itself.
    const end = Math.max(...[...phase1, ...phase2].map((r) => r.ts)) + 2 * DAY_MS + 2 * MAX_OUT_OF_ORDERNESS_MS;
    const flush: Outgoing[] = [
      { source: "orders", value: { orderId: "flush", userId: "flush", amount: 1, orderTime: end }, ts: end, at: end },
      { source: "logistics", value: { eventId: "flush-e", orderId: "flush", status: "picked", eventTime: end }, ts: end, at: end },
      { source: "levels", value: { rowKind: "+I", row: { userId: "flush", level: "bronze", validFrom: end } }, ts: end, at: end },
    ];

    await using server = await natsServer();
    const nc = await connect(server);
    const supervisor = await startSupervisor(nc, { checkpointIntervalMs: 300, checkpointTimeoutMs: 20_000 });
    const workers: EddyProcess[] = [];
    const logs = () => workers.map((w) => w.output().slice(-4000)).join("\n---\n");
    const patiently = { timeoutMs: 120_000, intervalMs: 300, logs, retryErrors: true };
    const publish = (records: readonly Outgoing[]) => publishAll(nc, records.map((r) => ({ subject: `accuracy.${r.source}`, data: JSON.stringify(r.value) })));
    const settled = async (what: string) => {
      await waitFor(`${what}: no lag under a committed checkpoint`, async () => {
        const spec = (await readJobView(nc, JOB)).spec;
        return spec !== null && (await jobLag(nc, spec)) === 0 ? true : undefined;
      }, patiently);
    };
    try {
      await ensureStream(nc, STREAM, ["accuracy.>"]);
      await ensureStream(nc, "ACCURACY_RESULTS", ["results.accuracy.>"]);
      await deployModule(nc, resolve(ROOT, "functions/accuracy/pipeline.ts"));
      workers.push(startEddy(["worker", "--nats", server.url]));

      // Phase 1 with the oplog, a worker killed halfway.
      const oplog = x.deliveredOplog.map((d) => ({ subject: "accuracy.oplog", data: JSON.stringify(d.value) }));
      const half = Math.floor(phase1.length / 2);
      await publish(phase1.slice(0, half));
      await publishAll(nc, oplog.slice(0, Math.floor(oplog.length / 2)));
      await new Promise((r) => setTimeout(r, 1_500));
      await workers[0]!.kill();
      workers.push(startEddy(["worker", "--nats", server.url]));
      await publish(phase1.slice(half));
      await publishAll(nc, oplog.slice(Math.floor(oplog.length / 2)));
      await settled("phase 1");
      for (const [fn, w] of [["shipments", wOf(ijLate, ijPhase1)], ["order-levels", wOf(tjLate, tjPhase1)]] as const) {
        await waitFor(`${fn} at watermark ${w}`, async () => ((await committedWatermarks(nc, JOB, fn, PARTITIONS)).every((c) => c !== null && c >= w) ? true : undefined), patiently);
      }

      await publish(phase2);
      await settled("phase 2");
      await publish(flush);

      const shipments = async () => (await readAll(nc, "ACCURACY_RESULTS")).filter((m) => m.subject === SHIPMENTS_SUBJECT).map((m) => JSON.parse(decoder.decode(m.data)) as Shipment);
      await waitFor("every shipment row", async () => ((await shipments()).length >= expectedShipments.length + 1 ? true : undefined), patiently);
      // Upserts are applied after their checkpoint commits: wait until the buckets are complete (or time out, and show the difference below).
      const complete = async (name: string, want: Map<string, unknown>) => rowText([...(await bucket(nc, name))]) === rowText([...sorted(want)]);
      await waitFor("both buckets complete", async () => ((await complete(ORDERS_BUCKET, expectedOrders)) && (await complete(TABLES_BUCKET, expectedTables)) ? true : undefined), patiently).catch(() => undefined);
      await settled("phase 3");
      await new Promise((r) => setTimeout(r, 1_500)); // a few checkpoints more: nothing else may come

      // The inputs are messy, not malformed: nothing is dead-lettered (a timer that failed would be).
      expect((await readAll(nc, deadLetterStream(JOB))).map((m) => m.headers["Eddy-Reason"])).toEqual([]);
      const got = (await shipments()).filter((s) => s.orderId !== "flush");
      expect(sortRows(got)).toEqual(expectedShipments);
      expect(expectedShipments.some((s) => s.eventId === null) && expectedShipments.some((s) => s.eventId !== null)).toBe(true);
      expect(await bucket<LeveledOrder>(nc, ORDERS_BUCKET)).toEqual(sorted(expectedOrders));
      expect([...expectedOrders.values()].some((o) => o.level === null) && [...expectedOrders.values()].some((o) => o.level !== null)).toBe(true);
      expect(await bucket<TableRow>(nc, TABLES_BUCKET)).toEqual(sorted(expectedTables));
    } catch (e) {
      console.log(logs());
      throw e;
    } finally {
      for (const w of workers) await w.kill();
      await supervisor.stop();
      await nc.close();
    }
  }, 300_000);
});
