/**
 * A reduced rules chaos run as part of the test suite (issue 14 item 4c): the rule-detection job
 * of functions/rules/ with its rules changed while seeded events flow — a new version, a removal,
 * a removed rule put again — and a worker SIGKILLed right after a change is published (before the
 * barrier that applies it) and another right after a change was applied. The alerts of the
 * exactly-once sink equal the expectation over the rule history, exactly once. Longer runs:
 * `npm run chaos -- --rules --seed <n>` (test/chaos/rules-chaos.ts); results in docs/reliability.md.
 */
import { describe, expect, it } from "vitest";
import { runRulesChaos } from "../chaos/rules-chaos.ts";

describe("rules chaos", () => {
  it("raises every expected alert exactly once while rules change and workers are killed around the changes", async () => {
    const lines: string[] = [];
    // Seed 28: put account-takeover@2 (a worker killed before it applies), remove ip-login-flood
    // (one killed right after it applied), put ip-login-flood@2 again; alerts of five rule
    // versions are expected.
    const result = await runRulesChaos({ seed: 28, phases: 4, eventsPerPhase: 300, kills: 2, timeoutSeconds: 170, log: (l) => lines.push(l) });
    expect(result, lines.join("\n")).toMatchObject({
      changes: ["put account-takeover@2", "remove ip-login-flood", "put ip-login-flood@2"],
      workerKills: 2,
      kills: { "before-apply": 1, "after-apply": 1, "mid-phase": 0 },
      missing: 0,
      duplicated: 0,
      exact: true,
    });
    expect(Object.keys(result.expectedByVersion).sort()).toEqual(["account-takeover@1", "account-takeover@2", "ip-login-flood@1", "ip-login-flood@2", "vpn-brute-force@1"]);
    expect(result.actual).toBe(result.expected);
  }, 200_000);
});
