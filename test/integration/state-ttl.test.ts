/**
 * State TTL end to end, against a real nats-server, a supervisor and worker processes running
 * the deployed rules pipeline (test/fixtures/rules-ttl.ts: per-user rules kept 90 days of event
 * time, map and list state). Event-time TTL makes the run deterministic: expiry follows the
 * watermark, which the input decides, so the same entries expire at the same points after a
 * crash as without one.
 *
 * Expired entries are neither returned — by the function, by live and by committed reads — nor
 * kept: they are deleted from the KV bucket and left out of a savepoint. A worker is SIGKILLed
 * in between; after the restore, entries written before the crash expire exactly when their
 * stored stamps say (a restore that lost or reset the stamps would keep them longer). Committed
 * reads are also checked on their own, against values put into a bucket by hand: each is judged
 * by the TTL stored with it, whether cleanup has removed it yet or not.
 */
import { describe, expect, it } from "vitest";
import { resolve } from "node:path";
import { Kvm, type KV } from "@nats-io/kv";
import { deployModule } from "../../runtime/deploy/deploy.ts";
import { mapEntryKey, parseKvKey, stateKey, watermarkKey } from "../../runtime/core/kv-keys.ts";
import { stateBucket } from "../../runtime/core/naming.ts";
import { resolveTtl, unwrapStored, wrapStored } from "../../runtime/core/state-ttl.ts";
import { decodeValue, encodeValue } from "../../runtime/core/wire.ts";
import { getCommitted, scanCommitted } from "../../runtime/nats/committed-state.ts";
import { ensureStream, publishAll, readAll } from "../../runtime/nats/streams.ts";
import { readSavepoint } from "../../runtime/nats/savepoints.ts";
import { stateClient } from "../../runtime/nats/state-client.ts";
import { startSupervisor } from "../../runtime/supervisor/supervisor.ts";
import { connect, natsServer } from "../support/nats-server.ts";
import { eddyOk } from "../support/cli.ts";
import { startEddy, type EddyProcess } from "../support/processes.ts";
import { waitFor } from "../support/wait.ts";
import type { RuleEvent } from "../fixtures/rules-ttl.ts";

const ROOT = resolve(import.meta.dirname, "../..");
const DAY = 86_400_000;
const decoder = new TextDecoder();

/** The stored value of a KV key, or undefined when it is absent or deleted. */
async function stored(kv: KV, key: string): Promise<unknown> {
  const e = await kv.get(key);
  return e === null || e.operation !== "PUT" || e.length === 0 ? undefined : unwrapStored(decodeValue(e.value)).value;
}

describe("state TTL", () => {
  it("never returns nor keeps expired entries: function, live and committed reads, KV and savepoints, across a worker crash", async () => {
    await using server = await natsServer();
    const nc = await connect(server);
    const supervisor = await startSupervisor(nc, { checkpointIntervalMs: 200, checkpointTimeoutMs: 5000 });
    const workers: EddyProcess[] = [];
    const logs = () => workers.map((w) => w.output()).join("\n---\n");
    const patiently = { timeoutMs: 60_000, logs, retryErrors: true };
    const send = (events: RuleEvent[]) => publishAll(nc, events.map((e) => ({ subject: "rules.in", data: JSON.stringify(e) })));
    const outputs = async () => (await readAll(nc, "RULES_OUT")).map((m) => JSON.parse(decoder.decode(m.data)) as { user: string; at: number; active: string[] });
    try {
      await ensureStream(nc, "RULES_IN", ["rules.in"]);
      await ensureStream(nc, "RULES_OUT", ["rules.out"]);
      await deployModule(nc, resolve(ROOT, "test/fixtures/rules-ttl.ts"));
      workers.push(startEddy(["worker", "--nats", server.url]));
      const rules = await stateClient(nc, "rules", "rules", { timeoutMs: 30_000 });
      const kv = await new Kvm(nc).open(stateBucket("rules", "rules"));
      const entry = (user: string, rule: string) => mapEntryKey(rules.partitionOf(user), "rules", user, rule);
      const recentKey = (user: string) => stateKey(rules.partitionOf(user), "recent", user);

      // Rules expire 90 days after they were written. zed's event moves the watermark to 105 days.
      await send([
        { user: "ann", rule: "r1", at: 0 },
        { user: "bob", rule: "b1", at: 10 * DAY },
        { user: "ann", rule: "r2", at: 60 * DAY },
        { user: "ann", rule: "r3", at: 100 * DAY },
        { user: "zed", at: 105 * DAY },
      ]);
      await waitFor("five outputs", async () => (await outputs()).length === 5, patiently);
      // The watermark decides expiry, not the record's time: ann's event at 100 days is processed
      // under the watermark of 60 days (that of the record before it), so r1 is still there.
      expect((await outputs()).map((o) => [o.user, o.active])).toEqual([
        ["ann", ["r1"]],
        ["bob", ["b1"]],
        ["ann", ["r1", "r2"]],
        ["ann", ["r1", "r2", "r3"]],
        ["zed", []],
      ]);

      // At a watermark of 105 days, ann's r1 and all of bob's state have expired: live reads do
      // not return them, and once cleanup and a checkpoint ran, neither do committed reads nor KV.
      await waitFor("expired entries gone from live reads", async () => (await rules.get("rules", "bob")) === undefined, patiently);
      expect(await rules.get("rules", "ann")).toEqual({ r2: 60 * DAY, r3: 100 * DAY });
      expect(await rules.get("recent", "ann")).toEqual(["r2", "r3"]);
      expect(await rules.get("recent", "bob")).toBeUndefined();
      const live: string[] = [];
      for await (const e of rules.scan({ state: "rules" })) live.push(e.key);
      expect(live).toEqual(["ann"]);
      await waitFor("expired entries deleted from KV", async () => (await stored(kv, entry("ann", "r1"))) === undefined && (await stored(kv, entry("bob", "b1"))) === undefined, patiently);
      await waitFor("the list without its expired element in KV", async () => JSON.stringify(await stored(kv, recentKey("ann"))) === JSON.stringify(["r2", "r3"]), patiently);
      expect(await stored(kv, recentKey("bob"))).toBeUndefined();
      expect(await rules.get("rules", "ann", { consistency: "committed" })).toEqual({ r2: 60 * DAY, r3: 100 * DAY });
      expect(await rules.get("rules", "bob", { consistency: "committed" })).toBeUndefined();
      expect(await rules.get("recent", "ann", { consistency: "committed" })).toEqual(["r2", "r3"]);

      // A crash, and another worker restores the job from the last checkpoint.
      await workers[0]!.kill();
      workers.push(startEddy(["worker", "--nats", server.url]));

      // At 151 days r2 (written at 60) has expired, r3 (written at 100) has not: the stamps
      // written before the crash decide, not the time of the restore.
      await send([
        { user: "zed", at: 151 * DAY },
        { user: "ann", at: 152 * DAY },
        { user: "bob", at: 152 * DAY },
      ]);
      await waitFor("eight outputs", async () => (await outputs()).length >= 8, patiently);
      expect((await outputs()).slice(5).map((o) => [o.user, o.active])).toEqual([
        ["zed", []],
        ["ann", ["r3"]],
        ["bob", []],
      ]);
      expect(await rules.get("rules", "ann")).toEqual({ r3: 100 * DAY });
      expect(await rules.get("rules", "ann", { subkey: "r2" })).toBeUndefined();
      expect(await rules.get("recent", "ann")).toEqual(["r3"]);
      await waitFor("r2 deleted from KV after the restore", async () => (await stored(kv, entry("ann", "r2"))) === undefined, patiently);
      await waitFor("the committed list after the restore", async () => JSON.stringify(await rules.get("recent", "ann", { consistency: "committed" })) === JSON.stringify(["r3"]), patiently);
      expect(await rules.get("rules", "ann", { consistency: "committed" })).toEqual({ r3: 100 * DAY });
      expect(await stored(kv, entry("ann", "r3"))).toBe(100 * DAY);

      // A savepoint holds only what has not expired, with the stamps that make it expire on time.
      const sp = JSON.parse(await eddyOk(["savepoint", "rules", "--json", "--nats", server.url], { logs })) as { savepoint: string };
      const { exports } = await readSavepoint(nc, "rules", sp.savepoint, new Set(["rules"]));
      const saved: Array<[string, string, string | undefined, unknown, unknown]> = [];
      for (const exp of exports.get("rules") ?? []) {
        for (const [key, value] of exp.entries) {
          const parsed = parseKvKey(key);
          if (parsed?.kind !== "state") continue;
          const { value: v, ttl } = unwrapStored(decodeValue(value));
          saved.push([parsed.state, parsed.key, parsed.subkey, v, ttl?.at]);
        }
      }
      expect(saved.sort()).toEqual([
        ["recent", "ann", undefined, ["r3"], [100 * DAY]],
        ["rules", "ann", "r3", 100 * DAY, 100 * DAY],
      ]);
    } finally {
      for (const w of workers) await w.kill();
      await supervisor.stop();
      await nc.close();
    }
  }, 180_000);

  it("committed reads judge each stored value by its envelope: the committed watermark for event time, the clock for processing time", async () => {
    await using server = await natsServer();
    const nc = await connect(server);
    try {
      const kv = await new Kvm(nc).create("ttl_committed_reads");
      const event = resolveTtl({ ms: 10 * DAY, time: "event" });
      const processing = resolveTtl({ ms: 60_000, time: "processing" });
      await kv.put(watermarkKey(0), encodeValue({ out: 20 * DAY, op: 20 * DAY, idle: false, ended: false }));
      await kv.put(stateKey(0, "rule", "old"), encodeValue(wrapStored("x", 10 * DAY, event))); // expired at 20 days
      await kv.put(stateKey(0, "rule", "new"), encodeValue(wrapStored("y", 10 * DAY + 1, event)));
      await kv.put(stateKey(0, "rule", "plain"), encodeValue("z"));
      await kv.put(mapEntryKey(0, "seen", "u", "gone"), encodeValue(wrapStored(1, 0, event)));
      await kv.put(mapEntryKey(0, "seen", "u", "kept"), encodeValue(wrapStored(2, 15 * DAY, event)));
      await kv.put(stateKey(0, "recent", "u"), encodeValue(wrapStored(["a", "b"], [0, 15 * DAY], event)));
      await kv.put(stateKey(0, "session", "stale"), encodeValue(wrapStored(1, Date.now() - 120_000, processing)));
      await kv.put(stateKey(0, "session", "fresh"), encodeValue(wrapStored(2, Date.now(), processing)));

      expect(await getCommitted(kv, 0, "rule", "old")).toEqual({ found: false });
      expect(await getCommitted(kv, 0, "rule", "new")).toMatchObject({ found: true, value: "y" });
      expect(await getCommitted(kv, 0, "rule", "plain")).toMatchObject({ found: true, value: "z" });
      expect(await getCommitted(kv, 0, "seen", "u")).toEqual({ found: true, value: { kept: 2 } });
      expect(await getCommitted(kv, 0, "seen", "u", "gone")).toEqual({ found: false });
      expect(await getCommitted(kv, 0, "recent", "u")).toMatchObject({ found: true, value: ["b"] });
      expect(await getCommitted(kv, 0, "session", "stale")).toEqual({ found: false });
      expect(await getCommitted(kv, 0, "session", "fresh")).toMatchObject({ found: true, value: 2 });
      const scanned = (await scanCommitted(kv, 0, {})).entries.map((e) => [e.state, e.key, e.value]);
      expect(scanned).toEqual([
        ["recent", "u", ["b"]],
        ["rule", "new", "y"],
        ["rule", "plain", "z"],
        ["seen", "u", { kept: 2 }],
        ["session", "fresh", 2],
      ]);
    } finally {
      await nc.close();
    }
  }, 60_000);
});
