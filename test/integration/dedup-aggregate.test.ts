/**
 * dedup → groupAggregate on a real nats-server: versions of orders arrive out of order and
 * duplicated, `dedup` keeps the latest version of each order by event time (a later arrival wins a
 * tie), and `groupAggregate` keeps the per-user totals right as versions replace each other — an
 * order may even move from one user to another. Both run on several partitions, so a retraction
 * and its replacement may travel to different aggregate partitions. The sink's changelog, applied
 * as a table would apply it, must end with exactly the totals a plain loop computes; a retraction
 * fed to dedup is dead-lettered with its reason.
 */
import { describe, expect, it } from "vitest";
import { startLocalJob } from "../../runtime/dev/local-job.ts";
import { ensureStream, publishAll, readAll } from "../../runtime/nats/streams.ts";
import { boundedOutOfOrderness, dedup, defineFunction, definePipeline, defineSink, fromFunction, fromStream, groupAggregate, type Change } from "../../runtime/sdk/index.ts";
import { seededRandom } from "../../functions/seeded-random.ts";
import { applyChanges, sortRows } from "../support/changes.ts";
import { connect, natsServer } from "../support/nats-server.ts";

interface OrderVersion {
  readonly id: string;
  readonly user: string;
  readonly amount: number;
  readonly ts: number;
  /** Which publish this was, so that duplicates of a version stay distinguishable in the model. */
  readonly seq: number;
}

interface Total {
  readonly user: string;
  readonly orders: number;
  readonly amount: number;
}

const pipeline = definePipeline({
  name: "order-totals",
  functions: [
    defineFunction<OrderVersion | Change<OrderVersion>, OrderVersion | Change<OrderVersion>>({
      name: "read",
      input: fromStream("ORDERS", { subject: "orders.>" }),
      timestamp: (o) => ("ts" in o ? o.ts : o.row.ts),
      watermark: boundedOutOfOrderness(5_000),
      process: (ctx, o) => ctx.emit(o),
    }),
    dedup<OrderVersion>({ name: "latest", input: fromFunction("read"), partitions: 3, key: (o) => o.id, keep: "last", time: "event" }),
    groupAggregate({
      name: "totals",
      input: fromFunction("latest"),
      partitions: 2,
      key: (o: OrderVersion) => o.user,
      aggregate: {
        create: () => ({ n: 0, sum: 0 }),
        add: (a: { n: number; sum: number }, o: OrderVersion) => ({ n: a.n + 1, sum: a.sum + o.amount }),
        retract: (a: { n: number; sum: number }, o: OrderVersion) => ({ n: a.n - 1, sum: a.sum - o.amount }),
        result: (a: { n: number; sum: number }, user: string): Total => ({ user, orders: a.n, amount: a.sum }),
      },
    }),
    defineSink({ name: "out", input: fromFunction("totals"), subject: "totals.orders" }),
  ],
});

/**
 * Versions of 20 orders of 5 users: times out of order by up to 4 s, many ties (40 % of the times
 * rounded down to 5 s, so that which of two equal times wins changes the totals for this seed),
 * exact duplicates, orders moving between users.
 */
function versions(count: number, seed: number): OrderVersion[] {
  const random = seededRandom(seed);
  const out: OrderVersion[] = [];
  for (let seq = 0; seq < count; seq++) {
    const previous = out.length > 0 && random() < 0.1 ? out[Math.floor(random() * out.length)]! : undefined;
    if (previous !== undefined) {
      out.push({ ...previous, seq }); // a duplicate publish of an earlier version
      continue;
    }
    const base = 1_000 + seq * 100;
    out.push({
      id: `o${Math.floor(random() * 20)}`,
      user: `u${Math.floor(random() * 5)}`,
      amount: Math.floor(random() * 100),
      ts: random() < 0.4 ? Math.floor(base / 5_000) * 5_000 : base - Math.floor(random() * 4_000),
      seq,
    });
  }
  return out;
}

/** ROW_NUMBER() OVER (PARTITION BY id ORDER BY ts DESC, arrival DESC) = 1, then SUM per user, by plain loops. */
function expectedTotals(input: readonly OrderVersion[]): Total[] {
  const latest = new Map<string, OrderVersion>();
  for (const o of input) {
    const kept = latest.get(o.id);
    if (kept === undefined || o.ts >= kept.ts) latest.set(o.id, o);
  }
  const totals = new Map<string, Total>();
  for (const o of latest.values()) {
    const t = totals.get(o.user) ?? { user: o.user, orders: 0, amount: 0 };
    totals.set(o.user, { user: o.user, orders: t.orders + 1, amount: t.amount + o.amount });
  }
  return sortRows([...totals.values()]);
}

describe("dedup → groupAggregate", () => {
  it("ends with the per-user totals of the latest version of every order, and dead-letters a retraction fed to dedup", async () => {
    await using server = await natsServer();
    const nc = await connect(server);
    try {
      await ensureStream(nc, "ORDERS", ["orders.>"]);
      await ensureStream(nc, "TOTALS", ["totals.>"]);
      const input = versions(600, 15);
      const messages = input.map((o) => ({ subject: "orders.new", data: JSON.stringify(o) }));
      const retraction: Change<OrderVersion> = { rowKind: "-D", row: { id: "o1", user: "u1", amount: 1, ts: 1_000, seq: -1 } };
      messages.splice(300, 0, { subject: "orders.new", data: JSON.stringify(retraction) });
      const job = await startLocalJob(nc, pipeline, { checkpointIntervalMs: 200 });
      await publishAll(nc, messages.slice(0, 300));
      await job.checkpoint();
      await publishAll(nc, messages.slice(300));
      await job.endInput();
      await job.finished();
      await job.stop();

      const published = (await readAll(nc, "TOTALS")).map((m) => JSON.parse(new TextDecoder().decode(m.data)) as Change<Total>);
      expect(published.length).toBeGreaterThan(0);
      expect(published.every((c) => ["+I", "-U", "+U", "-D"].includes(c.rowKind))).toBe(true);
      // Replacements did happen, so the totals were retracted along the way.
      expect(published.some((c) => c.rowKind === "-U")).toBe(true);
      const final = applyChanges(published);
      expect(final).toEqual(expectedTotals(input));
      expect(new Set(final.map((t) => t.user)).size).toBe(final.length);

      const dead = await readAll(nc, "EDDY_order-totals_DLQ");
      expect(dead.map((m) => ({ fn: m.headers["Eddy-Function"], reason: m.headers["Eddy-Reason"] }))).toEqual([
        { fn: "latest", reason: expect.stringMatching(/^process: latest\.process failed for key "o1": latest: dedup reads an append-only input, but got a -D record/) },
      ]);
    } finally {
      await nc.close();
    }
  }, 120_000);
});
