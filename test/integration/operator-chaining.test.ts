/**
 * Operator chaining on a real nats-server (design note ch): source → filter/map → sink written
 * as three functions run as one chain in the source's actors — `eddy status` shows the chain,
 * the chained functions have no input stream (so no consumer) and no actors — and produce the
 * same output and dead letters as the same job with chaining switched off. Workers of the
 * unchained job replaced by workers that chain it recover exactly once. A worker process
 * SIGKILLed while the chain runs loses and repeats nothing: the exactly-once output equals a
 * plain loop over the input.
 */
import { describe, expect, it } from "vitest";
import { startLocalJob } from "../../runtime/dev/local-job.ts";
import { startWorker } from "../../runtime/actor/worker.ts";
import { ensureStream, publishAll, readAll, streamExists } from "../../runtime/nats/streams.ts";
import { requestEndOfInput } from "../../runtime/nats/control.ts";
import { readJobStatus } from "../../runtime/cli/status.ts";
import { inputStream } from "../../runtime/core/naming.ts";
import { startSupervisor } from "../../runtime/supervisor/supervisor.ts";
import type { NatsConnection } from "../../runtime/nats/connection.ts";
import { connect, natsServer } from "../support/nats-server.ts";
import { startEddy, type EddyProcess } from "../support/processes.ts";
import { waitFor } from "../support/wait.ts";
import { chainedLedger, expectedRows, subjectOf, type CentsRow, type LedgerEvent } from "../fixtures/chained-ledger.ts";

const decoder = new TextDecoder();

function events(count: number, seed: number): LedgerEvent[] {
  let x = seed;
  const rand = () => (x = (x * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
  // Amounts in -20..20: some zero (filtered out), some 13 (the chained function throws).
  return Array.from({ length: count }, (_, seq) => ({ seq, account: `acct-${Math.floor(rand() * 50)}`, amount: Math.floor(rand() * 41) - 20 }));
}

const bySeq = (rows: readonly CentsRow[]) => [...rows].sort((a, b) => a.seq - b.seq);

async function rowsOf(nc: NatsConnection, stream: string, subject: string): Promise<CentsRow[]> {
  return (await readAll(nc, stream, subject)).map((m) => JSON.parse(decoder.decode(m.data)) as CentsRow);
}

describe("operator chaining", () => {
  it("runs source → map → sink as one chain: status shows it, no stream between them, the same output and dead letters as unchained", async () => {
    await using server = await natsServer();
    const nc = await connect(server);
    try {
      const input = events(3000, 7);
      await ensureStream(nc, "CHAIN_IN", ["chain.in.*"]);
      await ensureStream(nc, "CHAIN_OUT", ["chain.out.*"]);
      await publishAll(nc, input.map((e) => ({ subject: subjectOf(e), data: JSON.stringify(e) })));

      const run = async (name: string, chaining: boolean) => {
        const job = await startLocalJob(nc, chainedLedger({ name, subject: `chain.out.${name}`, chaining }), { checkpointIntervalMs: 300 });
        try {
          await job.endInput();
          await job.finished();
          const status = await readJobStatus(nc, name);
          const actors = job.worker.actors().map((a) => a.id).sort();
          const streams = { keep: await streamExists(nc, inputStream(name, "keep")), out: await streamExists(nc, inputStream(name, "out")) };
          await job.stop();
          const dead = (await readAll(nc, `EDDY_${name}_DLQ`)).map((m) => ({ fn: m.headers["Eddy-Function"], producer: m.headers["Eddy-Producer"], reason: m.headers["Eddy-Reason"], seq: (JSON.parse(decoder.decode(m.data)) as LedgerEvent).seq }));
          return { status, actors, streams, rows: await rowsOf(nc, "CHAIN_OUT", `chain.out.${name}`), dead: dead.sort((a, b) => a.seq - b.seq) };
        } catch (e) {
          await job.stop().catch(() => undefined);
          throw e;
        }
      };

      const chained = await run("chained", true);
      expect(chained.status.chains).toEqual([["parse", "keep", "out"]]);
      expect(chained.actors).toEqual(["parse/0", "parse/1"]);
      expect(chained.streams).toEqual({ keep: false, out: false });

      const apart = await run("apart", false);
      expect(apart.status.chains).toEqual([]);
      expect(apart.actors).toEqual(["keep/0", "keep/1", "out/0", "out/1", "parse/0", "parse/1"]);
      expect(apart.streams).toEqual({ keep: true, out: true });

      const expected = expectedRows(input);
      expect(expected.length).toBeGreaterThan(2000);
      expect(bySeq(chained.rows)).toEqual(expected);
      expect(bySeq(apart.rows)).toEqual(expected);
      // A record the chained function throws on is dead-lettered under its own name, as unchained.
      const unlucky = input.filter((e) => e.amount === 13).map((e) => e.seq);
      expect(unlucky.length).toBeGreaterThan(10);
      expect(chained.dead.map((d) => d.seq)).toEqual(unlucky);
      expect(chained.dead).toEqual(apart.dead);
      expect(chained.dead[0]).toEqual({ fn: "keep", producer: `parse/${unlucky[0]! % 2}`, reason: 'process: keep.process failed for key "": unlucky amount', seq: unlucky[0] });
    } finally {
      await nc.close();
    }
  }, 240_000);

  it("a job whose workers are replaced by workers that chain its functions goes on from its checkpoint exactly once", async () => {
    await using server = await natsServer();
    const nc = await connect(server);
    const logs: string[] = [];
    const supervisor = await startSupervisor(nc, { checkpointIntervalMs: 300, checkpointTimeoutMs: 5000, log: (l) => void logs.push(`sup: ${l}`) });
    try {
      const input = events(3000, 5);
      await ensureStream(nc, "CHAIN_IN", ["chain.in.*"]);
      await ensureStream(nc, "CHAIN_OUT", ["chain.out"]);
      const rows = () => rowsOf(nc, "CHAIN_OUT", "chain.out");
      // Unchained, then chained: the first worker leaves without a stop checkpoint, and the next
      // one, with the chained graph, recovers from the last committed one (the chained functions'
      // positions are dropped; parse replays from its own). The other way round does not work
      // yet: see design note ch, "Changing the chaining of a running job".
      for (const [chaining, from, to] of [[false, 0, 1500], [true, 1500, 3000]] as const) {
        logs.push(`phase chaining=${chaining}`);
        const worker = await startWorker(nc, chainedLedger({ chaining }), { log: (l) => void logs.push(l) });
        try {
          await publishAll(nc, input.slice(from, to).map((e) => ({ subject: subjectOf(e), data: JSON.stringify(e) })));
          const wanted = expectedRows(input.slice(0, to)).length;
          await waitFor("the phase's rows", async () => ((await rows()).length >= wanted ? true : undefined), { timeoutMs: 60_000, intervalMs: 100, logs: () => logs.join("\n") });
        } finally {
          await worker.stop();
        }
      }
      // Settled: nothing more arrives.
      await new Promise((r) => setTimeout(r, 500));
      expect(bySeq(await rows())).toEqual(expectedRows(input));
    } finally {
      await supervisor.stop();
      await nc.close();
    }
  }, 240_000);

  it("a worker SIGKILLed while the chain runs: every row exactly once, as a plain loop computes it", async () => {
    await using server = await natsServer();
    const nc = await connect(server);
    const supervisor = await startSupervisor(nc, { checkpointIntervalMs: 700, checkpointTimeoutMs: 5000 });
    const input = events(12_000, 11);
    const expected = expectedRows(input);
    const rows = () => rowsOf(nc, "CHAIN_OUT", "chain.out");
    const worker = () => startEddy(["worker", "--pipeline", "test/fixtures/chained-ledger.ts", "--nats", server.url, "--metrics-port", "0"]);
    await ensureStream(nc, "CHAIN_IN", ["chain.in.*"]);
    await ensureStream(nc, "CHAIN_OUT", ["chain.out"]);
    let second: EddyProcess | undefined;
    const first = worker();
    try {
      // Events keep arriving while the worker is killed and replaced.
      const publishing = (async () => {
        for (let i = 0; i < input.length; i += 200) {
          await publishAll(nc, input.slice(i, i + 200).map((e) => ({ subject: subjectOf(e), data: JSON.stringify(e) })));
          await new Promise((r) => setTimeout(r, 25));
        }
      })();
      await waitFor("output of a few checkpoints", async () => ((await rows()).length >= 1500 ? true : undefined), { timeoutMs: 120_000, intervalMs: 50 });
      const status = await readJobStatus(nc, "chainledger");
      expect(status.chains).toEqual([["parse", "keep", "out"]]);
      await first.kill();
      expect((await rows()).length).toBeLessThan(expected.length);

      second = worker();
      await publishing;
      await requestEndOfInput(nc, "chainledger");
      const out = await waitFor("every row", async () => {
        const r = await rows();
        return r.length >= expected.length ? r : undefined;
      }, { timeoutMs: 240_000 });
      // Settled: nothing more arrives after the last row.
      await new Promise((r) => setTimeout(r, 1500));
      expect((await rows()).length).toBe(expected.length);
      expect(bySeq(out)).toEqual(expected);
    } finally {
      await first.kill();
      await second?.kill();
      if (process.env.EDDY_TEST_DEBUG) console.log(first.output(), second?.output());
      await supervisor.stop();
      await nc.close();
    }
  }, 400_000);
});
