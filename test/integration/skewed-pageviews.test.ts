/**
 * The skewed page-view job (issue 16 item 6) on a real nats-server with `eddy worker` processes,
 * with local-global aggregation and a split over user buckets, and plain: half of the views on one page, published in batches by the
 * client producer. With the early-firing interval set live to 1 s (`eddy params set`), the open
 * minute of the hot page gets early rows — in the results and in the PAGE_STATS bucket — before
 * its final one; once the watermark passes every minute, each window has exactly one final row,
 * its views equal to a plain loop's and its distinct users within the sketch's error of the
 * loop's Set, and the bucket holds exactly the final rows.
 */
import { describe, expect, it } from "vitest";
import { resolve } from "node:path";
import { createProducer } from "../../runtime/client/index.ts";
import { partitionOf } from "../../runtime/core/hash.ts";
import { deployModule } from "../../runtime/deploy/deploy.ts";
import { ensureStream, readAll } from "../../runtime/nats/streams.ts";
import { startSupervisor } from "../../runtime/supervisor/supervisor.ts";
import type { PageView } from "../../functions/pageviews/events.ts";
import { generateSkewedViews, HOT_PAGE } from "../../functions/pageviews/skewed-events.ts";
import { expectedPageStats, uvTolerance } from "../../functions/pageviews/skewed-expected.ts";
import { SKEWED_WINDOW_MS, statsKey, type PageStats } from "../../functions/pageviews/skewed.ts";
import { eddyOk } from "../support/cli.ts";
import { connect, natsServer } from "../support/nats-server.ts";
import { startEddy, type EddyProcess } from "../support/processes.ts";
import { waitFor } from "../support/wait.ts";

const decoder = new TextDecoder();
const START = Date.UTC(2026, 0, 1);
const SOURCE_PARTITIONS = 2;

describe.each([
  ["with local-global aggregation and split over 16 user buckets", "skewed.ts"],
  ["plain", "skewed-plain.ts"],
])("the skewed page-view job, %s, on a real server", (_name, module) => {
  it("upserts early rows of the open minute, then exactly one final row per window equal to a plain loop's (views) and within the sketch's error (users)", { timeout: 300_000 }, async () => {
    await using server = await natsServer();
    const nc = await connect(server);
    const supervisor = await startSupervisor(nc, { checkpointIntervalMs: 300, checkpointTimeoutMs: 10_000 });
    const workers: EddyProcess[] = [];
    const logs = () => workers.map((w) => w.output()).join("\n---\n");
    try {
      await ensureStream(nc, "SKEWED_PAGEVIEWS", ["skewed-pageviews.>"]);
      await ensureStream(nc, "SKEWED_PAGEVIEWS_PARAMS", ["skewed-pageviews-params.>"]);
      await ensureStream(nc, "RESULTS", ["results.>"]);
      await deployModule(nc, resolve(import.meta.dirname, "../../functions/pageviews", module));
      for (let i = 0; i < 2; i++) workers.push(startEddy(["worker", "--nats", server.url]));
      await eddyOk(["params", "set", "skewed-pageviews", "page-stats", "earlyMs", "1000", "--nats", server.url], { logs });

      const producer = await createProducer(nc, { stream: "SKEWED_PAGEVIEWS", subject: "skewed-pageviews.{partition}", partitions: SOURCE_PARTITIONS, partitionBy: "user" });
      const publish = async (views: readonly PageView[]) => {
        for (const v of views) await producer.send(v);
        await producer.flush();
      };
      const results = async () => (await readAll(nc, "RESULTS", "results.skewed-pageviews")).map((m) => ({ seq: m.seq, row: JSON.parse(decoder.decode(m.data)) as PageStats }));
      const bucket = async () => new Map((await readAll(nc, "KV_PAGE_STATS")).filter((m) => m.headers["KV-Operation"] === undefined).map((m) => [m.subject.slice("$KV.PAGE_STATS.".length), JSON.parse(decoder.decode(m.data)) as PageStats]));

      // 2½ minutes of views, 100 a second; the first 1½ minutes now: minute 0 closes, minute 1 stays open.
      const views = generateSkewedViews({ seed: 21, events: 15_000, startTs: START, stepMs: 10 });
      const first = views.slice(0, views.findIndex((v) => v.ts >= START + 90_000));
      await publish(first);
      const open = `${HOT_PAGE}.web.${START + SKEWED_WINDOW_MS}`;
      const earlyRow = await waitFor(
        "an early row of the hot page's open minute in the bucket",
        async () => {
          const row = (await bucket()).get(open);
          return row !== undefined && !row.final ? row : undefined;
        },
        { timeoutMs: 120_000, intervalMs: 200, logs },
      );
      expect(earlyRow.firing).toBe("early");
      expect(earlyRow.pv).toBeGreaterThan(0);

      // The rest, then one view per source partition two minutes later: the watermark passes every minute of the input.
      await publish(views.slice(first.length));
      const enders = [0, 1, 2, 3, 4, 5, 6, 7].map((i) => `end-${i}`);
      const last = [0, 1].map((p) => enders.find((u) => partitionOf(u, SOURCE_PARTITIONS) === p)!);
      const tail: PageView[] = last.map((user) => ({ user, page: "end", channel: "web", ts: START + 300_000 }));
      await publish(tail);
      await producer.close();

      const expected = expectedPageStats(views);
      const finals = await waitFor(
        "the final row of every window of the input",
        async () => {
          const f = (await results()).filter((r) => r.row.final && r.row.page !== "end");
          return f.length >= expected.size ? f : undefined;
        },
        { timeoutMs: 180_000, intervalMs: 500, logs },
      );
      // No view is late, so each window has one final row.
      expect(finals.map((r) => statsKey(r.row)).sort()).toEqual([...expected.keys()].sort());
      for (const { row } of finals) {
        const e = expected.get(statsKey(row))!;
        expect(row.pv, statsKey(row)).toBe(e.pv);
        expect(Math.abs(row.uv - e.uv), `${statsKey(row)}: ${row.uv} for ${e.uv}`).toBeLessThanOrEqual(uvTolerance(e.uv));
        expect(row.firing).toBe("on-time");
      }
      // Early rows of the hot page's open minute came before its final one, marked early, never above it.
      const all = await results();
      const hot = all.filter((r) => statsKey(r.row) === open);
      const finalHot = hot.find((r) => r.row.final)!;
      const earlyHot = hot.filter((r) => !r.row.final);
      expect(earlyHot.length).toBeGreaterThanOrEqual(1);
      for (const r of earlyHot) {
        expect(r.seq).toBeLessThan(finalHot.seq);
        expect(r.row.firing).toBe("early");
        expect(r.row.pv).toBeLessThanOrEqual(finalHot.row.pv);
      }

      // The bucket ends with the final rows (its upserts apply at commits, so it may trail the results a moment).
      const want = new Map(finals.map((r) => [statsKey(r.row), r.row]));
      await waitFor(
        "the bucket to hold the final rows",
        async () => {
          const got = await bucket();
          for (const k of [...got.keys()]) if (k.startsWith("end.")) got.delete(k);
          return JSON.stringify([...got].sort(([a], [b]) => a.localeCompare(b))) === JSON.stringify([...want].sort(([a], [b]) => a.localeCompare(b))) ? true : undefined;
        },
        { timeoutMs: 60_000, intervalMs: 300, logs },
      );
    } finally {
      for (const w of workers) await w.kill();
      await supervisor.stop();
      await nc.close();
    }
  });
});
