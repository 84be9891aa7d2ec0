/**
 * Keyed state much larger than the state cache (design note bf), on a real nats-server: a worker
 * process with a cache of a few KB runs a job over thousands of users with skewed (Zipf-like)
 * access, so keys are evicted and read back from KV and the delta log all the time; it is
 * SIGKILLed mid-run, and another worker restores without reading state entries and goes on. The
 * exactly-once output must equal a plain loop over the events.
 */
import { describe, expect, it } from "vitest";
import { ensureStream, publishAll, readAll } from "../../runtime/nats/streams.ts";
import { requestEndOfInput } from "../../runtime/nats/control.ts";
import { startSupervisor } from "../../runtime/supervisor/supervisor.ts";
import { Kvm } from "@nats-io/kv";
import { jetstream } from "@nats-io/jetstream";
import { stateBucket } from "../../runtime/core/naming.ts";
import { connect, natsServer } from "../support/nats-server.ts";
import { startEddy, type EddyProcess } from "../support/processes.ts";
import { waitFor } from "../support/wait.ts";
import { expectedRows, type BigEvent, type BigRow } from "../fixtures/big-state.ts";

const decoder = new TextDecoder();
const USERS = 3000;
const EVENTS = 8000;
/** 16 KiB for the whole worker: a few dozen keys per actor, against thousands stored. */
const CACHE_MB = "0.015625";

/** Repeatable events over `USERS` users, a few hot and many cold; about 3 % forget their user. */
function events(): BigEvent[] {
  let x = 42;
  const rand = () => (x = (x * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
  return Array.from({ length: EVENTS }, (_, seq) => {
    const user = `user-${Math.min(USERS - 1, Math.floor(USERS * rand() ** 2.5))}`;
    return rand() < 0.03 ? { seq, user, v: 0, del: true } : { seq, user, v: 1 + Math.floor(rand() * 100) };
  });
}

function worker(url: string): EddyProcess {
  return startEddy(["worker", "--pipeline", "test/fixtures/big-state.ts", "--nats", url, "--state-cache-mb", CACHE_MB, "--metrics-port", "0"]);
}

/** A counter summed over the worker's actors, from its /metrics. */
async function metric(p: EddyProcess, name: string): Promise<number> {
  const port = /metrics on [^:\s]+:(\d+)\/metrics/.exec(p.output())?.[1];
  if (port === undefined) return NaN;
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  let sum = 0;
  for (const line of text.split("\n")) if (line.startsWith(`${name}{`)) sum += Number(line.slice(line.lastIndexOf(" ") + 1));
  return sum;
}

describe("state larger than the state cache", () => {
  it("evicts and reads back keys, survives a SIGKILL, and its output equals a plain loop over the events", async () => {
    await using server = await natsServer();
    const nc = await connect(server);
    const supervisor = await startSupervisor(nc, { checkpointIntervalMs: 1500, checkpointTimeoutMs: 5000 });
    const all = events();
    const rows = async (): Promise<BigRow[]> => (await readAll(nc, "BIG_OUT", "big.out")).map((m) => JSON.parse(decoder.decode(m.data)) as BigRow);
    const publish = (es: readonly BigEvent[]) => publishAll(nc, es.map((e) => ({ subject: "big.events", data: JSON.stringify(e) })));
    await ensureStream(nc, "BIG_EVENTS", ["big.events"]);
    await ensureStream(nc, "BIG_OUT", ["big.out"]);
    let second: EddyProcess | undefined;
    const first = worker(server.url);
    try {
      await publish(all.slice(0, EVENTS / 2));
      // Killed mid-run: some output committed, not all of the first half handled.
      await waitFor("output of a few checkpoints", async () => ((await rows()).length >= EVENTS / 8 ? true : undefined), { timeoutMs: 120_000 });
      expect(await metric(first, "eddy_state_cache_evictions_total")).toBeGreaterThan(0);
      await first.kill();

      second = worker(server.url);
      const restarted = second;
      await publish(all.slice(EVENTS / 2));
      // The new owner reads keys back and evicts them too (checked while it runs: a finished job's actors stop).
      await waitFor("misses and evictions after the restart", async () => ((await metric(restarted, "eddy_state_cache_evictions_total")) > 0 && (await metric(restarted, "eddy_state_cache_misses_total")) > 500 ? true : undefined), { timeoutMs: 120_000 });
      await requestEndOfInput(nc, "bigstate");
      const out = await waitFor("every row", async () => {
        const r = await rows();
        return r.length >= EVENTS ? r : undefined;
      }, { timeoutMs: 240_000 });
      expect(out.length).toBe(EVENTS);
      expect([...out].sort((a, b) => a.seq - b.seq)).toEqual(expectedRows(all));
      // The state is far larger than the cache: thousands of keys in KV.
      const kv = await new Kvm(jetstream(nc)).open(stateBucket("bigstate", "totals"));
      let stored = 0;
      for await (const k of await kv.keys()) if (k.includes(".sum.")) stored++;
      expect(stored).toBeGreaterThan(1000);
    } finally {
      await first.kill();
      await second?.kill();
      if (process.env.EDDY_TEST_DEBUG) console.log(first.output(), second?.output());
      await supervisor.stop();
      await nc.close();
    }
  }, 400_000);
});
