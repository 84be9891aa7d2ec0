/**
 * Poison records never cause restart loops (docs/design/ay-poison-records-and-bounds.md). Against
 * a nats-server with a small max_payload (64 KiB), a job meets every kind of record that fails
 * somewhere on its way — too large to enter, too deep to encode for the next hop, growing past
 * the max payload when re-encoded, a state value larger than a KV value may be, a timestamp ten
 * years ahead, keys with lone surrogates, a key too long for a KV key — and each goes to the dead-letter stream with its
 * reason while every other record is processed exactly once, without a single recovery.
 */
import { describe, expect, it } from "vitest";
import { createHash } from "node:crypto";
import { startLocalJob } from "../../runtime/dev/local-job.ts";
import { ensureStream, publishAll, readAll } from "../../runtime/nats/streams.ts";
import { boundedOutOfOrderness, defineFunction, definePipeline, defineSink, fromFunction, fromStream, listState } from "../../runtime/sdk/index.ts";
import { connect, natsServer } from "../support/nats-server.ts";
import { jetstreamManager } from "@nats-io/jetstream";
import { ensureDeadLetterStream } from "../../runtime/nats/topology.ts";

interface Rec {
  user?: unknown;
  seq?: number;
  ts?: number;
  pad?: string;
  nest?: unknown;
  floats?: number[];
}

const itemsState = { items: listState<string>() };
const pipeline = definePipeline({
  name: "poison",
  deadLetters: { maxAgeMs: 3_600_000, maxBytes: 8 * 1024 * 1024 },
  functions: [
    defineFunction<Rec, Rec>({
      name: "read",
      input: fromStream("IN", { subject: "in.>" }),
      timestamp: (r) => r.ts as number,
      watermark: boundedOutOfOrderness(1_000),
      maxFutureMs: 60_000,
      process(ctx, r) {
        ctx.emit(r);
      },
    }),
    defineFunction<Rec, { user: string; seq: number; n: number }, typeof itemsState>({
      name: "count",
      input: fromFunction("read"),
      partitions: 2,
      key: (r) => r.user as string,
      state: itemsState,
      process(ctx, r) {
        if (r.pad !== undefined) ctx.state.items.add(r.pad);
        ctx.emit({ user: ctx.key, seq: r.seq!, n: ctx.state.items.get().length });
      },
    }),
    defineSink({ name: "out", input: fromFunction("count"), subject: "out.poison" }),
  ],
});

const decoder = new TextDecoder();

describe("poison records", () => {
  it("dead-letters each record that fails on its way, with its reason, and processes every other record exactly once", async () => {
    await using server = await natsServer({ configText: "max_payload: 65536" });
    const nc = await connect(server);
    try {
      expect(nc.info?.max_payload).toBe(65536);
      await ensureStream(nc, "IN", ["in.>"]);
      await ensureStream(nc, "OUT", ["out.>"]);
      const now = Date.now();
      const deep = "[".repeat(10_000) + "]".repeat(10_000);
      const raw = "x".repeat(60_000);
      const messages: string[] = [];
      const poison = new Map<number, string>();
      const expected: number[] = [];
      for (let seq = 1; seq <= 200; seq++) {
        let rec: Rec = { user: ["ann", "bob", "cy"][seq % 3], seq, ts: now + seq };
        if (seq === 20) (rec = { user: "deep", seq, ts: now, nest: "DEEP" }), poison.set(seq, "deep");
        else if (seq === 60) (rec = { user: "floaty", seq, ts: now, floats: Array.from({ length: 7_400 }, (_, i) => (i % 9) + 0.5) }), poison.set(seq, "floats");
        else if (seq === 80) (rec = { user: "ann", seq, ts: now + 10 * 365 * 86_400_000 }), poison.set(seq, "future");
        else if (seq === 100) (rec = { user: "x\uD800", seq, ts: now }), poison.set(seq, "surrogate");
        else if (seq === 120) (rec = { user: "x\uDFFF", seq, ts: now }), poison.set(seq, "surrogate");
        else if (seq === 125) (rec = { user: "k".repeat(4_000), seq, ts: now }), poison.set(seq, "long key");
        else if (seq >= 130 && seq < 140) rec = { user: "hog", seq, ts: now + seq, pad: "p".repeat(9_000) };
        if (!poison.has(seq)) expected.push(seq);
        // 10 000 nested arrays: fine to parse, too deep for the encoder's stack (and for JSON.stringify here).
        messages.push(JSON.stringify(rec).replace('"DEEP"', deep));
      }
      // Not JSON, and larger than the record limit (half the max payload) and than a dead letter may be.
      messages.splice(40, 0, raw);
      expect(messages[60]!.length).toBeLessThan(30_720);
      await publishAll(nc, messages.map((data) => ({ subject: "in.x", data })));

      const job = await startLocalJob(nc, pipeline);
      await job.endInput();
      await job.finished();
      await job.stop();
      // No record made the job recover: it ran in its first generation from start to end.
      expect(job.worker.generation()).toBe(1);

      const out = (await readAll(nc, "OUT")).map((m) => JSON.parse(decoder.decode(m.data)) as { user: string; seq: number; n: number });
      expect(out.map((o) => o.seq).sort((a, b) => a - b)).toEqual(expected);
      // ann, bob and cy keep no items; their outputs are exact.
      expect(out.filter((o) => o.user !== "hog").every((o) => o.n === 0)).toBe(true);

      const dead = (await readAll(nc, "EDDY_poison_DLQ")).map((m) => ({ fn: m.headers["Eddy-Function"], reason: m.headers["Eddy-Reason"] ?? "", headers: m.headers, data: m.data }));
      const reasons = dead.map((d) => `${d.fn}: ${d.reason}`);
      expect(reasons).toEqual(
        expect.arrayContaining([
          expect.stringMatching(/^read: too large: 60000 bytes, more than the record limit of 30720 bytes$/),
          expect.stringMatching(/^read: encode: record for eddy\.poison\.count\.in\.\d cannot be encoded: Maximum call stack size exceeded$/),
          expect.stringMatching(/^read: too large: record for eddy\.poison\.count\.in\.\d encodes to \d+ bytes, more than the server's max payload/),
          expect.stringMatching(/^read: timestamp: too far in the future /),
          "read: key: count key selector returned a string with a lone UTF-16 surrogate",
          "read: key: count key selector returned a key of 4000 bytes, more than 1024",
          expect.stringMatching(/^count: too large: state "items" of key "hog" is \d+ bytes, more than the server's max payload .*; the entry is dropped$/),
        ]),
      );
      expect(reasons.filter((r) => r.includes("lone UTF-16 surrogate"))).toHaveLength(2);
      // The raw record could not fit whole: cut, with its size and digest.
      const cut = dead.find((d) => d.reason.startsWith("too large: 60000 bytes"))!;
      expect(cut.data.length).toBeLessThan(60_000);
      expect(cut.headers["Eddy-Original-Size"]).toBe("60000");
      expect(cut.headers["Eddy-Original-Sha256"]).toBe(createHash("sha256").update(raw).digest("hex"));
      expect(cut.headers["Eddy-Source-Sequence"]).toBe("41");
      // The dead-letter stream has the pipeline's retention limits, oldest discarded first.
      const jsm = await jetstreamManager(nc);
      const config = (await jsm.streams.info("EDDY_poison_DLQ")).config;
      expect([config.max_age, config.max_bytes, config.discard]).toEqual([3_600_000 * 1_000_000, 8 * 1024 * 1024, "old"]);
      // A job started again with other limits brings the existing stream to them.
      await ensureDeadLetterStream(nc, "poison", { maxAgeMs: 0, maxBytes: 0 });
      const unlimited = (await jsm.streams.info("EDDY_poison_DLQ")).config;
      expect([unlimited.max_age, unlimited.max_bytes]).toEqual([0, -1]);
      // Nothing else was dead-lettered; the state entry of "hog" may be dropped at more than one checkpoint.
      expect(dead.filter((d) => !d.reason.startsWith('too large: state "items"'))).toHaveLength(7);
    } finally {
      await nc.close();
    }
  }, 60_000);
});
