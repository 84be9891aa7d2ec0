/**
 * The scenario's three detection rules as data: the `Rule` JSON an operator publishes on the rule
 * stream (`eddy rules put <job> <fn> <file.json>`; the .json files next to this module are these
 * values, checked by test/unit/functions/rules-scenario.test.ts).
 *
 * Every rule uses the skip strategy `skipPastLastEvent` and only relaxed ("skip till next
 * match") steps, so that each event that can start a match determines at most one candidate
 * match — the first fitting events after it — and one attack raises one alert. That is what
 * lets expected.ts state the alerts with plain loops instead of a matcher.
 *
 * - vpn-brute-force (key: user): more than 5 failed VPN logins within an hour, anomaly score
 *   above 50, from a device never seen with the user. `seen()` remembers every event's device
 *   (the pipeline's `remember: ["device"]`), so only the first failed login of the burst comes
 *   from an unseen device; the others must use the same device as that first one.
 * - account-takeover (key: user): a successful login, then a password change, then a transfer
 *   of at least 10 000, within 10 minutes.
 * - ip-login-flood (key: ip): more than 20 failed logins from one IP in a sliding hour.
 */
import type { Rule } from "../../runtime/core/rules.ts";
import { FLOOD_FAILURES, HOUR_MS, LARGE_TRANSFER, TAKEOVER_WITHIN_MS, VPN_FAILURES, VPN_MIN_SCORE } from "./events.ts";

/** Fields the matcher remembers per rule key for `seen(field, value)` (liveRules' `remember`). */
export const REMEMBER = ["device"] as const;

/**
 * A scenario rule by its parameters. `toRule` makes the published `Rule` of it, and expected.ts
 * computes its alerts from the same parameters with plain loops, never reading the CEL.
 */
export type RuleSpec = {
  readonly id: string;
  readonly version: number;
  readonly activeFrom?: number;
} & (
  | { readonly kind: "vpn-brute-force"; /** more than this many failed logins */ readonly failures: number; /** score above this */ readonly minScore: number; readonly withinMs: number }
  | { readonly kind: "account-takeover"; /** transfer of at least this */ readonly minAmount: number; readonly withinMs: number }
  | { readonly kind: "login-flood"; /** more than this many failed logins */ readonly failures: number; readonly withinMs: number; readonly by: "ip" | "user" }
);

export type VpnBruteForceSpec = Extract<RuleSpec, { kind: "vpn-brute-force" }>;
export type AccountTakeoverSpec = Extract<RuleSpec, { kind: "account-takeover" }>;
export type LoginFloodSpec = Extract<RuleSpec, { kind: "login-flood" }>;

export const vpnBruteForceSpec: VpnBruteForceSpec = { kind: "vpn-brute-force", id: "vpn-brute-force", version: 1, failures: VPN_FAILURES, minScore: VPN_MIN_SCORE, withinMs: HOUR_MS };
export const accountTakeoverSpec: AccountTakeoverSpec = { kind: "account-takeover", id: "account-takeover", version: 1, minAmount: LARGE_TRANSFER, withinMs: TAKEOVER_WITHIN_MS };
export const ipLoginFloodSpec: LoginFloodSpec = { kind: "login-flood", id: "ip-login-flood", version: 1, failures: FLOOD_FAILURES, withinMs: HOUR_MS, by: "ip" };
export const SCENARIO_SPECS: readonly RuleSpec[] = [vpnBruteForceSpec, accountTakeoverSpec, ipLoginFloodSpec];

/** The `Rule` (JSON data with CEL conditions) that `spec` stands for. */
export function toRule(spec: RuleSpec): Rule {
  const common = { id: spec.id, version: spec.version, ...(spec.activeFrom === undefined ? {} : { activeFrom: spec.activeFrom }) };
  switch (spec.kind) {
    case "vpn-brute-force": {
      const failedVpn = `event.type == 'login' && event.vpn && !event.ok && event.score > ${spec.minScore}`;
      return {
        ...common,
        key: ["user"],
        pattern: {
          stages: [
            // The burst's first attempt comes from a device the user never had before …
            { name: "first", where: { cel: `${failedVpn} && !seen('device', event.device)` } },
            // … and the others from that device (which `seen` now knows).
            { name: "more", contiguity: "relaxed", where: { cel: `${failedVpn} && event.device == matched.first[0].device` }, quantifier: { min: spec.failures, max: spec.failures } },
          ],
          within: spec.withinMs,
          skip: { strategy: "skipPastLastEvent" },
        },
        output: { user: "matched.first[0].user", device: "matched.first[0].device", ip: "matched.first[0].ip", firstAt: "matched.first[0].ts" },
      };
    }
    case "account-takeover":
      return {
        ...common,
        key: ["user"],
        pattern: {
          stages: [
            { name: "login", where: { cel: "event.type == 'login' && event.ok" } },
            { name: "password", contiguity: "relaxed", where: { cel: "event.type == 'password_change'" } },
            { name: "transfer", contiguity: "relaxed", where: { cel: `event.type == 'transfer' && event.amount >= ${spec.minAmount}` } },
          ],
          within: spec.withinMs,
          skip: { strategy: "skipPastLastEvent" },
        },
        output: { user: "matched.login[0].user", device: "matched.login[0].device", amount: "matched.transfer[0].amount", loginAt: "matched.login[0].ts" },
      };
    case "login-flood":
      return {
        ...common,
        key: [spec.by],
        pattern: {
          stages: [{ name: "fail", where: { cel: "event.type == 'login' && !event.ok" }, quantifier: { min: spec.failures + 1, max: spec.failures + 1 } }],
          within: spec.withinMs,
          skip: { strategy: "skipPastLastEvent" },
        },
        output: { by: `matched.fail[0].${spec.by}`, firstAt: "matched.fail[0].ts" },
      };
  }
}

export const vpnBruteForce: Rule = toRule(vpnBruteForceSpec);
export const accountTakeover: Rule = toRule(accountTakeoverSpec);
export const ipLoginFlood: Rule = toRule(ipLoginFloodSpec);
/** The three rules as first published. */
export const SCENARIO_RULES: readonly Rule[] = SCENARIO_SPECS.map(toRule);

/**
 * `n` distinct rule specs for the benchmark: the three scenario rules in turn with varied
 * thresholds (every third flood rule counts per user rather than per IP), ids `bench-<i>`.
 */
export function benchmarkSpecs(n: number): RuleSpec[] {
  const specs: RuleSpec[] = [];
  for (let i = 0; i < n; i++) {
    const v = Math.floor(i / 3);
    const id = `bench-${i}`;
    if (i % 3 === 0) specs.push({ ...vpnBruteForceSpec, id, failures: 2 + (v % 5), minScore: 30 + (v % 30) });
    else if (i % 3 === 1) specs.push({ ...accountTakeoverSpec, id, minAmount: 1_000 * (1 + (v % 20)) });
    else specs.push({ ...ipLoginFloodSpec, id, failures: 4 + (v % 20), by: v % 2 === 0 ? "ip" : "user" });
  }
  return specs;
}
