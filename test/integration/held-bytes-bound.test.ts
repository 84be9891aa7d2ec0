/**
 * Bounded memory under a stalled checkpoint (docs/design/ay-poison-records-and-bounds.md): an
 * exactly-once sink holds its output until a checkpoint commits. With no checkpoint coming while
 * input keeps arriving, the actor stops reading once it holds `maxHeldSinkBytes` instead of
 * growing; when checkpoints resume it goes on, and the output is exact.
 */
import { describe, expect, it } from "vitest";
import { startLocalJob } from "../../runtime/dev/local-job.ts";
import { ensureStream, publishAll, readAll } from "../../runtime/nats/streams.ts";
import { defineFunction, definePipeline, fromStream } from "../../runtime/sdk/index.ts";
import { connect, natsServer } from "../support/nats-server.ts";
import { waitFor } from "../support/wait.ts";

const pipeline = definePipeline({
  name: "held",
  functions: [
    defineFunction<{ i: number; pad: string }, { i: number; pad: string }>({
      name: "copy",
      input: fromStream("IN", { subject: "in.>" }),
      process(ctx, r) {
        ctx.emit(r);
      },
      sink: { subject: "out.copy" },
    }),
  ],
});

const BOUND = 20_000;
const decoder = new TextDecoder();

describe("held sink output", () => {
  it("stops reading at its byte bound while no checkpoint commits, and resumes with exact output once they do", async () => {
    await using server = await natsServer();
    const nc = await connect(server);
    try {
      await ensureStream(nc, "IN", ["in.>"]);
      await ensureStream(nc, "OUT", ["out.>"]);
      // Only explicit checkpoints: none comes until the test asks.
      const job = await startLocalJob(nc, pipeline, { checkpointIntervalMs: 0, worker: { actor: { maxHeldSinkBytes: BOUND } } });
      const n = 2_000;
      const pad = "p".repeat(80);
      await publishAll(nc, Array.from({ length: n }, (_, i) => ({ subject: "in.x", data: JSON.stringify({ i, pad }) })));
      const actor = job.worker.actors()[0]!;
      const record = JSON.stringify({ i: n, pad }).length;
      // It reads until it holds more than the bound, then waits: it does not read on.
      await waitFor("the actor to hold more than its bound", () => actor.heldBytes > BOUND, { timeoutMs: 20_000, intervalMs: 10 });
      const stalledAt = actor.stats.recordsIn;
      await new Promise((r) => setTimeout(r, 500));
      expect(actor.stats.recordsIn).toBe(stalledAt);
      expect(stalledAt).toBeLessThan(n);
      expect(actor.heldBytes).toBeLessThanOrEqual(BOUND + record);
      expect(actor.stats.heldBytes).toBe(actor.heldBytes);
      expect(await readAll(nc, "OUT")).toEqual([]);

      // Checkpoints resume: each commit frees what was held and reading goes on.
      for (let k = 0; k < 50 && actor.stats.recordsIn < n; k++) {
        await job.checkpoint();
        expect(actor.heldBytes).toBeLessThanOrEqual(BOUND + record);
      }
      expect(actor.stats.recordsIn).toBe(n);
      await job.endInput();
      await job.finished();
      await job.stop();
      const out = (await readAll(nc, "OUT")).map((m) => (JSON.parse(decoder.decode(m.data)) as { i: number }).i);
      expect(out).toEqual(Array.from({ length: n }, (_, i) => i));
    } finally {
      await nc.close();
    }
  }, 90_000);
});
