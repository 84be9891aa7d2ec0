/**
 * The changelog joins of issue 15 on a real nats-server (design note bx): orders joined with a
 * payment changelog (inserts, updates, deletes, duplicates) by a left outer `streamJoin`, and with
 * the users' level history by a left `temporalJoin` at order time — two sinks, read back after the
 * job ran to the end of its input and stopped with a checkpoint. The payment join's output is
 * applied as a changelog; both must equal plain loops over the same inputs.
 */
import { describe, expect, it } from "vitest";
import { ensureStream, publishAll, readAll } from "../../runtime/nats/streams.ts";
import { startLocalJob } from "../../runtime/dev/local-job.ts";
import {
  asChange,
  boundedOutOfOrderness,
  change,
  defineFunction,
  definePipeline,
  defineSink,
  fromFunction,
  fromStream,
  streamJoin,
  temporalJoin,
  type Change,
} from "../../runtime/sdk/index.ts";
import { seededRandom } from "../../functions/seeded-random.ts";
import { applyChanges, sortRows } from "../support/changes.ts";
import { connect, natsServer } from "../support/nats-server.ts";
import { waitFor } from "../support/wait.ts";

const decoder = new TextDecoder();

interface Order {
  readonly id: string;
  readonly user: string;
  readonly ts: number;
}
interface Payment {
  readonly order: string;
  readonly amount: number;
  readonly ts: number;
}
interface Level {
  readonly user: string;
  readonly level: string;
  readonly ts: number;
}

/** Seeded inputs, each stream in event-time order (so no record is late and the result is fixed). */
function inputs() {
  const random = seededRandom(15);
  const pick = <T>(xs: readonly T[]) => xs[Math.floor(random() * xs.length)]!;
  const users = Array.from({ length: 12 }, (_, i) => `u${i}`);
  const orders: Order[] = Array.from({ length: 150 }, (_, i) => ({ id: `o${i}`, user: pick(users), ts: 10_000 + i * 20 }));
  // Payments: most orders paid once, some twice (many-to-many); some amounts corrected, some refunded.
  const payments: Array<Change<Payment>> = [];
  const held: Payment[] = [];
  let t = 10_000;
  for (const o of orders) {
    if (random() < 0.75) {
      const p = { order: o.id, amount: Math.floor(random() * 100), ts: (t += 7) };
      held.push(p);
      payments.push(change(p));
      if (random() < 0.1) {
        held.push(p);
        payments.push(change(p)); // the same row again
      }
    }
    if (held.length > 0 && random() < 0.2) {
      const [old] = held.splice(Math.floor(random() * held.length), 1);
      if (random() < 0.5) payments.push(change(old!, "-D"));
      else {
        const next = { ...old!, amount: old!.amount + 1, ts: (t += 7) };
        held.push(next);
        payments.push(change(old!, "-U"), change(next, "+U"));
      }
    }
  }
  // Level history: versions at their own times, deletes among them; two versions may share a time.
  const levels: Array<Change<Level>> = [];
  let lt = 9_000;
  for (let i = 0; i < 90; i++) {
    if (random() > 0.2) lt += Math.floor(random() * 60);
    const user = pick(users);
    const kind = random() < 0.15 ? "-D" : pick(["+I", "+U"] as const);
    levels.push(change({ user, level: pick(["bronze", "silver", "gold"]), ts: lt }, kind));
  }
  return { orders, payments, levels };
}

describe("changelog joins on a real server", () => {
  it("a left outer stream join over a payment changelog and a left temporal join at order time equal plain loops", async () => {
    await using server = await natsServer();
    const nc = await connect(server);
    const { orders, payments, levels } = inputs();
    await ensureStream(nc, "CJ_ORDERS", ["cj.orders"]);
    await ensureStream(nc, "CJ_PAYMENTS", ["cj.payments"]);
    await ensureStream(nc, "CJ_LEVELS", ["cj.levels"]);
    await ensureStream(nc, "CJ_OUT", ["cj.out.>"]);
    const json = (subject: string, xs: readonly unknown[]) => xs.map((x) => ({ subject, data: JSON.stringify(x) }));
    await publishAll(nc, json("cj.orders", orders));
    await publishAll(nc, json("cj.levels", levels));

    const source = <T extends { ts: number }>(name: string, stream: string, subject: string) =>
      defineFunction<T | Change<T>, T | Change<T>>({
        name,
        input: fromStream(stream, { subject }),
        timestamp: (r) => asChange(r).row.ts,
        watermark: boundedOutOfOrderness(0),
        process: (ctx, r) => ctx.emit(r),
      });
    const pipeline = definePipeline({
      name: "changelog-joins",
      functions: [
        source<Order>("orders", "CJ_ORDERS", "cj.orders"),
        source<Payment>("payments", "CJ_PAYMENTS", "cj.payments"),
        source<Level>("levels", "CJ_LEVELS", "cj.levels"),
        streamJoin({
          name: "paid",
          left: fromFunction("orders"),
          right: fromFunction("payments"),
          leftKey: (o: Order) => o.id,
          rightKey: (p: Payment) => p.order,
          type: "left",
          partitions: 2,
          output: (o, p) => ({ order: o.id, amount: p?.amount ?? null }),
        }),
        temporalJoin({
          name: "levelled",
          left: fromFunction("orders"),
          right: fromFunction("levels"),
          leftKey: (o: Order) => o.user,
          rightKey: (l: Level) => l.user,
          type: "left",
          partitions: 2,
          output: (o, l) => ({ order: o.id, level: l?.level ?? null }),
        }),
        defineSink({ name: "paid-out", input: fromFunction("paid"), subject: "cj.out.paid" }),
        defineSink({ name: "levelled-out", input: fromFunction("levelled"), subject: "cj.out.levelled" }),
      ],
    });
    const job = await startLocalJob(nc, pipeline, { checkpointIntervalMs: 500 });
    try {
      // Every order is joined, padded, before any payment exists: the payments that follow must
      // retract those paddings. (Published together, the two sources race, and when the payments
      // won no padding was ever emitted, so the retraction below was not tested.)
      await waitFor("every order padded", async () => (await readAll(nc, "CJ_OUT", "cj.out.paid")).length >= orders.length, { timeoutMs: 120_000, intervalMs: 100 });
      await publishAll(nc, json("cj.payments", payments));
      await job.endInput();
      await job.finished();
    } finally {
      await job.stop();
    }
    const read = async (subject: string) => (await readAll(nc, "CJ_OUT", subject)).map((m) => JSON.parse(decoder.decode(m.data)) as unknown);

    // The left outer join of the orders with the payments that remain, by nested loops.
    const finalPayments = applyChanges(payments);
    const paid: unknown[] = [];
    for (const o of orders) {
      const mine = finalPayments.filter((p) => p.order === o.id);
      if (mine.length === 0) paid.push({ order: o.id, amount: null });
      for (const p of mine) paid.push({ order: o.id, amount: p.amount });
    }
    const paidOut = await read("cj.out.paid");
    expect(paidOut.some((c) => asChange(c).rowKind === "-D")).toBe(true); // padding was retracted on the way
    expect(applyChanges(paidOut as Array<Change<unknown>>)).toEqual(sortRows(paid));

    // Each order with the level version valid at its time: the latest at or before it, the later
    // arrival among equal times; a delete or no version pads.
    const levelled = orders.map((o) => {
      let best: { readonly at: number; readonly c: Change<Level> } | undefined;
      levels.forEach((c, at) => {
        if (c.row.user !== o.user || c.rowKind === "-U" || c.row.ts > o.ts) return;
        if (best === undefined || c.row.ts >= best.c.row.ts) best = { at, c };
      });
      return { order: o.id, level: best === undefined || best.c.rowKind === "-D" ? null : best.c.row.level };
    });
    expect(levelled.some((r) => r.level === null) && levelled.some((r) => r.level !== null)).toBe(true);
    expect(sortRows(await read("cj.out.levelled"))).toEqual(sortRows(levelled));
    await nc.close();
  }, 240_000);
});
