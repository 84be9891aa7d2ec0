/**
 * Bounded memory under a stuck alignment (docs/design/ay-poison-records-and-bounds.md): an actor
 * with two producers holds the messages of the one whose barrier came first. Here the barriers
 * of source "b" wait behind a backlog at the slow function "slow" while source "a" keeps emitting; with
 * `maxAlignmentBytes` at 1 byte the consumer declines such a checkpoint instead of holding, handles
 * what it held, and the job's output is still exact.
 */
import { describe, expect, it } from "vitest";
import { startLocalJob } from "../../runtime/dev/local-job.ts";
import { ensureStream, publishAll, readAll } from "../../runtime/nats/streams.ts";
import { defineFunction, definePipeline, fromFunction, fromStream } from "../../runtime/sdk/index.ts";
import { connect, natsServer } from "../support/nats-server.ts";

interface Rec {
  readonly src: string;
  readonly i: number;
}

/** Busy for about `us` microseconds: a function slower than its producer builds a backlog. */
function spin(us: number): void {
  const until = performance.now() + us / 1000;
  while (performance.now() < until);
}

const pipeline = definePipeline({
  name: "align",
  functions: [
    defineFunction<Rec, Rec>({ name: "a", input: fromStream("A", { subject: "a.>" }), process: (ctx, r) => ctx.emit(r) }),
    defineFunction<Rec, Rec>({ name: "b", input: fromStream("B", { subject: "b.>" }), process: (ctx, r) => ctx.emit(r) }),
    // Slower than b: b's barriers wait behind a backlog here, so they reach "both" long after a's.
    defineFunction<Rec, Rec>({
      name: "slow",
      input: fromFunction("b"),
      process(ctx, r) {
        spin(1_000);
        ctx.emit(r);
      },
    }),
    defineFunction<Rec, Rec>({
      name: "both",
      input: [fromFunction("a"), fromFunction("slow")],
      partitions: 1,
      process: (ctx, r) => ctx.emit(r),
      sink: { subject: "out.align", format: "json-lines" },
    }),
  ],
});

describe("alignment bound", () => {
  it("declines a checkpoint whose alignment holds more than maxAlignmentBytes, and the output stays exact", async () => {
    await using server = await natsServer();
    const nc = await connect(server);
    try {
      await ensureStream(nc, "A", ["a.>"]);
      await ensureStream(nc, "B", ["b.>"]);
      await ensureStream(nc, "OUT", ["out.>"]);
      const lines: string[] = [];
      const job = await startLocalJob(nc, pipeline, { checkpointIntervalMs: 300, log: (l) => lines.push(l), worker: { actor: { maxAlignmentBytes: 1 } } });
      const both = job.worker.actors().find((a) => a.node.name === "both")!;
      // b's records come faster than "slow" handles them (it takes 1 ms each), so they pile up
      // before it, with b's barriers behind them; a's keep coming while checkpoints run.
      let na = 0;
      let nb = 0;
      const deadline = Date.now() + 60_000;
      while (both.stats.declinedAlignments === 0 && Date.now() < deadline) {
        await publishAll(nc, [
          ...Array.from({ length: 50 }, () => ({ subject: "a.x", data: JSON.stringify({ src: "a", i: na++ }) })),
          ...Array.from({ length: 100 }, () => ({ subject: "b.x", data: JSON.stringify({ src: "b", i: nb++ }) })),
        ]);
        await new Promise((r) => setTimeout(r, 10));
      }
      expect(both.stats.declinedAlignments, lines.join("\n")).toBeGreaterThan(0);
      await job.endInput();
      await job.finished();
      await job.stop();
      const out = (await readAll(nc, "OUT")).flatMap((m) => new TextDecoder().decode(m.data).split("\n").map((line) => JSON.parse(line) as Rec));
      const keys = out.map((r) => `${r.src}${r.i}`);
      expect(new Set(keys).size).toBe(keys.length);
      expect(keys.length).toBe(na + nb);
    } finally {
      await nc.close();
    }
  }, 180_000);
});
