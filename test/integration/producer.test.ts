/**
 * `eddy/client`'s producer on a real nats-server (design note ce): it batches events per
 * partition subject and partitions them with eddy's hash, so each key's events land on the subject
 * a partitioned `fromStream` source reads for that key — the same partition nats-server's
 * `{{partition(n,i)}}` mapping picks — and a job reading its batches sees every event once. It
 * pipelines publishes under a bound (waiting when the window is full) and tags each message with
 * a dedup id. `eddy publish` sends a file through it.
 */
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { createProducer } from "../../runtime/client/index.ts";
import { partitionOf } from "../../runtime/core/hash.ts";
import { decodeEvents } from "../../runtime/core/record-input.ts";
import { startLocalJob } from "../../runtime/dev/local-job.ts";
import { ensureStream, publishAll, readAll } from "../../runtime/nats/streams.ts";
import { defineFunction, definePipeline, defineSink, fromFunction, fromStream } from "../../runtime/sdk/index.ts";
import { connect, natsServer } from "../support/nats-server.ts";
import { startEddy } from "../support/processes.ts";
import { runEddy } from "../support/cli.ts";

const decoder = new TextDecoder();
const CONFIG = `
mappings = {
  "single.*": "mapped.{{partition(4,1)}}.{{wildcard(1)}}"
}
`;

interface Order {
  readonly id: number;
  readonly customer: string;
}

const orders: Order[] = Array.from({ length: 2000 }, (_, id) => ({ id, customer: `c-${(id * 7919) % 257}${id % 3 === 0 ? "-ü" : ""}` }));

const pipeline = definePipeline({
  name: "produced",
  functions: [
    defineFunction<Order, Order>({
      name: "orders",
      input: fromStream("BATCHED", { partitions: 4, subject: (p) => `batched.${p}`, format: "json-lines" }),
      key: (o) => o.customer,
      process: (ctx, o) => ctx.emit(o),
    }),
    defineSink({ name: "out", input: fromFunction("orders"), subject: "produced.out" }),
  ],
});

async function eddy(args: string[]): Promise<{ code: number | null; output: string }> {
  const p = startEddy(args);
  const code = await new Promise<number | null>((r) => p.child.once("exit", (c) => r(c)));
  return { code, output: p.output() };
}

describe("the producer", () => {
  it("puts each key's events on the partition nats-server's mapping and a partitioned source agree on, in batches; a job reads each once", async () => {
    await using server = await natsServer({ configText: CONFIG });
    const nc = await connect(server);
    try {
      await ensureStream(nc, "BATCHED", ["batched.*"]);
      await ensureStream(nc, "MAPPED", ["mapped.>"]);
      await ensureStream(nc, "OUT", ["produced.out"]);
      const producer = await createProducer(nc, { stream: "BATCHED", subject: "batched.{partition}", partitions: 4, partitionBy: "customer", maxBatch: 50, maxInFlight: 2, lingerMs: 600_000 });
      for (const o of orders) await producer.send(o);
      await producer.close();
      const stats = producer.stats();
      expect(stats).toMatchObject({ events: orders.length, acked: orders.length, inFlight: 0, buffered: 0 });
      // Full batches of 50, plus at most one partial batch per partition at the end (the linger
      // is longer than the test, so no timer cuts a batch short while sends wait for acks).
      expect(stats.messages).toBeGreaterThanOrEqual(orders.length / 50);
      expect(stats.messages).toBeLessThanOrEqual(orders.length / 50 + 4);
      // Two messages in flight at most: the producer waited for acknowledgements.
      expect(stats.backpressureWaits).toBeGreaterThan(0);

      // The server partitions the same customers one message each.
      await publishAll(nc, orders.map((o) => ({ subject: `single.${o.customer}`, data: JSON.stringify(o) })));
      const serverPartition = new Map<string, number>();
      for (const m of await readAll(nc, "MAPPED")) serverPartition.set((JSON.parse(decoder.decode(m.data)) as Order).customer, Number(m.subject.split(".")[1]));

      const stored = await readAll(nc, "BATCHED");
      const seen: number[] = [];
      for (const m of stored) {
        expect(m.headers["Nats-Msg-Id"]).toMatch(/^[\w-]+-[0-9a-z]+$/);
        const p = Number(m.subject.split(".")[1]);
        const events = decoder.decode(m.data).split("\n").map((l) => JSON.parse(l) as Order);
        expect(events.length).toBeLessThanOrEqual(50);
        for (const e of events) {
          expect(p).toBe(serverPartition.get(e.customer));
          expect(p).toBe(partitionOf(e.customer, 4));
          seen.push(e.id);
        }
      }
      expect(seen.sort((a, b) => a - b)).toEqual(orders.map((o) => o.id));
      expect(new Set(stored.map((m) => m.headers["Nats-Msg-Id"])).size).toBe(stored.length);

      const job = await startLocalJob(nc, pipeline);
      await job.endInput();
      await job.finished();
      await job.stop();
      const out = (await readAll(nc, "OUT")).map((m) => (JSON.parse(decoder.decode(m.data)) as Order).id);
      expect(out.sort((a, b) => a - b)).toEqual(orders.map((o) => o.id));
    } finally {
      await nc.close();
    }
  }, 120_000);

  it("drops a message published again with its id (a retry after a lost acknowledgement) and refuses a stream that does not capture the subject", async () => {
    await using server = await natsServer();
    const nc = await connect(server);
    try {
      await ensureStream(nc, "ONE", ["one"]);
      await ensureStream(nc, "TWO", ["two"]);
      const producer = await createProducer(nc, { stream: "ONE", subject: "one", maxBatch: 3, lingerMs: 1 });
      for (let i = 0; i < 7; i++) await producer.send({ i });
      await producer.flush();
      const first = await readAll(nc, "ONE");
      expect(first.map((m) => decoder.decode(m.data))).toEqual(['{"i":0}\n{"i":1}\n{"i":2}', '{"i":3}\n{"i":4}\n{"i":5}', '{"i":6}']);
      // What a retry sends: the same message with the same id.
      await publishAll(nc, [{ subject: "one", data: first[1]!.data, headers: { "Nats-Msg-Id": first[1]!.headers["Nats-Msg-Id"]! } }]);
      expect(await readAll(nc, "ONE")).toHaveLength(3);
      await producer.close();

      const wrong = await createProducer(nc, { stream: "ONE", subject: "two" });
      await wrong.send({ x: 1 });
      await expect(wrong.flush()).rejects.toThrow(/publishing to two failed/);
      await expect(wrong.send({ x: 2 })).rejects.toThrow(/publishing to two failed/);
      expect(await readAll(nc, "TWO")).toHaveLength(0);
      await expect(createProducer(nc, { stream: "NONE", subject: "x" })).rejects.toThrow(/stream NONE/);
    } finally {
      await nc.close();
    }
  }, 60_000);

  it("eddy publish sends a file through it, partitioned; bad arguments exit 2, a bad line exits 1", async () => {
    await using server = await natsServer();
    const nc = await connect(server);
    try {
      await ensureStream(nc, "CLI", ["cli.*"]);
      const dir = mkdtempSync(join(tmpdir(), "eddy-publish-"));
      const file = join(dir, "orders.ndjson");
      writeFileSync(file, orders.slice(0, 300).map((o) => JSON.stringify(o)).join("\n") + "\n\n");
      const ok = await eddy(["publish", "CLI", file, "--subject", "cli.{partition}", "--partitions", "3", "--partition-by", "customer", "--max-batch", "40", "--json", "--nats", server.url]);
      expect(ok.code, ok.output).toBe(0);
      expect(JSON.parse(ok.output)).toMatchObject({ stream: "CLI", events: 300 });
      const stored = await readAll(nc, "CLI");
      let events = 0;
      for (const m of stored) {
        for (const l of decoder.decode(m.data).split("\n")) {
          expect(Number(m.subject.slice(4))).toBe(partitionOf((JSON.parse(l) as Order).customer, 3));
          events++;
        }
      }
      expect(events).toBe(300);

      // From standard input ("-"), with the stream's only subject when it has one.
      await ensureStream(nc, "PIPED", ["piped.events"]);
      const piped = await runEddy(["publish", "PIPED", "-", "--format", "msgpack-batch", "--nats", server.url], { stdin: '{"a":1}\n{"a":2}\n\n{"a":3}\n' });
      expect(piped.code, piped.output).toBe(0);
      expect(piped.stdout).toMatch(/^published 3 events in 1 messages to PIPED \(0 retries, 0 backpressure waits, [\d.]+ s\)\n$/);
      expect((await readAll(nc, "PIPED")).map((m) => decodeEvents("msgpack-batch", m.data))).toEqual([[{ a: 1 }, { a: 2 }, { a: 3 }]]);

      const usage = await eddy(["publish", "CLI", file, "--partitions", "3", "--nats", server.url]);
      expect(usage.code).toBe(2);
      expect(usage.output.trim().split("\n")).toEqual(["eddy: --partitions > 1 needs --partition-by <field>"]);
      const format = await eddy(["publish", "CLI", file, "--format", "xml", "--nats", server.url]);
      expect(format.code).toBe(2);

      const bad = join(dir, "bad.ndjson");
      writeFileSync(bad, '{"id":1,"customer":"a"}\n{oops\n');
      const failed = await eddy(["publish", "CLI", bad, "--subject", "cli.x", "--nats", server.url]);
      expect(failed.code).toBe(1);
      expect(failed.output.trim()).toMatch(new RegExp(`^eddy: ${bad.replaceAll("/", "\\/")}:2: not JSON`));
    } finally {
      await nc.close();
    }
  }, 120_000);
});
