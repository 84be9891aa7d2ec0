/**
 * `eddy rules ls` and `eddy rules get` call a rule active only once a committed checkpoint holds
 * it (found by the rules chaos run, test/chaos/rules-chaos.ts). The contract of live rules —
 * a version active in `eddy rules ls` before any event at or after its `activeFrom` is published
 * applies exactly from `activeFrom` — does not hold for a change that is applied in partition 0
 * but not committed: a worker kill then restores the checkpoint before it, and the replay reads
 * the change and the events published after it in one epoch, so events at or after `activeFrom`
 * can be fed to the previous version before the barrier applies the new one. Here every
 * checkpoint is aborted (a 1 ms checkpoint timeout), so the barriers apply the rule in every
 * partition but nothing ever commits it.
 */
import { describe, expect, it } from "vitest";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { Kvm } from "@nats-io/kv";
import { JOBS_BUCKET, latestKey } from "../../runtime/core/protocol.ts";
import { deployModule } from "../../runtime/deploy/deploy.ts";
import { ensureStream } from "../../runtime/nats/streams.ts";
import { stateClient } from "../../runtime/nats/state-client.ts";
import { startSupervisor } from "../../runtime/supervisor/supervisor.ts";
import type { Rule } from "../../runtime/sdk/index.ts";
import { eddyOk } from "../support/cli.ts";
import { connect, natsServer } from "../support/nats-server.ts";
import { startEddy } from "../support/processes.ts";
import { waitFor } from "../support/wait.ts";

const rule: Rule = { id: "fails", version: 1, key: ["user"], pattern: { stages: [{ name: "f", where: { cel: "event.kind == 'fail'" } }] } };

describe("eddy rules ls", () => {
  it("does not list a rule as active that partition 0 applied at a barrier but no checkpoint committed", { timeout: 120_000 }, async () => {
    await using server = await natsServer();
    const nc = await connect(server);
    // Every checkpoint times out before its acks arrive, and none of that fails the job.
    const supervisor = await startSupervisor(nc, { checkpointIntervalMs: 200, checkpointTimeoutMs: 1, maxCheckpointTimeoutMs: 1, maxConsecutiveFailures: 1_000_000 });
    await using worker = startEddy(["worker", "--nats", server.url]);
    const ok = (...args: string[]) => eddyOk([...args, "--nats", server.url], { logs: worker.output });
    try {
      await ensureStream(nc, "LR_EVENTS", ["lr.events"]);
      await ensureStream(nc, "LR_RULES", ["lr.rules.>"]);
      await ensureStream(nc, "LR_ALERTS", ["lr.alerts"]);
      await deployModule(nc, resolve(import.meta.dirname, "../fixtures/live-rules.ts"));
      const file = join(mkdtempSync(join(tmpdir(), "eddy-rules-ls-")), "fails.json");
      writeFileSync(file, JSON.stringify(rule));
      await ok("rules", "put", "live-rules", "match", file);

      // The barriers still come: partition 0 of the matcher applies the rule (its live state).
      const client = await stateClient(nc, "live-rules", "match", { timeoutMs: 3_000 });
      const live = async () => {
        const out: unknown[] = [];
        for await (const e of client.scan({ state: "rules", broadcast: true, consistency: "live" })) out.push(e.value);
        return out;
      };
      await waitFor("the rule applied live in partition 0", async () => ((await live().catch(() => [])).length === 1 ? true : undefined), { timeoutMs: 60_000, logs: worker.output });

      const jobs = await new Kvm(nc).open(JOBS_BUCKET);
      expect(await jobs.get(latestKey("live-rules"))).toBeNull(); // nothing ever committed
      const listed = JSON.parse(await ok("rules", "ls", "live-rules", "match", "--json")) as { published: Rule[]; active: Rule[] };
      expect([listed.published, listed.active]).toEqual([[rule], []]);
      expect(JSON.parse(await ok("rules", "get", "live-rules", "match", "fails", "--json"))).toEqual({ published: rule, removed: false, active: null });
    } finally {
      await supervisor.stop();
      await nc.close();
    }
  });
});
