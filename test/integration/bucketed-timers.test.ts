/**
 * Timers bucketed by time (design note bi), on a real nats-server: a worker process runs a job
 * that sets one event-time timer for each of 20 000 keys, spread over 100 timer buckets of event
 * time. Only the buckets near the watermark are in memory (`eddy_timers_resident`); event time
 * then moves on in steps, firing the timers bucket by bucket; the worker is SIGKILLed midway and
 * another restores — listing the bucket markers and the near buckets, not every timer — and goes
 * on. Every timer fires exactly once, each partition's in (time, key) order, and the output
 * equals a plain loop over the events.
 */
import { describe, expect, it } from "vitest";
import { ensureStream, publishAll, readAll } from "../../runtime/nats/streams.ts";
import { requestEndOfInput } from "../../runtime/nats/control.ts";
import { startSupervisor } from "../../runtime/supervisor/supervisor.ts";
import { partitionOf } from "../../runtime/core/hash.ts";
import { TIMER_BUCKET_MS } from "../../runtime/core/kv-keys.ts";
import { connect, natsServer } from "../support/nats-server.ts";
import { startEddy, type EddyProcess } from "../support/processes.ts";
import { waitFor } from "../support/wait.ts";
import { expectedFired, type FiredRow, type TimerEvent } from "../fixtures/many-timers.ts";

const decoder = new TextDecoder();
const W = TIMER_BUCKET_MS;
const KEYS = 20_000;
const BUCKETS = 100;

/** One timer per key over buckets 1..100, registered while event time is below 1 s; then ticks 10 buckets apart. */
function events(): { registrations: TimerEvent[]; ticks: TimerEvent[] } {
  const registrations = Array.from({ length: KEYS }, (_, i) => ({ key: `k${i}`, at: i % 1000, fire: W * (1 + ((i * 7919) % BUCKETS)) + (i % 997) }));
  const ticks = Array.from({ length: BUCKETS / 10 + 1 }, (_, j) => ({ key: `tick${j}`, at: (j + 1) * 10 * W }));
  return { registrations, ticks };
}

function worker(url: string): EddyProcess {
  return startEddy(["worker", "--pipeline", "test/fixtures/many-timers.ts", "--nats", url, "--metrics-port", "0"]);
}

/** A metric summed over the worker's actors of `fn`, from its /metrics. */
async function metric(p: EddyProcess, name: string, fn = "sched"): Promise<number> {
  const port = /metrics on [^:\s]+:(\d+)\/metrics/.exec(p.output())?.[1];
  if (port === undefined) return NaN;
  // A loaded machine may drop a request: the caller asks again.
  const text = await fetch(`http://127.0.0.1:${port}/metrics`).then((r) => r.text(), () => "");
  let sum = 0;
  let seen = false;
  for (const line of text.split("\n")) {
    if (line.startsWith(`${name}{`) && line.includes(`function="${fn}"`)) {
      sum += Number(line.slice(line.lastIndexOf(" ") + 1));
      seen = true;
    }
  }
  return seen ? sum : NaN;
}

describe("timers bucketed by time", () => {
  it("keeps only the near buckets in memory, survives a SIGKILL, and fires every timer once in order", async () => {
    await using server = await natsServer();
    const nc = await connect(server);
    // Generous: a bucket listing holds the actor, and barriers wait, for a few hundred ms each on a loaded machine.
    const supervisor = await startSupervisor(nc, { checkpointIntervalMs: 1500, checkpointTimeoutMs: 30_000 });
    const { registrations, ticks } = events();
    const expected = expectedFired([...registrations, ...ticks]);
    const rows = async (): Promise<FiredRow[]> => (await readAll(nc, "MT_OUT", "mt.out")).map((m) => JSON.parse(decoder.decode(m.data)) as FiredRow);
    const publish = (es: readonly TimerEvent[]) => publishAll(nc, es.map((e) => ({ subject: "mt.events", data: JSON.stringify(e) })));
    /** Event time moves to each tick in turn; each time, the timers due by then are published (committed). */
    const tick = async (from: number, to: number) => {
      for (const t of ticks.slice(from, to)) {
        await publish([t]);
        const due = expected.filter((r) => r.ts < t.at).length;
        await waitFor(`timers before ${t.at / W} buckets fired`, async () => ((await rows()).length >= due ? true : undefined), { timeoutMs: 240_000, intervalMs: 500 });
      }
    };
    await ensureStream(nc, "MT_EVENTS", ["mt.events"]);
    await ensureStream(nc, "MT_OUT", ["mt.out"]);
    let second: EddyProcess | undefined;
    const first = worker(server.url);
    try {
      await publish(registrations);
      // Every timer registered and a checkpoint taken since: the far ones left memory.
      await waitFor("timers registered and checkpointed", async () => ((await metric(first, "eddy_timer_buckets_far")) >= 2 * (BUCKETS - 2) ? true : undefined), { timeoutMs: 240_000, intervalMs: 500 });
      // Bucket 1 of 100 in each partition: about 1 % of the timers.
      expect(await metric(first, "eddy_timers_resident")).toBeLessThan(KEYS / 50);
      await tick(0, 4);
      // Near buckets only: the one of the watermark and the next, with timers not fired yet.
      expect(await metric(first, "eddy_timers_resident")).toBeLessThan(KEYS / 25);
      await first.kill();

      second = worker(server.url);
      const restarted = second;
      // Restored: the markers name the 60 buckets still in KV in each partition.
      await waitFor("the new owner restored", async () => ((await metric(restarted, "eddy_timer_buckets_far")) > 2 * 50 ? true : undefined), { timeoutMs: 120_000, intervalMs: 500 });
      // ... of which it listed only the near ones.
      expect(await metric(restarted, "eddy_timer_bucket_loads_total")).toBeLessThan(10);
      expect(await metric(restarted, "eddy_timers_resident")).toBeLessThan(KEYS / 25);
      await tick(4, ticks.length);
      await requestEndOfInput(nc, "manytimers");
      const out = await waitFor("every timer fired", async () => {
        const r = await rows();
        return r.length >= KEYS ? r : undefined;
      }, { timeoutMs: 300_000, intervalMs: 1000 });
      expect(out.length).toBe(KEYS);
      const byTime = (a: FiredRow, b: FiredRow) => a.ts - b.ts || (a.key < b.key ? -1 : a.key > b.key ? 1 : 0);
      expect([...out].sort(byTime)).toEqual(expected);
      // Each partition's timers reached the sink in firing order, across the kill.
      for (const p of [0, 1]) {
        const mine = out.filter((r) => partitionOf(r.key, 2) === p);
        expect(mine).toEqual(expected.filter((r) => partitionOf(r.key, 2) === p));
      }
    } finally {
      await first.kill();
      await second?.kill();
      if (process.env.EDDY_TEST_DEBUG) console.log(first.output(), second?.output());
      await supervisor.stop();
      await nc.close();
    }
  }, 1_200_000);
});
