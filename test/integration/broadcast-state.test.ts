/**
 * Broadcast state on a real server (design note bq): a keyed function with 4 partitions reads
 * events and, broadcast, a threshold stream; thresholds change while events flow, and worker
 * processes are SIGKILLed — once while events of a threshold version are being processed, once
 * right after a new threshold was published. The exactly-once sink must then hold:
 * - every event's output exactly once, equal to an expectation computed here from the events and
 *   the threshold each phase published (events of a phase are published once every partition has
 *   reported applying its threshold, so each must see exactly that version);
 * - for each threshold version, one "applied" report per partition, all at the same checkpoint;
 * - for events published around a threshold change without waiting, one cut in publication
 *   order for all partitions together: every event before it sees the old version, every one
 *   after it the new. (Here the partitions' inputs interleave alike — one worker, one source
 *   each — so on-arrival application would pass this too; test/unit/actor/broadcast.test.ts
 *   feeds two partitions differently interleaved inputs, where it would not.)
 * A second test stops the deployed job with a savepoint, which holds the broadcast state once
 * (in partition 0's export), and deploys it again from the savepoint: every partition sees the
 * threshold again without it being published or applied again; `eddy state get --broadcast`
 * and `eddy state scan --broadcast` read it, live and committed.
 */
import { describe, expect, it } from "vitest";
import { seededRandom } from "../../functions/seeded-random.ts";
import { resolve } from "node:path";
import { deployModule } from "../../runtime/deploy/deploy.ts";
import { broadcastKey } from "../../runtime/core/kv-keys.ts";
import { decodeValue } from "../../runtime/core/wire.ts";
import { readSavepoint } from "../../runtime/nats/savepoints.ts";
import { ensureStream, publishAll, readAll } from "../../runtime/nats/streams.ts";
import { eddyOk, runEddy } from "../support/cli.ts";
import { startEddy } from "../support/processes.ts";
import { startSupervisor } from "../../runtime/supervisor/supervisor.ts";
import { connect, natsServer } from "../support/nats-server.ts";
import { startWorkerProcess, type EddyProcess } from "../support/processes.ts";
import { waitFor } from "../support/wait.ts";
import type { ScoreEvent, ScoreOutput, Threshold } from "../fixtures/broadcast-thresholds.ts";

const decoder = new TextDecoder();
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const FIXTURE = "test/fixtures/broadcast-thresholds.ts";
const PARTITIONS = 4;

/** Seeded (mulberry32), so a failure can be replayed. */
const random = seededRandom;

describe("broadcast state on a real server", () => {
  it("applies every threshold at the same checkpoint in every partition, and a worker kill changes no output", { timeout: 240_000 }, async () => {
    await using server = await natsServer();
    const nc = await connect(server);
    const supervisor = await startSupervisor(nc, { checkpointIntervalMs: 300, checkpointTimeoutMs: 5000 });
    const workers: EddyProcess[] = [];
    const worker = () => {
      const w = startWorkerProcess(FIXTURE, server.url);
      workers.push(w);
      return w;
    };
    try {
      await ensureStream(nc, "BC_EVENTS", ["bc.events"]);
      await ensureStream(nc, "BC_RULES", ["bc.rules"]);
      await ensureStream(nc, "BC_OUT", ["bc.out"]);
      const outputs = async (): Promise<ScoreOutput[]> => (await readAll(nc, "BC_OUT", "bc.out")).map((m) => JSON.parse(decoder.decode(m.data)) as ScoreOutput);
      const next = random(14);
      let id = 0;
      const events = (n: number): ScoreEvent[] => Array.from({ length: n }, () => ({ id: ++id, user: `u${Math.floor(next() * 23)}`, value: Math.floor(next() * 100) }));
      const publishEvents = (es: readonly ScoreEvent[]) => publishAll(nc, es.map((e) => ({ subject: "bc.events", data: JSON.stringify(e) })));
      const publishThreshold = (t: Threshold) => publishAll(nc, [{ subject: "bc.rules", data: JSON.stringify(t) }]);
      const appliedEverywhere = (version: number) =>
        waitFor(`threshold ${version} applied by every partition`, async () => ((await outputs()).filter((o) => o.kind === "applied" && o.version === version).length >= PARTITIONS ? true : undefined), { timeoutMs: 60_000 });
      const eventsOut = (ids: readonly number[]) =>
        waitFor(`outputs of ${ids.length} events`, async () => {
          const seen = new Set((await outputs()).flatMap((o) => (o.kind === "event" ? [o.id] : [])));
          return ids.every((i) => seen.has(i)) ? true : undefined;
        }, { timeoutMs: 60_000 });

      /** What each event must produce: the threshold of its phase, the user's count in publication order. */
      const expected: Array<Extract<ScoreOutput, { kind: "event" }>> = [];
      const counts = new Map<string, number>();
      const expect_ = (es: readonly ScoreEvent[], t: Threshold | undefined) => {
        for (const e of es) {
          const n = (counts.get(e.user) ?? 0) + 1;
          counts.set(e.user, n);
          expected.push({ kind: "event", id: e.id, user: e.user, n, version: t?.version ?? 0, over: t !== undefined && e.value > t.limit });
        }
      };

      let current = worker();
      // Phase 0: no threshold yet.
      const e0 = events(100);
      await publishEvents(e0);
      expect_(e0, undefined);
      await eventsOut(e0.map((e) => e.id));

      // Phase 1: threshold 1, applied everywhere before its events are published.
      const t1 = { version: 1, limit: 50 };
      await publishThreshold(t1);
      await appliedEverywhere(1);
      const e1 = events(200);
      await publishEvents(e1);
      expect_(e1, t1);
      await eventsOut(e1.map((e) => e.id));

      // Phase 2: threshold 2; the worker is killed while its events are processed.
      const t2 = { version: 2, limit: 20 };
      await publishThreshold(t2);
      await appliedEverywhere(2);
      const e2 = events(300);
      await publishEvents(e2.slice(0, 150));
      await waitFor("some outputs of phase 2", async () => ((await outputs()).some((o) => o.kind === "event" && o.id > e1.at(-1)!.id) ? true : undefined), { timeoutMs: 60_000 });
      await current.kill();
      current = worker();
      await publishEvents(e2.slice(150));
      expect_(e2, t2);
      await eventsOut(e2.map((e) => e.id));

      // Phase 3: the worker is killed right after threshold 3 is published, before it is applied or committed.
      const t3 = { version: 3, limit: 80 };
      await publishThreshold(t3);
      await current.kill();
      current = worker();
      await appliedEverywhere(3);
      const e3 = events(200);
      await publishEvents(e3);
      expect_(e3, t3);
      await eventsOut(e3.map((e) => e.id));

      // Phase 4: threshold 4 published amid a stream of events, without waiting for anything.
      const t4 = { version: 4, limit: 10 };
      const e4 = events(400);
      for (let b = 0; b < 40; b++) {
        if (b === 8) await publishThreshold(t4);
        await publishEvents(e4.slice(b * 10, b * 10 + 10));
        await sleep(25);
      }
      await appliedEverywhere(4);
      await eventsOut(e4.map((e) => e.id));

      const all = await outputs();
      const eventOutputs = all.filter((o): o is Extract<ScoreOutput, { kind: "event" }> => o.kind === "event");
      // Exactly once: no event output twice, whatever the kills.
      expect(new Set(eventOutputs.map((o) => o.id)).size).toBe(eventOutputs.length);
      const byId = new Map(eventOutputs.map((o) => [o.id, o]));
      expect(expected.map((x) => byId.get(x.id))).toEqual(expected);

      // One report per partition per version, all at one checkpoint.
      for (const version of [1, 2, 3, 4]) {
        const applied = all.filter((o): o is Extract<ScoreOutput, { kind: "applied" }> => o.kind === "applied" && o.version === version);
        expect(applied.map((a) => a.partition).sort()).toEqual([0, 1, 2, 3]);
        expect(new Set(applied.map((a) => a.epoch)).size).toBe(1);
      }

      // Phase 4: one cut in publication order, shared by every partition.
      const versions = e4.map((e) => byId.get(e.id)!.version);
      expect(versions.every((v) => v === 3 || v === 4)).toBe(true);
      const cut = versions.indexOf(4);
      if (cut >= 0) expect(versions.slice(cut).every((v) => v === 4)).toBe(true);
      // The counts still follow publication order per user.
      const n = new Map(counts);
      for (const e of e4) {
        const c = (n.get(e.user) ?? 0) + 1;
        n.set(e.user, c);
        expect(byId.get(e.id)!.n).toBe(c);
      }
      if (process.env.EDDY_TEST_DEBUG) console.log(`phase 4: threshold 4 published after event 80, first seen by event ${cut} of ${versions.length}`);
    } finally {
      for (const w of workers) await w.kill();
      await supervisor.stop();
      await nc.close();
      if (process.env.EDDY_TEST_DEBUG) for (const w of workers) console.log(w.output());
    }
  });

  it("a savepoint holds the broadcast state once, and a deployment from it restores it in every partition", { timeout: 180_000 }, async () => {
    await using server = await natsServer();
    const nc = await connect(server);
    const supervisor = await startSupervisor(nc, { checkpointIntervalMs: 200 });
    await using worker = startEddy(["worker", "--nats", server.url]);
    const ok = (...args: string[]) => eddyOk([...args, "--nats", server.url], { logs: worker.output });
    const patiently = { timeoutMs: 60_000, logs: worker.output, retryErrors: true };
    const module = resolve(import.meta.dirname, "../..", FIXTURE);
    try {
      await ensureStream(nc, "BC_EVENTS", ["bc.events"]);
      await ensureStream(nc, "BC_RULES", ["bc.rules"]);
      await ensureStream(nc, "BC_OUT", ["bc.out"]);
      const outputs = async (): Promise<ScoreOutput[]> => (await readAll(nc, "BC_OUT", "bc.out")).map((m) => JSON.parse(decoder.decode(m.data)) as ScoreOutput);
      const send = (ids: number[]) => publishAll(nc, ids.map((id) => ({ subject: "bc.events", data: JSON.stringify({ id, user: `u${id % 7}`, value: id }) })));
      await deployModule(nc, module);
      await publishAll(nc, [{ subject: "bc.rules", data: JSON.stringify({ version: 7, limit: 30 }) }]);
      await waitFor("threshold 7 applied everywhere", async () => ((await outputs()).filter((o) => o.kind === "applied").length === PARTITIONS ? true : undefined), patiently);

      const stopped = JSON.parse(await ok("stop", "bcast", "--savepoint", "--json")) as { savepoint: string };
      const saved = await readSavepoint(nc, "bcast", stopped.savepoint);
      const score = saved.exports.get("score")!;
      expect(score.map((e) => e.broadcast?.map(([k, v]) => [k, decodeValue(v)]))).toEqual([[[broadcastKey("threshold", "current"), { version: 7, limit: 30 }]], undefined, undefined, undefined]);
      await waitFor("the worker to stop the job", async () => worker.output().includes("job bcast undeployed"), patiently);

      await send([1, 2, 3, 40, 50, 60, 70, 80]);
      await deployModule(nc, module, { fromSavepoint: stopped.savepoint });
      const events = await waitFor("the events' outputs", async () => {
        const es = (await outputs()).filter((o): o is Extract<ScoreOutput, { kind: "event" }> => o.kind === "event");
        return es.length === 8 ? es : undefined;
      }, patiently);
      expect(events.map((e) => [e.id, e.version, e.over]).sort((a, b) => (a[0] as number) - (b[0] as number))).toEqual([
        [1, 7, false], [2, 7, false], [3, 7, false], [40, 7, true], [50, 7, true], [60, 7, true], [70, 7, true], [80, 7, true],
      ]);
      // Restored, not applied again.
      expect((await outputs()).filter((o) => o.kind === "applied")).toHaveLength(PARTITIONS);

      // `eddy state get --broadcast`: live from partition 0, or committed from KV.
      for (const flags of [[], ["--committed"]]) {
        expect(JSON.parse(await ok("state", "get", "bcast", "score", "threshold", "current", "--broadcast", "--json", ...flags))).toEqual({ found: true, value: { version: 7, limit: 30 } });
      }
      const missing = await runEddy(["state", "get", "bcast", "score", "threshold", "nope", "--broadcast", "--nats", server.url]);
      expect([missing.code, missing.stderr.trim()]).toEqual([1, "eddy: bcast/score: no entry \"nope\" in broadcast state threshold"]);
      const undeclared = await runEddy(["state", "get", "bcast", "score", "rules", "x", "--broadcast", "--nats", server.url]);
      expect([undeclared.code, undeclared.stderr.trim()]).toEqual([1, expect.stringMatching(/^eddy: .*score declares no broadcast state "rules" \(it declares: threshold\)$/)]);
      for (const flags of [[], ["--committed"]]) {
        const lines = (await ok("state", "scan", "bcast", "score", "--broadcast", "--json", ...flags)).trim().split("\n");
        expect(lines.map((l) => JSON.parse(l))).toEqual([{ state: "threshold", key: "current", value: { version: 7, limit: 30 } }]);
      }
      const both = await runEddy(["state", "get", "bcast", "score", "threshold", "current", "--broadcast", "--subkey", "x", "--nats", server.url]);
      expect(both.code).toBe(2);
    } finally {
      await supervisor.stop();
      await nc.close();
    }
  });
});
