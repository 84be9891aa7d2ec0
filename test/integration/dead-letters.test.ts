/**
 * Bad input is dead-lettered with its reason and never stops the pipeline: undecodable
 * payloads, a missing timestamp, a key selector that rejects a record, a function that throws,
 * a downstream timestamp selector that gives no time, and garbage published straight into an
 * internal partition subject.
 */
import { describe, expect, it } from "vitest";
import { startLocalJob } from "../../runtime/dev/local-job.ts";
import { ensureStream, publishAll, readAll } from "../../runtime/nats/streams.ts";
import { defineFunction, definePipeline, defineSink, fromFunction, fromStream, valueState, boundedOutOfOrderness } from "../../runtime/sdk/index.ts";
import { connect, natsServer } from "../support/nats-server.ts";

interface Click {
  user?: unknown;
  ts?: unknown;
  boom?: boolean;
}

const pipeline = definePipeline({
  name: "clicks",
  functions: [
    defineFunction<Click, Click>({
      name: "read",
      input: fromStream("CLICKS", { subject: "clicks.>" }),
      timestamp: (c) => c.ts as number,
      watermark: boundedOutOfOrderness(0),
      process(ctx, c) {
        ctx.emit(c);
      },
    }),
    defineFunction<Click, { user: string; n: number }, { n: ReturnType<typeof valueState<number>> }>({
      name: "count",
      input: fromFunction("read"),
      partitions: 2,
      key: (c) => {
        if (typeof c.user !== "string") throw new Error('missing field "user"');
        return c.user;
      },
      state: { n: valueState<number>() },
      process(ctx, c) {
        if (c.boom === true) throw new Error("boom");
        ctx.emit({ user: ctx.key, n: ctx.state.n.update((n) => (n ?? 0) + 1) });
      },
    }),
    defineSink({ name: "out", input: fromFunction("count"), subject: "totals.clicks" }),
  ],
});

/** A function that takes event time from the records it reads from another function. */
const retiming = definePipeline({
  name: "retimed",
  functions: [
    defineFunction<Click, Click>({
      name: "read",
      input: fromStream("CLICKS", { subject: "clicks.>" }),
      process(ctx, c) {
        ctx.emit(c);
      },
    }),
    defineFunction<Click, Click>({
      name: "retime",
      input: fromFunction("read"),
      timestamp: (c) => c.ts as number,
      process(ctx, c) {
        ctx.emit({ ...c, ts: ctx.timestamp });
      },
    }),
    defineSink({ name: "out", input: fromFunction("retime"), subject: "totals.retimed" }),
  ],
});

describe("dead letters", () => {
  it("sends each bad record to the job's dead-letter stream with the reason and keeps processing", async () => {
    await using server = await natsServer();
    const nc = await connect(server);
    try {
      await ensureStream(nc, "CLICKS", ["clicks.>"]);
      await ensureStream(nc, "TOTALS", ["totals.>"]);
      const payloads = [
        JSON.stringify({ user: "ann", ts: 1 }),
        "{not json",
        JSON.stringify({ user: "bob" }),
        JSON.stringify({ ts: 2 }),
        JSON.stringify({ user: "ann", ts: 3, boom: true }),
        JSON.stringify({ user: "bob", ts: 4 }),
        JSON.stringify({ user: "ann", ts: 5 }),
      ];
      await publishAll(nc, payloads.map((data) => ({ subject: "clicks.web", data })));
      const job = await startLocalJob(nc, pipeline);
      // Garbage inside eddy's own partition subject, as a broken producer might publish it.
      const generation = String(job.worker.generation());
      await publishAll(nc, [
        { subject: "eddy.clicks.count.in.0", data: "garbage", headers: { "Eddy-Kind": "data", "Eddy-Producer": "read/0", "Eddy-Generation": generation, "Eddy-Epoch": "1000" } },
        { subject: "eddy.clicks.count.in.1", data: "no headers", headers: { "Eddy-Kind": "data", "Eddy-Producer": "read/0" } },
        { subject: "eddy.clicks.count.in.1", data: "stranger", headers: { "Eddy-Kind": "data", "Eddy-Producer": "who/7", "Eddy-Generation": generation, "Eddy-Epoch": "1000" } },
      ]);
      await job.endInput();
      await job.finished();
      await job.stop();

      const totals = (await readAll(nc, "TOTALS")).map((m) => JSON.parse(new TextDecoder().decode(m.data)));
      expect(totals.filter((t) => t.user === "ann").map((t) => t.n)).toEqual([1, 2]);
      expect(totals.filter((t) => t.user === "bob").map((t) => t.n)).toEqual([1]);

      const dead = await readAll(nc, "EDDY_clicks_DLQ");
      const byReason = dead.map((m) => ({
        fn: m.headers["Eddy-Function"],
        reason: m.headers["Eddy-Reason"],
        seq: m.headers["Eddy-Source-Sequence"],
        body: new TextDecoder().decode(m.data),
      }));
      expect(byReason).toEqual(
        expect.arrayContaining([
          expect.objectContaining({ fn: "read", seq: "2", body: "{not json", reason: expect.stringMatching(/^undecodable: /) }),
          expect.objectContaining({ fn: "read", seq: "3", reason: "timestamp: missing is not a finite number" }),
          expect.objectContaining({ fn: "read", reason: 'key: count key selector failed: missing field "user"', body: JSON.stringify({ ts: 2 }) }),
          expect.objectContaining({ fn: "count", reason: expect.stringMatching(/^process: count\.process failed for key "ann": boom/) }),
          expect.objectContaining({ fn: "count", body: "garbage", reason: expect.stringMatching(/^undecodable batch/) }),
          expect.objectContaining({ fn: "count", body: "no headers", reason: "missing or invalid Eddy-Generation/Eddy-Epoch headers" }),
          expect.objectContaining({ fn: "count", body: "stranger", reason: 'unknown producer "who/7"' }),
        ]),
      );
      expect(dead).toHaveLength(7);
    } finally {
      await nc.close();
    }
  });

  it("dead-letters a record whose re-timing timestamp selector gives no finite time, under the function that reads it", async () => {
    await using server = await natsServer();
    const nc = await connect(server);
    try {
      await ensureStream(nc, "CLICKS", ["clicks.>"]);
      await ensureStream(nc, "TOTALS", ["totals.>"]);
      const payloads = [{ user: "ann", ts: 1 }, { user: "bob" }, { user: "cy", ts: "soon" }, { user: "dee", ts: 4 }];
      await publishAll(nc, payloads.map((p) => ({ subject: "clicks.web", data: JSON.stringify(p) })));
      const job = await startLocalJob(nc, retiming);
      await job.endInput();
      await job.finished();
      await job.stop();

      const out = (await readAll(nc, "TOTALS")).map((m) => JSON.parse(new TextDecoder().decode(m.data)));
      expect(out).toEqual([
        { user: "ann", ts: 1 },
        { user: "dee", ts: 4 },
      ]);
      const dead = (await readAll(nc, "EDDY_retimed_DLQ")).map((m) => ({
        fn: m.headers["Eddy-Function"],
        producer: m.headers["Eddy-Producer"],
        reason: m.headers["Eddy-Reason"],
        body: new TextDecoder().decode(m.data),
      }));
      expect(dead).toEqual([
        { fn: "retime", producer: "read/0", reason: "timestamp: missing is not a finite number", body: JSON.stringify({ user: "bob" }) },
        { fn: "retime", producer: "read/0", reason: 'timestamp: "soon" is not a finite number', body: JSON.stringify({ user: "cy", ts: "soon" }) },
      ]);
    } finally {
      await nc.close();
    }
  });
});
