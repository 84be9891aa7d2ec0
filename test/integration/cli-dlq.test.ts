/**
 * `eddy dlq ls|show|replay` with a real job: records its source function rejects (a bug, "fixed"
 * while the job runs) are listed with their reason and origin, shown with headers and payload,
 * and — replayed after the fix — processed like any other record. Dead letters raised downstream
 * of the source have no source message and are skipped by a replay.
 */
import { describe, expect, it } from "vitest";
import { spawnSync } from "node:child_process";
import { resolve } from "node:path";
import { startLocalJob } from "../../runtime/dev/local-job.ts";
import { ensureStream, publishAll, readAll } from "../../runtime/nats/streams.ts";
import { defineFunction, definePipeline, defineSink, fromFunction, fromStream, valueState } from "../../runtime/sdk/index.ts";
import { connect, natsServer } from "../support/nats-server.ts";

const ROOT = resolve(import.meta.dirname, "../..");
const eddy = (...args: string[]) => spawnSync(process.execPath, [resolve(ROOT, "runtime/cli/main.mjs"), ...args], { cwd: ROOT, encoding: "utf8", timeout: 60_000 });

interface Order {
  user: string;
  coupon?: string;
  boom?: boolean;
}

/** The "bug": coupons are rejected until the fix is deployed (here: the flag is turned off). */
let couponsBroken = true;

const pipeline = definePipeline({
  name: "orders",
  functions: [
    defineFunction<Order, Order>({
      name: "read",
      input: fromStream("ORDERS", { subject: "orders.>" }),
      process(ctx, o) {
        if (couponsBroken && o.coupon !== undefined) throw new Error(`coupon ${o.coupon} not supported`);
        ctx.emit(o);
      },
    }),
    defineFunction<Order, { user: string; n: number }, { n: ReturnType<typeof valueState<number>> }>({
      name: "count",
      input: fromFunction("read"),
      partitions: 2,
      key: (o) => o.user,
      state: { n: valueState<number>() },
      process(ctx, o) {
        if (o.boom === true) throw new Error("boom");
        ctx.emit({ user: ctx.key, n: ctx.state.n.update((n) => (n ?? 0) + 1) });
      },
    }),
    defineSink({ name: "out", input: fromFunction("count"), subject: "totals.orders" }),
  ],
});

async function until<T>(what: string, probe: () => Promise<T | undefined>, timeoutMs = 60_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

describe("eddy dlq", () => {
  it("lists, shows and replays a job's dead letters", async () => {
    await using server = await natsServer();
    await using nc = await connect(server);
    await ensureStream(nc, "ORDERS", ["orders.>"]);
    await ensureStream(nc, "TOTALS", ["totals.>"]);
    await publishAll(nc, [
      { subject: "orders.web", data: JSON.stringify({ user: "ann" }) },
      { subject: "orders.web", data: JSON.stringify({ user: "bob", coupon: "X1" }) },
      { subject: "orders.app", data: JSON.stringify({ user: "ann", coupon: "Y2" }) },
      { subject: "orders.web", data: JSON.stringify({ user: "cid", boom: true }) },
    ]);
    couponsBroken = true;
    const job = await startLocalJob(nc, pipeline);
    try {
      const totals = async () => (await readAll(nc, "TOTALS")).map((m) => JSON.parse(new TextDecoder().decode(m.data)) as { user: string; n: number });

      type Listed = { seq: number; function: string; from?: string; reason: string; time: string; bytes: number };
      const listed = await until("three dead letters", async () => {
        const r = eddy("dlq", "ls", "orders", "--nats", server.url, "--json");
        expect(r.status, r.stderr).toBe(0);
        const l = JSON.parse(r.stdout) as Listed[];
        return l.length >= 3 ? l : undefined;
      });
      expect(listed).toHaveLength(3);
      const coupons = listed.filter((d) => d.function === "read");
      expect(coupons.map((d) => d.from)).toEqual(["orders.web", "orders.app"]);
      for (const d of coupons) expect(d.reason).toMatch(/^process: read\.process failed.*coupon (X1|Y2) not supported/);
      const boom = listed.find((d) => d.function === "count")!;
      expect(boom.reason).toMatch(/^process: count\.process failed for key "cid": boom/);
      for (const d of listed) {
        expect(d.bytes).toBeGreaterThan(0);
        expect(Number.isNaN(Date.parse(d.time))).toBe(false);
      }

      const table = eddy("dlq", "ls", "orders", "--nats", server.url);
      expect(table.stdout.split("\n")[0]).toMatch(/^seq\s+function\s+from\s+time \(UTC\)\s+size\s+reason$/);

      const show = eddy("dlq", "show", "orders", String(coupons[0]!.seq), "--nats", server.url);
      expect(show.status).toBe(0);
      expect(show.stdout).toContain("Eddy-Function: read");
      expect(show.stdout).toContain("Eddy-Source-Subject: orders.web");
      expect(show.stdout).toContain(JSON.stringify({ user: "bob", coupon: "X1" }));
      const showJson = JSON.parse(eddy("dlq", "show", "orders", String(coupons[0]!.seq), "--nats", server.url, "--json").stdout);
      expect(showJson).toMatchObject({ seq: coupons[0]!.seq, encoding: "utf8", payload: JSON.stringify({ user: "bob", coupon: "X1" }) });

      const missing = eddy("dlq", "show", "orders", "999", "--nats", server.url);
      expect(missing.status).toBe(1);
      expect(missing.stderr.trim()).toBe('eddy: job "orders" has no dead letter 999 (list them with eddy dlq ls orders)');

      // Before the fix, only ann's first order counts (the sink publishes at checkpoints).
      expect((await until("ann's first order", async () => ((await totals()).length > 0 ? totals() : undefined))).map((t) => t.user)).toEqual(["ann"]);

      couponsBroken = false;
      const replay = eddy("dlq", "replay", "orders", "--reason", "process: ", "--nats", server.url, "--json");
      expect(replay.stderr).toBe("");
      expect(replay.status).toBe(0);
      const report = JSON.parse(replay.stdout) as { replayed: Array<{ seq: number; subject: string; stream: string }>; skipped: Array<{ seq: number }> };
      expect(report.replayed.map((r) => [r.seq, r.subject, r.stream])).toEqual(coupons.map((d) => [d.seq, d.from, "ORDERS"]));
      expect(report.skipped.map((s) => s.seq)).toEqual([boom.seq]);

      const after = await until("the replayed orders to be counted", async () => {
        const t = await totals();
        return t.length >= 3 ? t : undefined;
      });
      expect(after.map((t) => `${t.user}:${t.n}`).sort()).toEqual(["ann:1", "ann:2", "bob:1"]);

      const unknownSeq = eddy("dlq", "replay", "orders", "--seq", "999", "--nats", server.url);
      expect(unknownSeq.status).toBe(1);
      expect(unknownSeq.stdout).toMatch(/unknown --seq 999/);
    } finally {
      await job.stop();
    }
  });

  it("names a job without a dead-letter stream (exit 1)", async () => {
    await using server = await natsServer();
    const r = eddy("dlq", "ls", "nope", "--nats", server.url);
    expect(r.status).toBe(1);
    expect(r.stderr.trim()).toMatch(/^eddy: job "nope" has no dead-letter stream EDDY_nope_DLQ/);
  });
});
