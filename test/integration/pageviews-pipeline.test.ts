/**
 * The page-view pipeline end to end on a real nats-server: fixed-seed input, exact window
 * results, exact late records in the side output, and every malformed message dead-lettered.
 */
import { describe, expect, it } from "vitest";
import { jetstreamManager } from "@nats-io/jetstream";
import { startLocalJob } from "../../runtime/dev/local-job.ts";
import { ensureStream, publishAll, readAll } from "../../runtime/nats/streams.ts";
import { generatePageViews } from "../../functions/pageviews/events.ts";
import { expectedResults } from "../../functions/pageviews/expected.ts";
import { pageviewsPipeline, type PageWindow } from "../../functions/pageviews/pipeline.ts";
import { connect, natsServer } from "../support/nats-server.ts";

const decoder = new TextDecoder();
const json = (d: Uint8Array) => JSON.parse(decoder.decode(d));
const sortKey = (w: PageWindow) => `${w.windowStart}|${w.page}|${w.channel}|${w.firing}|${w.views}|${w.users}`;

describe("page-view pipeline on JetStream", () => {
  it("fires exactly the windows, late records and dead letters a batch computation predicts", async () => {
    await using server = await natsServer();
    const nc = await connect(server);
    try {
      await ensureStream(nc, "PAGEVIEWS", ["pageviews.>"]);
      await ensureStream(nc, "RESULTS", ["results.>"]);
      const messages = generatePageViews({ seed: 42, events: 4000 });
      await publishAll(nc, messages.map((m) => ({ subject: "pageviews.site", data: m.payload })));

      const job = await startLocalJob(nc, pageviewsPipeline());
      await job.endInput();
      await job.finished();
      await job.stop();

      // Committed input of internal streams is purged; the user's source stream is left alone.
      const jsm = await jetstreamManager(nc);
      expect((await jsm.streams.info("EDDY_pageviews_views-per-page")).state.messages).toBeLessThanOrEqual(8);
      expect((await jsm.streams.info("PAGEVIEWS")).state.messages).toBe(messages.length);

      const expected = expectedResults(messages);
      const windows = (await readAll(nc, "RESULTS", "results.pageviews.windows")).map((m) => json(m.data) as PageWindow);
      const late = (await readAll(nc, "RESULTS", "results.pageviews.late")).map((m) => json(m.data));
      const dead = await readAll(nc, "EDDY_pageviews_DLQ");

      expect(expected.windows.some((w) => w.firing === "late")).toBe(true);
      expect(expected.late.length).toBeGreaterThan(10);
      expect(windows.map(sortKey).sort()).toEqual(expected.windows.map(sortKey).sort());
      // Late records reach the sink from several partitions, so only their multiset is fixed.
      const canonical = (xs: unknown[]) => xs.map((x) => JSON.stringify(x)).sort();
      expect(canonical(late)).toEqual(canonical(expected.late));
      expect(dead).toHaveLength(expected.deadLettered);
      const reasons = dead.map((m) => m.headers["Eddy-Reason"] ?? "");
      expect(reasons.filter((r) => r.startsWith("undecodable:")).length).toBe(messages.filter((m) => m.malformed === "not-json").length);
      expect(reasons.filter((r) => r.includes('missing field "page"')).length).toBe(messages.filter((m) => m.malformed === "missing-page").length);
      expect(reasons.filter((r) => r.startsWith("timestamp:")).length).toBe(messages.filter((m) => m.malformed === "missing-ts").length);
      // The dead letter keeps the original payload and says where it came from.
      const first = dead[0]!;
      expect(first.headers["Eddy-Source-Stream"]).toBe("PAGEVIEWS");
      const original = messages.filter((m) => m.malformed !== undefined)[0]!;
      expect(decoder.decode(first.data)).toBe(original.payload);
    } finally {
      await nc.close();
    }
  });
});
