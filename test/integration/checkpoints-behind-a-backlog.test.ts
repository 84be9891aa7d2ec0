/**
 * Checkpoints behind a backlog (design note ci), with a real nats-server, an `eddy worker`
 * process and a supervisor: a backlog of clicks loaded before the start feeds a keyed count that
 * spends 0.25 ms of CPU per record, so every barrier waits seconds behind the records before it —
 * far longer than the checkpoint timeout (1 s). Those timeouts are not the job's fault: the job
 * is never recovered (it used to be after three of them, into the same backlog, again and again),
 * checkpoints commit once the barriers get through, and the output is exactly the plain loop's.
 */
import { describe, expect, it } from "vitest";
import { assignmentKey, statusKey, type JobStatusRecord } from "../../runtime/core/protocol.ts";
import { ensureControlStores, readJson } from "../../runtime/nats/control-store.ts";
import { ensureStream, publishAll, readAll } from "../../runtime/nats/streams.ts";
import { startSupervisor } from "../../runtime/supervisor/supervisor.ts";
import { connect, natsServer } from "../support/nats-server.ts";
import { startWorkerProcess } from "../support/processes.ts";
import { waitFor } from "../support/wait.ts";

const JOB = "slow";
const USERS = 20;
const CLICKS = 12_000;
const PAD = "x".repeat(200);
const decoder = new TextDecoder();

/** Every (user, running count) a plain loop emits, sorted. */
function plainLoop(users: readonly string[]): string[] {
  const counts = new Map<string, number>();
  const out: string[] = [];
  for (const user of users) {
    const n = (counts.get(user) ?? 0) + 1;
    counts.set(user, n);
    out.push(`${user}:${n}`);
  }
  return out.sort();
}

describe("checkpoints behind a backlog", () => {
  it("a slow function behind a backlog times checkpoints out without a recovery; they commit once the barriers get through, exactly once", { timeout: 240_000 }, async () => {
    await using server = await natsServer();
    const nc = await connect(server);
    const lines: string[] = [];
    const supervisor = await startSupervisor(nc, { checkpointIntervalMs: 300, checkpointTimeoutMs: 1_000, log: (line) => lines.push(line) });
    const stores = await ensureControlStores(nc);
    await ensureStream(nc, "SLOW_IN", ["slow.in"]);
    await ensureStream(nc, "SLOW_OUT", ["slow.out"]);
    const users = Array.from({ length: CLICKS }, (_, i) => `u${(i * 7) % USERS}`);
    await publishAll(
      nc,
      users.map((user) => ({ subject: "slow.in", data: JSON.stringify({ user, pad: PAD }) })),
    );
    const worker = startWorkerProcess("test/fixtures/slow-counter.ts", server.url);
    const logs = () => `${lines.join("\n")}\n--- worker ---\n${worker.output()}`;
    try {
      const generation = async () => (await readJson(stores.jobs, assignmentKey(JOB), "assignment"))?.value.generation ?? 0;
      const output = async () => (await readAll(nc, "SLOW_OUT", "slow.out")).map((m) => JSON.parse(decoder.decode(m.data)) as { user: string; n: number });
      // Until every count is out — or the job is recovered, which is what this must not do.
      await waitFor("every count published, or a recovery", async () => (await generation()) > 1 || (await output()).length >= CLICKS, { timeoutMs: 180_000, intervalMs: 250, logs });
      expect(await generation(), logs()).toBe(1);
      const status = (await readJson(stores.jobs, statusKey(JOB), "status"))?.value as JobStatusRecord | undefined;
      expect(status?.restarts ?? 0).toBe(0);

      // The barriers were behind the backlog: checkpoints timed out and said why (the records of
      // aborted checkpoints are gone once later ones commit; the supervisor's log keeps them).
      // Which actor a barrier was last seen behind depends on timing: the slow count, or the sink
      // reading the burst of counts it publishes.
      const ids = (re: RegExp) => lines.flatMap((line) => [...line.matchAll(re)].map((m) => Number(m[1])));
      const behind = ids(/checkpoint (\d+) aborted: barriers behind a backlog: [^(]*(?:count|out)\/\d[^(]* still processing/g);
      expect(behind.length, logs()).toBeGreaterThan(0);
      // ...and later ones committed.
      const committed = ids(/checkpoint (\d+) committed/g);
      expect(Math.max(...committed), logs()).toBeGreaterThan(Math.max(...behind));

      // Held sink output is published at commits: exactly once, as a plain loop counts.
      await new Promise((r) => setTimeout(r, 1_000));
      expect((await output()).map((o) => `${o.user}:${o.n}`).sort()).toEqual(plainLoop(users));
    } finally {
      if (process.env.EDDY_TEST_DEBUG) console.log(logs());
      await worker.kill();
      await supervisor.stop();
      await nc.close();
    }
  });
});
