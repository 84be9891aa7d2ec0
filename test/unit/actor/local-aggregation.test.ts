/**
 * Local-global aggregation without NATS: a producer's output router folds records into partials,
 * the batches it publishes are decoded and replayed into the windowed consumer's operator the way
 * a partition actor does (marks, trailing watermarks, watermark messages), and the consumer's
 * window results and late records must equal those of the same input sent record by record —
 * while far fewer records travel.
 */
import { describe, expect, it } from "vitest";
import { buildJobGraph } from "../../../runtime/core/job-graph.ts";
import { decodeBatch, decodeWatermark } from "../../../runtime/core/wire.ts";
import { Operator } from "../../../runtime/core/operator.ts";
import { PARTIAL_INPUT } from "../../../runtime/core/local-aggregation.ts";
import { OutputRouter } from "../../../runtime/actor/output-router.ts";
import { Publisher } from "../../../runtime/actor/publisher.ts";
import type { Transport } from "../../../runtime/actor/ports.ts";
import { countDistinct, countTrigger, earlyFirings, eventTimeTrigger, purging, type Trigger, defineFunction, definePipeline, fromFunction, fromStream, InvalidWindowSpecError, session, sliding, tumbling, windowed, type AggregateFunction, type WindowSpec } from "../../../runtime/sdk/index.ts";
import { seededRandom, zipfSampler } from "../../../functions/seeded-random.ts";

interface Ev {
  readonly k: string;
  readonly v: number;
  readonly u: string;
}

interface Acc {
  n: number;
  sum: number;
}

const countAndSum: AggregateFunction<Ev, Acc, Acc> = {
  create: () => ({ n: 0, sum: 0 }),
  add: (acc, e) => ({ n: acc.n + 1, sum: acc.sum + e.v }),
  merge: (a, b) => ({ n: a.n + b.n, sum: a.sum + b.sum }),
  result: (acc) => acc,
};

interface Sent {
  readonly subject: string;
  readonly data: Uint8Array;
  readonly kind: string;
}

function pipeline(window: WindowSpec, local: boolean, aggregate: AggregateFunction<Ev, any, any> = countAndSum, partitions = 2, trigger?: Trigger<Ev, any>) {
  return definePipeline({
    name: "j",
    functions: [
      defineFunction({ name: "src", input: fromStream("S"), process: () => undefined }),
      windowed({ name: "agg", input: fromFunction("src"), partitions, key: (e: Ev) => e.k, window, allowedLatenessMs: 2_000, aggregate, localAggregation: local, ...(trigger === undefined ? {} : { trigger }) }),
    ],
  });
}

interface Run {
  readonly results: string[];
  readonly late: string[];
  /** Records (raw or partial) the consumer processed. */
  readonly processed: number;
  readonly partials: number;
}

/**
 * Emits a skewed, out-of-order stream through the router of `src` with a bounded-out-of-order
 * watermark, flushing by size, age and barriers as an actor does, then replays what was
 * published into the consumer partitions.
 */
function run(seed: number, window: WindowSpec, local: boolean, events = 3_000, aggregate?: AggregateFunction<Ev, any, any>, trigger?: Trigger<Ev, any>): Run {
  const graph = buildJobGraph(pipeline(window, local, aggregate, 2, trigger));
  const sent: Sent[] = [];
  const transport = {
    publish: async (subject: string, data: Uint8Array, headers?: Readonly<Record<string, string>>) => void sent.push({ subject, data, kind: headers?.["Eddy-Kind"] ?? "" }),
  } as unknown as Transport;
  const router = new OutputRouter(graph, graph.node("src"), 0, new Publisher(transport), { batchMaxRecords: 50, maxPayloadBytes: 1 << 20 });
  const random = seededRandom(seed);
  const zipf = zipfSampler(30, random);
  let maxTs = 0;
  let epoch = 1;
  for (let i = 0; i < events; i++) {
    // Half the events on one hot key, the rest Zipf; time moves ~10 ms an event, up to 1.5 s out of order, some 3–8 s late.
    const k = random() < 0.5 ? "hot" : `k${zipf()}`;
    const base = i * 10;
    const ts = random() < 0.03 ? base - 3_000 - Math.floor(random() * 5_000) : base - Math.floor(random() * 1_500);
    maxTs = Math.max(maxTs, ts);
    router.now = i;
    router.emit({ k, v: Math.floor(random() * 10), u: `u${Math.floor(random() * 200)}` }, ts);
    const wm = maxTs - 1_500;
    if (wm > router.watermark && random() < 0.3) router.watermark = wm;
    const action = random();
    if (action < 0.003) router.barrier(epoch++, false);
    else if (action < 0.008) router.flushAged(5);
    else if (action < 0.01) router.broadcastWatermark();
  }
  router.watermark = Infinity;
  router.broadcastWatermark();

  const results: string[] = [];
  const late: string[] = [];
  let processed = 0;
  let partials = 0;
  const consumers = [0, 1].map(
    () =>
      new Operator(graph.node("agg").spec, {
        emit: (r) => void results.push(JSON.stringify(r)),
        side: (_name, r) => void late.push(JSON.stringify(r)),
      }),
  );
  for (const [p, op] of consumers.entries()) {
    for (const m of sent.filter((s) => s.subject === `eddy.j.agg.in.${p}`)) {
      if (m.kind === "data") {
        const batch = decodeBatch(m.data);
        let mi = 0;
        for (let i = 0; i < batch.records.length / 3; i++) {
          while (mi < batch.marks.length && batch.marks[mi] === i) {
            op.advanceWatermark(batch.marks[mi + 1]!, 0);
            mi += 2;
          }
          const input = batch.inputs?.[i] ?? 0;
          if (input === PARTIAL_INPUT) partials++;
          processed++;
          op.process(batch.records[i * 3] as string, batch.records[i * 3 + 1] as number, batch.records[i * 3 + 2], 0, input);
        }
        op.advanceWatermark(batch.watermark, 0);
      } else if (m.kind === "watermark" || m.kind === "end") {
        op.advanceWatermark(decodeWatermark(m.data).watermark, 0);
      }
    }
  }
  return { results: results.sort(), late: late.sort(), processed, partials };
}

describe("local-global aggregation through the output router", () => {
  // Partials are per pane: the finer the panes, the less there is to fold (100 ms panes hold ~10 events here).
  for (const [name, window, reduction] of [
    ["tumbling", tumbling(1_000), 3],
    ["sliding", sliding(2_000, 500), 2],
    ["sliding with a slide that does not divide the size", sliding(1_000, 300), 1.3],
  ] as const) {
    it(`gives the same ${name} window results, firings and late records as sending every record`, () => {
      for (const seed of [1, 2, 3, 4, 5]) {
        const plain = run(seed, window, false);
        const local = run(seed, window, true);
        expect(local.results).toEqual(plain.results);
        expect(local.late).toEqual(plain.late);
        expect(plain.results.some((r) => r.includes('"firing":"late"'))).toBe(true);
        expect(plain.late.length).toBeGreaterThan(0);
        expect(plain.partials).toBe(0);
        expect(local.partials).toBeGreaterThan(0);
        // A hot key sends one partial per batch: far fewer records reach the consumer.
        expect(local.processed).toBeLessThan(plain.processed / reduction);
      }
    });
  }

  it("works on the trigger path with a trigger that decides by time alone (eventTimeTrigger, earlyFirings), with the same results", () => {
    for (const trigger of [eventTimeTrigger(), earlyFirings({ every: 1_000 })]) {
      for (const seed of [1, 2, 3]) {
        const plain = run(seed, tumbling(1_000), false, 3_000, undefined, trigger);
        const local = run(seed, tumbling(1_000), true, 3_000, undefined, trigger);
        expect(local.results).toEqual(plain.results);
        expect(local.late).toEqual(plain.late);
        expect(plain.results.some((r) => r.includes('"firing":"late"'))).toBe(true);
        expect(local.partials).toBeGreaterThan(0);
        expect(local.processed).toBeLessThan(plain.processed / 3);
      }
    }
  });

  it("carries exact distinct sets as partials, with the same counts", () => {
    const distinct = countDistinct((e: Ev) => e.u);
    const plain = run(9, tumbling(1_000), false, 3_000, distinct);
    const local = run(9, tumbling(1_000), true, 3_000, distinct);
    expect(local.results).toEqual(plain.results);
    expect(local.processed).toBeLessThan(plain.processed / 3);
  });

  it("puts the partials a new watermark makes due before its mark, and sends records of due windows as they are", () => {
    const graph = buildJobGraph(pipeline(tumbling(1_000), true, countAndSum, 1));
    const sent: Sent[] = [];
    const transport = {
      publish: async (subject: string, data: Uint8Array, headers?: Readonly<Record<string, string>>) => void sent.push({ subject, data, kind: headers?.["Eddy-Kind"] ?? "" }),
    } as unknown as Transport;
    const router = new OutputRouter(graph, graph.node("src"), 0, new Publisher(transport), { batchMaxRecords: 1000, maxPayloadBytes: 1 << 20 });
    router.watermark = 0;
    router.emit({ k: "hot", v: 1, u: "a" }, 100); // window [0, 1000): due at 999
    router.emit({ k: "hot", v: 2, u: "a" }, 1_100); // window [1000, 2000): due at 1999
    router.watermark = 999;
    router.emit({ k: "cold", v: 3, u: "a" }, 1_200); // the first partial leaves before the mark of 999
    router.emit({ k: "hot", v: 4, u: "a" }, 500); // its window is due: sent as it is
    router.flushAll();
    const batch = decodeBatch(sent.find((s) => s.kind === "data")!.data);
    expect(batch.records).toEqual([
      "hot", 100, { n: 1, sum: 1 },
      "hot", 500, { k: "hot", v: 4, u: "a" },
      "hot", 1_100, { n: 1, sum: 2 },
      "cold", 1_200, { n: 1, sum: 3 },
    ]); // prettier-ignore
    expect(batch.inputs).toEqual([PARTIAL_INPUT, 0, PARTIAL_INPUT, PARTIAL_INPUT]);
    expect(batch.marks).toEqual([0, 0, 1, 999]);
    expect(batch.watermark).toBe(999);
  });

  it("sends every partial before the barrier that ends its epoch", () => {
    const graph = buildJobGraph(pipeline(tumbling(1_000), true));
    const sent: Sent[] = [];
    const transport = {
      publish: async (subject: string, data: Uint8Array, headers?: Readonly<Record<string, string>>) => void sent.push({ subject, data, kind: headers?.["Eddy-Kind"] ?? "" }),
    } as unknown as Transport;
    const router = new OutputRouter(graph, graph.node("src"), 0, new Publisher(transport), { batchMaxRecords: 1000, maxPayloadBytes: 1 << 20 });
    for (let i = 0; i < 100; i++) router.emit({ k: "hot", v: 1, u: "x" }, 100 + i);
    expect(sent).toHaveLength(0);
    expect(router.buffered).toBe(1);
    expect(router.folded).toBe(100);
    router.barrier(1, false);
    const toHot = sent.filter((s) => s.kind === "data");
    expect(toHot).toHaveLength(1);
    const batch = decodeBatch(toHot[0]!.data);
    expect(batch.records).toEqual(["hot", 199, { n: 100, sum: 100 }]);
    expect(batch.inputs).toEqual([PARTIAL_INPUT]);
    expect(sent.at(-1)!.kind).toBe("barrier");
    expect(router.buffered).toBe(0);
  });

  describe("partials wait for company (allowLatencyMs, Flink's mini-batch allow-latency)", () => {
    function routerWith(localAggregation: boolean | { allowLatencyMs?: number }, batchMaxRecords = 1000) {
      const graph = buildJobGraph(
        definePipeline({
          name: "j",
          functions: [
            defineFunction({ name: "src", input: fromStream("S"), process: () => undefined }),
            windowed({ name: "agg", input: fromFunction("src"), partitions: 1, key: (e: Ev) => e.k, window: tumbling(1_000), aggregate: countAndSum, localAggregation }),
          ],
        }),
      );
      const sent: Sent[] = [];
      const transport = {
        publish: async (subject: string, data: Uint8Array, headers?: Readonly<Record<string, string>>) => void sent.push({ subject, data, kind: headers?.["Eddy-Kind"] ?? "" }),
      } as unknown as Transport;
      const router = new OutputRouter(graph, graph.node("src"), 0, new Publisher(transport), { batchMaxRecords, maxPayloadBytes: 1 << 20 });
      const batches = () => sent.filter((m) => m.kind === "data").map((m) => decodeBatch(m.data));
      return { router, sent, batches };
    }
    const ev = (k: string, v = 1): Ev => ({ k, v, u: "x" });

    it("beyond the records' buffer timeout, until the first has waited allowLatencyMs (default 1000 ms)", () => {
      const { router, batches } = routerWith(true);
      router.watermark = 0;
      router.now = 0;
      router.emit(ev("hot"), 100);
      router.emit(ev("cold"), 150);
      router.now = 400;
      router.emit(ev("hot"), 120);
      router.emit(ev("late", 5), -1_000); // its window is due: it goes as it is, with the records
      router.now = 500;
      router.flushAged(5);
      router.flushDue(5);
      expect(batches().map((b) => b.records)).toEqual([["late", -1_000, ev("late", 5)]]);
      router.now = 999;
      router.flushAged(5);
      expect(batches()).toHaveLength(1);
      router.now = 1_000;
      router.flushAged(5);
      expect(batches()).toHaveLength(2);
      expect(batches()[1]!.records).toEqual(["hot", 120, { n: 2, sum: 2 }, "cold", 150, { n: 1, sum: 1 }]);
      expect(batches()[1]!.inputs).toEqual([PARTIAL_INPUT, PARTIAL_INPUT]);
      expect(router.buffered).toBe(0);
    });

    it("as long as allowLatencyMs says, 0 meaning with the next batch of records", () => {
      for (const [allowLatencyMs, leavesAt] of [[0, 5], [250, 250]] as const) {
        const { router, batches } = routerWith({ allowLatencyMs });
        router.watermark = 0;
        router.now = 0;
        router.emit(ev("hot"), 100);
        for (let now = 1; now <= leavesAt; now++) {
          router.now = now;
          router.flushAged(5);
          expect(batches().length, `${allowLatencyMs} ms at ${now}`).toBe(now < leavesAt ? 0 : 1);
        }
      }
    });

    it("but not past the watermark that makes their windows due, nor past a barrier", () => {
      const { router, sent, batches } = routerWith(true);
      router.watermark = 0;
      router.emit(ev("hot"), 100); // [0, 1000): due at 999
      router.emit(ev("hot"), 1_100); // [1000, 2000): due at 1999
      router.watermark = 999;
      router.broadcastWatermark();
      expect(batches().map((b) => [b.records, b.watermark])).toEqual([[["hot", 100, { n: 1, sum: 1 }], 999]]);
      expect(sent.map((m) => m.kind)).toEqual(["data"]); // the batch told the watermark
      router.barrier(1, false);
      expect(batches()[1]!.records).toEqual(["hot", 1_100, { n: 1, sum: 1 }]);
      expect(sent.at(-1)!.kind).toBe("barrier");
    });

    it("nor once batchMaxRecords of them wait, which bounds the memory they hold", () => {
      const { router, batches } = routerWith(true, 10);
      router.watermark = 0;
      for (let i = 0; i < 9; i++) router.emit(ev(`k${i}`), 100);
      expect(batches()).toHaveLength(0);
      router.emit(ev("k9"), 100);
      expect(batches()).toHaveLength(1);
      expect(batches()[0]!.records.length / 3).toBe(10);
    });

    it("refuses a wait that is not 0 to 60 000 ms", () => {
      for (const allowLatencyMs of [-1, 1.5, 60_001, Number.NaN, "5" as unknown as number]) {
        expect(() => routerWith({ allowLatencyMs }), String(allowLatencyMs)).toThrow(/allowLatencyMs must be a whole number of milliseconds from 0 to 60000/);
      }
      expect(() => routerWith("yes" as unknown as boolean)).toThrow(/localAggregation must be true, false or \{ allowLatencyMs \}/);
    });
  });

  it("is refused where it cannot be exact", () => {
    const base = { name: "w", input: fromFunction("src"), key: (e: Ev) => e.k, window: tumbling(1_000), aggregate: countAndSum, localAggregation: true };
    expect(() => windowed({ ...base, window: session(1_000) })).toThrow(/tumbling, sliding or global/);
    expect(() => windowed({ ...base, aggregate: { ...countAndSum, merge: undefined } })).toThrow(/aggregate.merge/);
    expect(() => windowed({ ...base, timestamp: () => 0 })).toThrow(/timestamp selector/);
    expect(() => windowed({ ...base, input: fromStream("S") })).toThrow(InvalidWindowSpecError);
    // A trigger that counts or looks at records would see one partial for many.
    expect(() => windowed({ ...base, trigger: countTrigger(5) })).toThrow(/accepts partials/);
    expect(() => windowed({ ...base, trigger: purging(earlyFirings({ every: 1_000 })) })).toThrow(/accepts partials/);
    expect(() => windowed({ ...base, trigger: earlyFirings({ every: 1_000 }), changelog: true })).toThrow(/accepts partials/);
    expect(() => windowed({ ...base, time: "processing" })).toThrow(/accepts partials/);
    expect(windowed({ ...base, trigger: earlyFirings({ every: 1_000 }) }).localAggregation).toBeDefined();
  });
});
