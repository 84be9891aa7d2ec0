/**
 * A declined alignment end to end on a real nats-server
 * (docs/design/ay-poison-records-and-bounds.md, "Alignment").
 *
 * While a checkpoint aligns, an actor holds the messages of producers whose barrier came first.
 * Past `maxAlignmentBytes` it declines that checkpoint: it handles what it held at once, ignores
 * the checkpoint's later barriers and never acknowledges it, so the supervisor aborts it; the next
 * checkpoint commits, and every record is processed exactly once.
 *
 * To make one producer's barrier come far ahead of the other's without depending on timing, the
 * test publishes that barrier itself, into the join's input log, for the id the supervisor will
 * use next — exactly what the join would see if source `b` were triggered long before source `a`.
 * Then `b`'s records pile up behind it.
 */
import { describe, expect, it } from "vitest";
import { jetstream } from "@nats-io/jetstream";
import { headers as natsHeaders } from "@nats-io/transport-node";
import { startLocalJob } from "../../runtime/dev/local-job.ts";
import { HEADER, inputSubject } from "../../runtime/core/naming.ts";
import { ensureStream, publishAll, readAll } from "../../runtime/nats/streams.ts";
import { defineFunction, definePipeline, fromFunction, fromStream, valueState } from "../../runtime/sdk/index.ts";
import { connect, natsServer } from "../support/nats-server.ts";
import { waitFor } from "../support/wait.ts";

interface Row {
  readonly s: "a" | "b";
  readonly i: number;
}
interface Numbered extends Row {
  readonly n: number;
}

const source = (name: "a" | "b") =>
  defineFunction<{ i: number }, Row>({
    name,
    input: fromStream(`ALIGN_${name.toUpperCase()}`, { subject: `align.${name}` }),
    process(ctx, r) {
      ctx.emit({ s: name, i: r.i });
    },
  });

/** Two sources joined in one keyed function, which numbers each source's records in an exactly-once sink. */
const pipeline = definePipeline({
  name: "align",
  functions: [
    source("a"),
    source("b"),
    defineFunction<Row, Numbered, { n: ReturnType<typeof valueState<number>> }>({
      name: "join",
      input: [fromFunction("a"), fromFunction("b")],
      partitions: 1,
      key: (r) => r.s,
      state: { n: valueState<number>() },
      process(ctx, r) {
        ctx.emit({ ...r, n: ctx.state.n.update((n) => (n ?? 0) + 1) });
      },
      sink: { subject: "align.out" },
    }),
  ],
});

const BOUND = 2048;
const decoder = new TextDecoder();
const rows = (from: number, to: number) => Array.from({ length: to - from }, (_, k) => ({ i: from + k, pad: "p".repeat(20) }));
const publishRows = (nc: Parameters<typeof publishAll>[0], s: "a" | "b", xs: ReturnType<typeof rows>) => publishAll(nc, xs.map((r) => ({ subject: `align.${s}`, data: JSON.stringify(r) })));

describe("declined alignment", () => {
  it("declines a checkpoint whose alignment holds more than maxAlignmentBytes, aborts it, commits the next one, and keeps the output exact", async () => {
    await using server = await natsServer();
    const nc = await connect(server);
    try {
      await ensureStream(nc, "ALIGN_A", ["align.a"]);
      await ensureStream(nc, "ALIGN_B", ["align.b"]);
      await ensureStream(nc, "ALIGN_OUT", ["align.out"]);
      const job = await startLocalJob(nc, pipeline, { checkpointIntervalMs: 0, checkpointTimeoutMs: 3000, worker: { actor: { maxAlignmentBytes: BOUND, batchMaxRecords: 10 } } });
      const join = job.worker.actors().find((a) => a.node.name === "join")!;
      const a = { n: 0 };
      const b = { n: 0 };
      const send = async (s: "a" | "b", count: number) => {
        const c = s === "a" ? a : b;
        await publishRows(nc, s, rows(c.n, c.n + count));
        c.n += count;
      };
      const handled = (n: number) => waitFor(`the join to handle ${n} records`, () => join.stats.recordsIn === n, { timeoutMs: 30_000, intervalMs: 10 });

      await send("a", 30);
      await send("b", 30);
      await handled(60);
      const committed = await job.checkpoint();

      // Barrier `next` from b, far ahead of a's: the join holds every message of b from now on.
      const next = committed.id + 1;
      const h = natsHeaders();
      h.set(HEADER.kind, "barrier");
      h.set(HEADER.producer, "b/0");
      h.set(HEADER.generation, String(job.worker.generation()));
      h.set(HEADER.epoch, String(next));
      await jetstream(nc).publish(inputSubject("align", "join", 0), JSON.stringify({ id: next, stop: false }), { headers: h });
      await send("a", 20);
      await handled(80);
      expect(join.stats.declinedAlignments).toBe(0);
      // b's records (10 per batch) are held until they pass the bound; then the checkpoint is
      // declined and everything held is handled, before any checkpoint.
      await send("b", 200);
      await handled(280);
      expect(join.stats.declinedAlignments).toBe(1);
      expect(await readAll(nc, "ALIGN_OUT")).toHaveLength(60);

      // The supervisor's checkpoint `next` finds the join's alignment of it over: never acked, aborted.
      await expect(job.checkpoint()).rejects.toThrow(new RegExp(`checkpoint ${next} of align aborted: (timed out|barriers behind a backlog: ).*join/0`));
      // The next one aligns normally and commits.
      await send("b", 10);
      await send("a", 10);
      expect((await job.checkpoint()).id).toBe(next + 1);
      expect(join.stats.declinedAlignments).toBe(1);

      await send("a", 40);
      await send("b", 40);
      await job.endInput();
      await job.finished();
      await job.stop();
      const out = (await readAll(nc, "ALIGN_OUT")).map((m) => JSON.parse(decoder.decode(m.data)) as Numbered);
      const expected = (["a", "b"] as const).flatMap((s) => Array.from({ length: (s === "a" ? a : b).n }, (_, i) => ({ s, i, n: i + 1 })));
      const sorted = (xs: readonly Numbered[]) => [...xs].sort((x, y) => x.s.localeCompare(y.s) || x.i - y.i);
      expect(out).toHaveLength(expected.length);
      expect(sorted(out)).toEqual(expected);
    } finally {
      await nc.close();
    }
  }, 120_000);
});
