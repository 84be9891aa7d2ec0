/**
 * The rule-detection scenario end to end (issue 14 item 4): the pipeline of functions/rules/
 * deployed on a real nats-server, the three scenario rules put with `eddy rules put` before any
 * event, then seeded security events — planted attacks, near misses, noise and malformed
 * messages — published while a worker is SIGKILLed and replaced. The alerts of the exactly-once
 * sink equal functions/rules/expected.ts, computed by plain loops without the NFA or CEL, and
 * each rule fires exactly as often as the generator planted it.
 */
import { describe, expect, it } from "vitest";
import { resolve } from "node:path";
import { deployModule } from "../../runtime/deploy/deploy.ts";
import { ensureStream, publishAll, readAll } from "../../runtime/nats/streams.ts";
import { startSupervisor } from "../../runtime/supervisor/supervisor.ts";
import type { Alert, Rule } from "../../runtime/sdk/index.ts";
import { generateSecurityEvents, type SecurityEvent } from "../../functions/rules/events.ts";
import { alertOrder, expectedAlerts, versionWindows } from "../../functions/rules/expected.ts";
import { SCENARIO_SPECS } from "../../functions/rules/rules.ts";
import { eddyOk } from "../support/cli.ts";
import { connect, natsServer } from "../support/nats-server.ts";
import { startEddy, type EddyProcess } from "../support/processes.ts";
import { waitFor } from "../support/wait.ts";

const ROOT = resolve(import.meta.dirname, "../..");
const decoder = new TextDecoder();

describe("the rule-detection scenario", () => {
  it("raises exactly the expected alerts of the three scenario rules, across a worker kill", async () => {
    await using server = await natsServer();
    const nc = await connect(server);
    const supervisor = await startSupervisor(nc, { checkpointIntervalMs: 300, checkpointTimeoutMs: 10_000 });
    const workers: EddyProcess[] = [];
    const logs = () => workers.map((w) => w.output()).join("\n---\n");
    const patiently = { timeoutMs: 90_000, logs, retryErrors: true };
    const ok = (...args: string[]) => eddyOk([...args, "--nats", server.url], { logs });
    try {
      await ensureStream(nc, "SECURITY", ["security.>"]);
      await ensureStream(nc, "RULES", ["rules.scenario.>"]);
      await ensureStream(nc, "RULES_ALERTS", ["results.rules.alerts"]);
      await deployModule(nc, resolve(ROOT, "functions/rules/pipeline.ts"));
      workers.push(startEddy(["worker", "--nats", server.url]));

      for (const file of ["vpn-brute-force", "account-takeover", "ip-login-flood"]) await ok("rules", "put", "rules", "rules", resolve(ROOT, `functions/rules/${file}.json`));
      const active = async () => (JSON.parse(await ok("rules", "ls", "rules", "rules", "--json")) as { active: Rule[] }).active.map((r) => r.id).sort();
      await waitFor("the three rules active", async () => (JSON.stringify(await active()) === JSON.stringify(["account-takeover", "ip-login-flood", "vpn-brute-force"]) ? true : undefined), patiently);

      const run = generateSecurityEvents({ seed: 21, events: 3_000, attacks: 3 });
      const events: SecurityEvent[] = run.messages.flatMap((m) => (m.event === undefined ? [] : [m.event]));
      // One last event far later moves the watermark past every other; it matches nothing.
      const flush: SecurityEvent = { type: "login", user: "flush", device: "flush", ip: "10.255.255.255", vpn: false, ok: true, score: 0, ts: run.span[1] + 7_200_000 };
      const messages = [...run.messages.map((m) => m.payload), JSON.stringify(flush)];
      const half = Math.floor(messages.length / 2);
      await publishAll(nc, messages.slice(0, half).map((data) => ({ subject: "security.events", data })));
      await workers[0]!.kill();
      workers.push(startEddy(["worker", "--nats", server.url]));
      await publishAll(nc, messages.slice(half).map((data) => ({ subject: "security.events", data })));

      const expected = expectedAlerts([...events, flush], versionWindows(SCENARIO_SPECS)).map(({ rule, version, key, at, fields }) => ({ rule, version, key, at, fields }));
      const planted = Object.values(run.planted).reduce((a, b) => a + b, 0);
      expect(expected).toHaveLength(planted);
      for (const [rule, n] of Object.entries(run.planted)) expect(expected.filter((a) => a.rule === rule)).toHaveLength(n);

      const alerts = async () => (await readAll(nc, "RULES_ALERTS")).map((m) => JSON.parse(decoder.decode(m.data)) as Alert);
      await waitFor("every expected alert", async () => ((await alerts()).length >= expected.length ? true : undefined), patiently);
      await new Promise((r) => setTimeout(r, 1_500)); // a few checkpoints more: nothing else may come
      const got = (await alerts()).map(({ rule, version, key, at, fields }) => ({ rule, version, key, at, fields })).sort(alertOrder);
      expect(got).toEqual([...expected].sort(alertOrder));
    } finally {
      for (const w of workers) await w.kill();
      await supervisor.stop();
      await nc.close();
    }
  }, 240_000);
});
