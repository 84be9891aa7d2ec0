/**
 * A job stopped cleanly (stop-with-checkpoint) and started again resumes where it left off: its
 * keyed state, timers, watermarks and input positions come back from the functions' KV buckets,
 * so the results of a run split by a restart are exactly those of an uninterrupted run.
 */
import { describe, expect, it } from "vitest";
import { Kvm } from "@nats-io/kv";
import { startLocalJob, type LocalJob } from "../../runtime/dev/local-job.ts";
import { ensureStream, publishAll } from "../../runtime/nats/streams.ts";
import { parseKvKey } from "../../runtime/core/kv-keys.ts";
import { decodeValue } from "../../runtime/core/wire.ts";
import { generatePageViews } from "../../functions/pageviews/events.ts";
import { expectExactPageviews } from "../support/pageviews-output.ts";
import { pageviewsPipeline } from "../../functions/pageviews/pipeline.ts";
import { connect, natsServer } from "../support/nats-server.ts";


/** Waits until the source has read `count` messages and no actor's counters move any more. */
async function settle(job: LocalJob, count: number): Promise<void> {
  let last = "";
  for (let i = 0; i < 400; i++) {
    const stats = job.worker.stats();
    // Where the actors' time goes (busy, idle) moves with the clock; the rest stops moving once done.
    const snapshot = JSON.stringify(stats.map(({ busyMs, backpressuredMs, idleMs, busyMsPerSecond, backpressuredMsPerSecond, idleMsPerSecond, ...counters }) => counters));
    const source = stats.find((s) => s.fn === "pageviews")!;
    if (source.position > count && snapshot === last) return;
    last = snapshot;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error("worker did not settle");
}

describe("worker restart after a clean shutdown", () => {
  it("resumes state, timers, watermarks and positions from KV and produces the uninterrupted result", async () => {
    await using server = await natsServer();
    const nc = await connect(server);
    try {
      await ensureStream(nc, "PAGEVIEWS", ["pageviews.>"]);
      await ensureStream(nc, "RESULTS", ["results.>"]);
      const messages = generatePageViews({ seed: 9, events: 4000 });
      const half = 2000;
      const publish = (ms: typeof messages) => publishAll(nc, ms.map((m) => ({ subject: "pageviews.site", data: m.payload })));

      await publish(messages.slice(0, half));
      const first = await startLocalJob(nc, pageviewsPipeline());
      await settle(first, half);
      const before = new Map(first.worker.actors().map((a) => [a.id, a.watermark]));
      const stopped = await first.stop();

      // What the stopped worker left in KV for the window function, decoded by the documented layout.
      const kv = await new Kvm(nc).open("eddy_pageviews_views-per-page");
      const kinds = new Map<string, number>();
      const storedWatermarks = new Map<number, number>();
      for await (const key of await kv.keys()) {
        const parsed = parseKvKey(key);
        expect(parsed, key).toBeDefined();
        kinds.set(parsed!.kind, (kinds.get(parsed!.kind) ?? 0) + 1);
        if (parsed!.kind === "watermark") {
          const entry = await kv.get(key);
          storedWatermarks.set(parsed!.partition, (decodeValue(entry!.value) as { out: number }).out);
        }
      }
      expect(kinds.get("position")).toBe(4);
      expect(kinds.get("watermark")).toBe(4);
      expect(kinds.get("applied")).toBe(4);
      expect(kinds.get("timer")).toBeGreaterThan(0);
      expect(kinds.get("state")).toBeGreaterThan(0);
      for (const [p, wm] of storedWatermarks) expect(wm).toBe(before.get(`views-per-page/${p}`));

      const second = await startLocalJob(nc, pageviewsPipeline());
      // A graceful stop and restart resumes in the same generation from the stop checkpoint, with
      // the watermarks it had (checked before any new input arrives).
      expect(second.worker.generation()).toBe(stopped.generation);
      for (const a of second.worker.actors()) if (a.node.name === "views-per-page") expect(a.watermark).toBe(before.get(a.id));
      await publish(messages.slice(half));
      await second.endInput();
      await second.finished();
      await second.stop();

      await expectExactPageviews(nc, messages);
    } finally {
      await nc.close();
    }
  });
});
