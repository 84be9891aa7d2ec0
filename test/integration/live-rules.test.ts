/**
 * Live rules on a real server (issue 14, design note bu): a deployed `liveRules()` job, rules
 * managed with `eddy rules` while events flow — two rules with different keys put, one changed
 * to a new version with an `activeFrom`, one removed — and the alerts of the exactly-once sink
 * equal an expectation computed here by a plain loop per rule that accounts for when each
 * version applies (contract of issue 14: a version made active before any event at or after its
 * `activeFrom` is published applies exactly to the events in [activeFrom, next activeFrom)).
 * The CLI refuses a bad rule with one line and publishes nothing; `eddy status` lists the active
 * rules.
 */
import { describe, expect, it } from "vitest";
import { seededRandom } from "../../functions/seeded-random.ts";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { deployModule } from "../../runtime/deploy/deploy.ts";
import { ensureStream, publishAll, readAll } from "../../runtime/nats/streams.ts";
import { startSupervisor } from "../../runtime/supervisor/supervisor.ts";
import type { Alert, Rule } from "../../runtime/sdk/index.ts";
import { eddyOk, runEddy } from "../support/cli.ts";
import { connect, natsServer } from "../support/nats-server.ts";
import { startEddy } from "../support/processes.ts";
import { waitFor } from "../support/wait.ts";
import type { LoginEvent } from "../fixtures/live-rules.ts";

const decoder = new TextDecoder();
const T0 = 1_767_225_600_000; // 2026-01-01
const PHASE_MS = 100_000;

/** Seeded (mulberry32), so a failure can be replayed. */
const random = seededRandom;

const failures = (n: number, version: number, activeFrom: number): Rule => ({
  id: "failures",
  version,
  key: ["user"],
  pattern: { stages: [{ name: "fail", where: { cel: "event.kind == 'fail'" }, quantifier: { min: n, max: n } }], within: 20_000, skip: { strategy: "skipPastLastEvent" } },
  output: { user: "matched.fail[0].user", first: "matched.fail[0].id", count: "size(matched.fail)" },
  activeFrom,
});
const bigAmount: Rule = {
  id: "big-amount",
  version: 1,
  key: ["device"],
  pattern: { stages: [{ name: "a", where: { cel: "event.amount > 900" } }] },
  output: { device: "matched.a[0].device", id: "matched.a[0].id" },
  activeFrom: T0,
};

/**
 * The events of phase `p`: event times in [T0 + p·PHASE, T0 + (p+1)·PHASE). With `flush`, the
 * last 40 s are events that match nothing, so the watermark (30 s behind) passes every other
 * event of the phase; without, the matcher still buffers the phase's last 30 s of events when
 * the next phase begins.
 */
function phaseEvents(p: number, next: () => number, ids: { n: number }, flush: boolean): LoginEvent[] {
  const out: LoginEvent[] = [];
  const end = T0 + (p + 1) * PHASE_MS;
  for (let ts = T0 + p * PHASE_MS; ts < end - (flush ? 40_000 : 0); ts += 250) {
    const user = `u${Math.floor(next() * 4)}`;
    const device = next() < 0.8 ? `d${Math.floor(next() * 3)}` : undefined;
    out.push({ id: ++ids.n, user, ...(device === undefined ? {} : { device }), kind: next() < 0.35 ? "fail" : "ok", amount: Math.floor(next() * 1000), ts });
  }
  if (flush) for (let ts = end - 40_000; ts < end; ts += 1_000) out.push({ id: ++ids.n, user: "nobody", device: "none", kind: "noop", amount: 0, ts });
  return out;
}

/** "n failures of a user within 20 s", skip past last event, over one version's events: a greedy scan. */
function expectFailures(events: readonly LoginEvent[], n: number, version: number, from: number, to: number): Alert[] {
  const out: Alert[] = [];
  const users = [...new Set(events.map((e) => e.user))];
  for (const user of users) {
    const fails = events.filter((e) => e.user === user && e.kind === "fail" && e.ts >= from && e.ts < to);
    let i = 0;
    while (i + n - 1 < fails.length) {
      const last = fails[i + n - 1]!;
      if (last.ts - fails[i]!.ts < 20_000) {
        out.push({ rule: "failures", version, key: `user=${JSON.stringify([user])}`, at: last.ts, fields: { user, first: fails[i]!.id, count: n } });
        i += n;
      } else i++;
    }
  }
  return out;
}

const order = (a: Alert, b: Alert) => a.rule.localeCompare(b.rule) || a.key.localeCompare(b.key) || a.at - b.at;

describe("live rules on a real server", () => {
  it("puts, changes and removes rules while events flow; alerts equal the expectation, exactly once", { timeout: 180_000 }, async () => {
    await using server = await natsServer();
    const nc = await connect(server);
    const supervisor = await startSupervisor(nc, { checkpointIntervalMs: 300 });
    await using worker = startEddy(["worker", "--nats", server.url]);
    const ok = (...args: string[]) => eddyOk([...args, "--nats", server.url], { logs: worker.output });
    const patiently = { timeoutMs: 60_000, logs: worker.output };
    const dir = mkdtempSync(join(tmpdir(), "eddy-rules-"));
    const file = (name: string, content: unknown) => {
      const path = join(dir, name);
      writeFileSync(path, typeof content === "string" ? content : JSON.stringify(content));
      return path;
    };
    try {
      await ensureStream(nc, "LR_EVENTS", ["lr.events"]);
      await ensureStream(nc, "LR_RULES", ["lr.rules.>"]);
      await ensureStream(nc, "LR_ALERTS", ["lr.alerts"]);
      await deployModule(nc, resolve(import.meta.dirname, "../fixtures/live-rules.ts"));
      const alerts = async () => (await readAll(nc, "LR_ALERTS")).map((m) => JSON.parse(decoder.decode(m.data)) as Alert);
      const active = async () => (JSON.parse(await ok("rules", "ls", "live-rules", "match", "--json")) as { active: Rule[] }).active.map((r) => `${r.id}@${r.version}`).sort();
      const activeIs = (want: string[]) => waitFor(`active rules ${want.join(", ") || "none"}`, async () => (JSON.stringify(await active()) === JSON.stringify(want) ? true : undefined), patiently);
      const next = random(14);
      const ids = { n: 0 };
      const all: LoginEvent[] = [];
      const publish = async (es: LoginEvent[]) => {
        all.push(...es);
        await publishAll(nc, es.map((e) => ({ subject: "lr.events", data: JSON.stringify(e) })));
      };

      // Refused before publishing: a bad CEL condition, a bad output, a bad file; a usage error exits 2.
      const put = (name: string, content: unknown) => runEddy(["rules", "put", "live-rules", "match", file(name, content), "--nats", server.url]);
      const [bad, badOutput, notJson, usage, notRules] = await Promise.all([
        put("bad.json", { ...bigAmount, pattern: { stages: [{ name: "a", where: { cel: "event.amount >" } }] } }),
        put("bad-output.json", { ...bigAmount, output: { x: "nope.y" } }),
        put("x.json", "{"),
        runEddy(["rules", "put", "live-rules", "--nats", server.url]),
        runEddy(["rules", "ls", "live-rules", "events", "--nats", server.url]),
      ]);
      expect([bad.code, bad.stderr.trim().split("\n").length]).toEqual([1, 1]);
      expect(bad.stderr).toMatch(/^eddy: rule big-amount: pattern: .*CEL does not parse/);
      expect([badOutput.code, badOutput.stderr.trim()]).toEqual([1, expect.stringMatching(/^eddy: rule big-amount: output\.x: CEL expression unknown name "nope"/)]);
      expect([notJson.code, notJson.stderr.trim()]).toEqual([1, expect.stringMatching(/^eddy: .*x\.json: not JSON/)]);
      expect(usage.code).toBe(2);
      expect([notRules.code, notRules.stderr.trim()]).toEqual([1, "eddy: live-rules/events is not a function made by liveRules() (it needs functions events-rules and events-keys beside it)"]);
      expect(await readAll(nc, "LR_RULES")).toEqual([]);

      // Phase 0: two rules with different keys.
      await ok("rules", "put", "live-rules", "match", file("failures-1.json", failures(3, 1, T0)));
      await ok("rules", "put", "live-rules", "match", file("big-1.json", bigAmount));
      await activeIs(["big-amount@1", "failures@1"]);
      await publish(phaseEvents(0, next, ids, false));

      // Phase 1: a new version of "failures" from the start of phase 1 on, while the last 30 s of
      // phase 0 wait in the matcher's buffer: the version it replaced must still take them.
      const a1 = T0 + PHASE_MS;
      const stale = await runEddy(["rules", "put", "live-rules", "match", file("failures-stale.json", failures(2, 1, a1)), "--nats", server.url]);
      expect([stale.code, stale.stderr.trim()]).toEqual([1, "eddy: rule failures: version 1 is not above the published 1 (a put must raise the version)"]);
      await ok("rules", "put", "live-rules", "match", file("failures-2.json", failures(2, 2, a1)));
      await activeIs(["big-amount@1", "failures@2"]);
      await publish(phaseEvents(1, next, ids, true));

      // Phase 2: "big-amount" removed once every alert it owes for phases 0 and 1 is out.
      const bigExpected: Alert[] = all.filter((e) => e.device !== undefined && e.amount > 900).map((e) => ({ rule: "big-amount", version: 1, key: `device=${JSON.stringify([e.device])}`, at: e.ts, fields: { device: e.device, id: e.id } }));
      await waitFor("big-amount alerts of phases 0 and 1", async () => ((await alerts()).filter((a) => a.rule === "big-amount").length >= bigExpected.length ? true : undefined), patiently);
      await ok("rules", "rm", "live-rules", "match", "big-amount");
      await activeIs(["failures@2"]);
      await publish(phaseEvents(2, next, ids, true));
      await publish(phaseEvents(3, next, ids, true)); // moves the watermark past phase 2

      const expected = [
        ...expectFailures(all, 3, 1, T0, a1),
        ...expectFailures(all, 2, 2, a1, Infinity).filter((a) => a.at < T0 + 3 * PHASE_MS),
        ...bigExpected,
      ].sort(order);
      expect(expected.filter((a) => a.rule === "failures" && a.version === 1).length).toBeGreaterThan(5);
      expect(expected.filter((a) => a.rule === "failures" && a.version === 1 && a.at >= a1 - 25_000).length).toBeGreaterThan(0); // fed after version 2 took effect
      expect(expected.filter((a) => a.version === 2).length).toBeGreaterThan(5);
      expect(bigExpected.length).toBeGreaterThan(5);
      await waitFor("every expected alert", async () => ((await alerts()).filter((a) => a.at < T0 + 3 * PHASE_MS).length >= expected.length ? true : undefined), patiently);
      await new Promise((r) => setTimeout(r, 1_500)); // a few checkpoints more: nothing else may come
      const got = (await alerts()).filter((a) => a.at < T0 + 3 * PHASE_MS).sort(order);
      expect(got).toEqual(expected);

      // The CLI shows the rule set; eddy status the active rules.
      const listed = JSON.parse(await ok("rules", "ls", "live-rules", "match", "--json")) as { published: Rule[]; removed: string[]; active: Rule[] };
      expect([listed.published.map((r) => `${r.id}@${r.version}`), listed.removed, listed.active]).toEqual([["failures@2"], ["big-amount"], [failures(2, 2, a1)]]);
      expect(JSON.parse(await ok("rules", "get", "live-rules", "match", "failures", "--json"))).toEqual({ published: failures(2, 2, a1), removed: false, active: failures(2, 2, a1) });
      expect(await ok("status", "live-rules")).toContain("rules of match: failures@2");
    } finally {
      await supervisor.stop();
      await nc.close();
    }
  });
});
