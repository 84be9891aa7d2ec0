/**
 * Sink delivery modes and the checkpoint listing. An at-least-once sink publishes at once; an
 * exactly-once sink holds its output until the checkpoint covering it commits, then publishes it
 * with deterministic message ids. `eddy checkpoints <job>` lists what the supervisor recorded.
 */
import { describe, expect, it } from "vitest";
import { startLocalJob } from "../../runtime/dev/local-job.ts";
import { ensureStream, publishAll, readAll } from "../../runtime/nats/streams.ts";
import { defineFunction, definePipeline, defineSink, fromFunction, fromStream } from "../../runtime/sdk/index.ts";
import { connect, natsServer } from "../support/nats-server.ts";
import { runEddy } from "../support/cli.ts";
import { waitFor } from "../support/wait.ts";

const pipeline = definePipeline({
  name: "sinks",
  functions: [
    defineFunction<{ n: number }, { n: number }>({
      name: "read",
      input: fromStream("SINK_IN", { subject: "sink.in" }),
      process(ctx, r) {
        ctx.emit(r);
      },
    }),
    defineSink({ name: "fast", input: fromFunction("read"), subject: "sink.out.fast", delivery: "at-least-once" }),
    defineSink({ name: "exact", input: fromFunction("read"), subject: "sink.out.exact" }),
  ],
});


describe("sinks", () => {
  it("publish at once (at-least-once) or only after the covering checkpoint commits (exactly-once)", async () => {
    await using server = await natsServer();
    const nc = await connect(server);
    try {
      await ensureStream(nc, "SINK_IN", ["sink.in"]);
      await ensureStream(nc, "SINK_OUT", ["sink.out.>"]);
      const job = await startLocalJob(nc, pipeline, { checkpointIntervalMs: 0 });
      await publishAll(nc, [1, 2, 3].map((n) => ({ subject: "sink.in", data: JSON.stringify({ n }) })));
      const count = async (subject: string) => (await readAll(nc, "SINK_OUT", subject)).length;
      await waitFor("the at-least-once output", async () => (await count("sink.out.fast")) >= 3, { intervalMs: 50 });
      expect(await count("sink.out.fast")).toBe(3);
      // No checkpoint has been taken: exactly-once output is still held.
      expect(await count("sink.out.exact")).toBe(0);

      const record = await job.checkpoint();
      expect(record.status).toBe("committed");
      const exact = await readAll(nc, "SINK_OUT", "sink.out.exact");
      expect(exact.map((m) => JSON.parse(new TextDecoder().decode(m.data)).n)).toEqual([1, 2, 3]);
      // Message ids name job, sink partition, generation, epoch and index: a repeat is dropped.
      expect(exact.map((m) => m.headers["Nats-Msg-Id"])).toEqual([0, 1, 2].map((i) => `sinks/exact/0/${job.worker.generation()}/${record.id}/${i}`));

      const stopped = await job.stop();
      const cli = (await runEddy(["checkpoints", "sinks", "--nats", server.url])).stdout;
      const lines = cli.trim().split("\n");
      expect(lines[0]).toMatch(/^\s*id\s+status\s+gen\s+started \(UTC\)\s+duration\s+alignment\s+size\s+keys changed/);
      expect(lines[1]).toMatch(new RegExp(`^\\s*${stopped.id}\\s+committed \\(stop\\)`));
      expect(lines.some((l) => new RegExp(`^\\s*${record.id}\\s+committed`).test(l))).toBe(true);
      const json = JSON.parse((await runEddy(["checkpoints", "sinks", "--nats", server.url, "--json"])).stdout);
      expect(json[0]).toMatchObject({ id: stopped.id, status: "committed", stop: true });
      expect(json[0].durationMs).toBeGreaterThanOrEqual(0);
    } finally {
      await nc.close();
    }
  });
});
