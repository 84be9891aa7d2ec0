/**
 * Batched ingest on a real nats-server (design note ce): source messages carrying many events
 * (`json-lines`, `msgpack-batch`) are processed event by event; a bad event inside a batch is
 * dead-lettered alone — its dead letter holds that event and names the message's sequence and the
 * event's index — and the rest of the batch is kept. A worker process SIGKILLed while it works
 * through batches loses and repeats nothing: its exactly-once output equals a plain loop.
 */
import { describe, expect, it } from "vitest";
import { startLocalJob } from "../../runtime/dev/local-job.ts";
import { ensureStream, publishAll, readAll } from "../../runtime/nats/streams.ts";
import { requestEndOfInput } from "../../runtime/nats/control.ts";
import { startSupervisor } from "../../runtime/supervisor/supervisor.ts";
import { encodeValue } from "../../runtime/core/wire.ts";
import { defineFunction, definePipeline, defineSink, fromFunction, fromStream } from "../../runtime/sdk/index.ts";
import { connect, natsServer } from "../support/nats-server.ts";
import { startEddy, type EddyProcess } from "../support/processes.ts";
import { waitFor } from "../support/wait.ts";
import { expectedLedger, type LedgerEvent, type LedgerRow } from "../fixtures/batched-ledger.ts";

const decoder = new TextDecoder();

interface Click {
  readonly user: string;
  readonly n: number;
}

const pipeline = definePipeline({
  name: "batches",
  functions: [
    defineFunction<Click, string>({
      name: "lines",
      input: fromStream("LINES", { subject: "lines", format: "json-lines" }),
      key: (c) => c.user,
      process: (ctx, c) => {
        if (c.n === 13) throw new Error("unlucky");
        ctx.emit(`${ctx.key}:${c.n}`);
      },
    }),
    defineFunction<Click, string>({
      name: "packed",
      input: fromStream("PACKED", { subject: "packed", format: "msgpack-batch" }),
      key: (c) => c.user,
      process: (ctx, c) => ctx.emit(`${ctx.key}:${c.n}`),
    }),
    defineSink({ name: "out", input: [fromFunction("lines"), fromFunction("packed")], subject: "batches.out" }),
  ],
});

describe("batched ingest", () => {
  it("dead-letters a bad event of a batch alone, naming the message and the event, and keeps the rest", async () => {
    await using server = await natsServer();
    const nc = await connect(server);
    try {
      await ensureStream(nc, "LINES", ["lines"]);
      await ensureStream(nc, "PACKED", ["packed"]);
      await ensureStream(nc, "OUT", ["batches.out"]);
      await publishAll(nc, [
        { subject: "lines", data: '{"user":"a","n":1}\n{"user":"b","n":2}\n' },
        { subject: "lines", data: '{"user":"a","n":3}\n{not json\n\n{"user":4,"n":5}\r\n{"user":"c","n":6}\n{"user":"d","n":13}\n{"user":"d","n":14}' },
        { subject: "packed", data: encodeValue([{ user: "p", n: 1 }, { n: 2 }, { user: "q", n: 3 }]) },
        { subject: "packed", data: encodeValue({ user: "not", n: "a batch" }) },
      ]);
      const job = await startLocalJob(nc, pipeline);
      await job.endInput();
      await job.finished();
      await job.stop();

      const out = (await readAll(nc, "OUT")).map((m) => JSON.parse(decoder.decode(m.data)) as string);
      expect(out.sort()).toEqual(["a:1", "a:3", "b:2", "c:6", "d:14", "p:1", "q:3"]);
      const dead = (await readAll(nc, "EDDY_batches_DLQ")).map((m) => ({
        fn: m.headers["Eddy-Function"],
        stream: m.headers["Eddy-Source-Stream"],
        seq: m.headers["Eddy-Source-Sequence"],
        event: m.headers["Eddy-Source-Event"],
        reason: m.headers["Eddy-Reason"],
        body: m.data,
      }));
      const text = (b: Uint8Array) => decoder.decode(b);
      expect(dead.map((d) => ({ ...d, body: d.fn === "lines" ? text(d.body) : d.body }))).toEqual(
        expect.arrayContaining([
          expect.objectContaining({ fn: "lines", stream: "LINES", seq: "2", event: "1", reason: expect.stringMatching(/^undecodable: .* \(event 1 of 6\)$/), body: "{not json" }),
          expect.objectContaining({ fn: "lines", stream: "LINES", seq: "2", event: "2", reason: "key: key selector returned number, not a string (event 2 of 6)", body: '{"user":4,"n":5}' }),
          // process threw for one event: that event alone, the next one of the same key processed.
          expect.objectContaining({ fn: "lines", stream: "LINES", seq: "2", event: "4", reason: expect.stringMatching(/^process: .*unlucky.* \(event 4 of 6\)$/), body: '{"user":"d","n":13}' }),
          expect.objectContaining({ fn: "packed", stream: "PACKED", seq: "1", event: "1", reason: "key: key selector returned undefined, not a string (event 1 of 3)", body: encodeValue({ n: 2 }) }),
          // Not a batch at all: the whole message, as for an undecodable one-event message.
          expect.objectContaining({ fn: "packed", stream: "PACKED", seq: "2", event: undefined, reason: "undecodable: a msgpack-batch message must be an array of events, not object" }),
        ]),
      );
      expect(dead).toHaveLength(5);
    } finally {
      await nc.close();
    }
  }, 120_000);

  it("a worker SIGKILLed while it works through batches: every event's output exactly once, as a plain loop computes it", async () => {
    await using server = await natsServer();
    const nc = await connect(server);
    const supervisor = await startSupervisor(nc, { checkpointIntervalMs: 700, checkpointTimeoutMs: 5000 });
    const EVENTS = 12_000;
    const BATCH = 100;
    let x = 11;
    const rand = () => (x = (x * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
    const all: LedgerEvent[] = Array.from({ length: EVENTS }, (_, seq) => ({ seq, account: `acct-${Math.floor(rand() * 50)}`, amount: Math.floor(rand() * 200) - 100 }));
    const publish = (events: readonly LedgerEvent[]) => {
      const messages: { subject: string; data: string }[] = [];
      for (let i = 0; i < events.length; i += BATCH) messages.push({ subject: "ledger.in", data: events.slice(i, i + BATCH).map((e) => JSON.stringify(e)).join("\n") });
      return publishAll(nc, messages);
    };
    const rows = async (): Promise<LedgerRow[]> => (await readAll(nc, "LEDGER_OUT", "ledger.out")).map((m) => JSON.parse(decoder.decode(m.data)) as LedgerRow);
    const worker = () => startEddy(["worker", "--pipeline", "test/fixtures/batched-ledger.ts", "--nats", server.url, "--metrics-port", "0"]);
    await ensureStream(nc, "LEDGER_IN", ["ledger.in"]);
    await ensureStream(nc, "LEDGER_OUT", ["ledger.out"]);
    let second: EddyProcess | undefined;
    const first = worker();
    try {
      // Batches keep arriving (one every 25 ms) while the worker is killed and replaced; the second
      // half only after the kill, so that the worker cannot have finished everything before it.
      let killed!: () => void;
      const afterKill = new Promise<void>((r) => (killed = r));
      const publishing = (async () => {
        for (let i = 0; i < EVENTS; i += BATCH) {
          if (i === EVENTS / 2) await afterKill;
          await publish(all.slice(i, i + BATCH));
          await new Promise((r) => setTimeout(r, 25));
        }
      })();
      await waitFor("output of a few checkpoints", async () => ((await rows()).length >= BATCH * 10 ? true : undefined), { timeoutMs: 120_000, intervalMs: 50 });
      await first.kill();
      killed();
      expect((await rows()).length).toBeLessThan(EVENTS);

      second = worker();
      await publishing;
      await requestEndOfInput(nc, "ledgerbatch");
      const out = await waitFor("every row", async () => {
        const r = await rows();
        return r.length >= EVENTS ? r : undefined;
      }, { timeoutMs: 240_000 });
      // Settled: nothing more arrives after the last row.
      await new Promise((r) => setTimeout(r, 1500));
      expect((await rows()).length).toBe(EVENTS);
      expect([...out].sort((a, b) => a.seq - b.seq)).toEqual(expectedLedger(all));
    } finally {
      await first.kill();
      await second?.kill();
      if (process.env.EDDY_TEST_DEBUG) console.log(first.output(), second?.output());
      await supervisor.stop();
      await nc.close();
    }
  }, 400_000);
});
