/**
 * Security events for the rule-detection scenario (issue 14), and a seeded generator of them.
 *
 * The scenario's three rules (rules.ts) look for account attacks in a stream of logins, password
 * changes and transfers. The generator is deterministic for a seed and plants a known number of
 * attacks that each rule must report exactly once, plus near misses that look like an attack
 * but break one condition of its rule (too few attempts, a known device, a low anomaly score, too
 * slow, a small transfer …), over background noise that by construction fires no rule:
 * - noise failed VPN logins never have an anomaly score above 50 (rule vpn-brute-force);
 * - noise transfers are below the large-transfer amount (rule account-takeover);
 * - no IP gets more than `FLOOD_FAILURES` noise failed logins in total (rule ip-login-flood).
 * Planted attacks run on their own users and IPs, so noise cannot complete or break them.
 *
 * Event times are unique (a tie would be ordered by arrival, which differs between partitions of
 * a pipeline) and arrive out of order by less than `maxDisorderMs`: the publish order is event
 * time plus a random delay. No event is late for a watermark that allows `maxDisorderMs` of
 * out-of-orderness. A small share of messages is malformed, to exercise dead-lettering.
 */
import { seededRandom } from "../seeded-random.ts";

export interface Login {
  readonly type: "login";
  readonly user: string;
  readonly device: string;
  readonly ip: string;
  /** Came in through the corporate VPN. */
  readonly vpn: boolean;
  readonly ok: boolean;
  /** Anomaly score of the login, 0–100, from an upstream model. */
  readonly score: number;
  /** Event time, epoch ms. */
  readonly ts: number;
}

export interface PasswordChange {
  readonly type: "password_change";
  readonly user: string;
  readonly ip: string;
  readonly ts: number;
}

export interface Transfer {
  readonly type: "transfer";
  readonly user: string;
  readonly ip: string;
  readonly amount: number;
  readonly ts: number;
}

export type SecurityEvent = Login | PasswordChange | Transfer;

/** A message as published into the source stream: a valid event as JSON, or garbage. */
export interface GeneratedMessage {
  readonly payload: string;
  /** The event, when the payload is a valid one. */
  readonly event?: SecurityEvent;
  /** Why the payload is malformed, when it is. */
  readonly malformed?: "not-json" | "missing-type" | "bad-ts" | "unknown-type";
}

/** Rule thresholds the generator plants around (rules.ts builds the rules from the same numbers). */
export const VPN_FAILURES = 5; // "more than 5" failed VPN logins …
export const VPN_MIN_SCORE = 50; // … with an anomaly score above 50 …
export const HOUR_MS = 3_600_000; // … within an hour
export const TAKEOVER_WITHIN_MS = 600_000; // login → password change → transfer within 10 minutes
export const LARGE_TRANSFER = 10_000; // a transfer of at least this much
export const FLOOD_FAILURES = 20; // "more than 20" failed logins from one IP in a sliding hour

export interface SecurityGeneratorOptions {
  readonly seed: number;
  /** Noise events (planted attacks and malformed messages come on top). */
  readonly events: number;
  /** Distinct noise users (default 1 000); hot users are far more frequent than the tail. */
  readonly users?: number;
  /** Event time of the first noise event (default 2026-01-01T00:00:00Z). */
  readonly startTs?: number;
  /** Mean event-time step between noise events (default 200 ms). */
  readonly stepMs?: number;
  /** Publish delay after event time is below this (default 2 000 ms). */
  readonly maxDisorderMs?: number;
  /** Malformed messages per noise event (default 0.005). */
  readonly malformedShare?: number;
  /** Planted attacks per rule (default 5 each), and as many near misses per kind. */
  readonly attacks?: number;
}

/** What a generated run contains besides the messages: how often each rule must fire. */
export interface GeneratedRun {
  /** In publish order. */
  readonly messages: GeneratedMessage[];
  /** Planted attacks per rule id (rules.ts); each must raise exactly one alert. */
  readonly planted: Readonly<Record<"vpn-brute-force" | "account-takeover" | "ip-login-flood", number>>;
  /** Event-time span of the run: [first, last]. */
  readonly span: readonly [number, number];
}

const MIN = 60_000;

export function generateSecurityEvents(options: SecurityGeneratorOptions): GeneratedRun {
  const rnd = seededRandom(options.seed);
  const users = options.users ?? 1_000;
  const start = options.startTs ?? Date.UTC(2026, 0, 1);
  const step = options.stepMs ?? 200;
  const disorder = options.maxDisorderMs ?? 2_000;
  const malformedShare = options.malformedShare ?? 0.005;
  const attacks = options.attacks ?? 5;
  const int = (lo: number, hi: number) => lo + Math.floor(rnd() * (hi - lo + 1));
  const end = start + options.events * step;

  const usedTs = new Set<number>();
  const uniqueTs = (ts: number) => {
    let t = Math.round(ts);
    while (usedTs.has(t)) t++;
    usedTs.add(t);
    return t;
  };
  const events: SecurityEvent[] = [];
  const login = (user: string, device: string, ip: string, vpn: boolean, ok: boolean, score: number, ts: number) =>
    events.push({ type: "login", user, device, ip, vpn, ok, score, ts: uniqueTs(ts) });
  const pwd = (user: string, ip: string, ts: number) => events.push({ type: "password_change", user, ip, ts: uniqueTs(ts) });
  const transfer = (user: string, ip: string, amount: number, ts: number) => events.push({ type: "transfer", user, ip, amount, ts: uniqueTs(ts) });

  // Noise: users with two usual devices and a home IP; a hot head and a long tail.
  const noiseFailuresPerIp = new Map<string, number>();
  for (let i = 0; i < options.events; i++) {
    const ts = start + i * step + Math.floor(rnd() * step);
    const n = Math.floor(rnd() * rnd() * users);
    const user = `u${n}`;
    const ip = `10.${(n >> 16) & 255}.${(n >> 8) & 255}.${n & 255}`;
    const r = rnd();
    if (r < 0.7) {
      const device = `${user}-d${int(1, 2)}`;
      const vpn = rnd() < 0.3;
      let ok = rnd() >= 0.08;
      if (!ok) {
        const f = noiseFailuresPerIp.get(ip) ?? 0;
        if (f >= FLOOD_FAILURES) ok = true;
        else noiseFailuresPerIp.set(ip, f + 1);
      }
      const score = ok ? int(0, 100) : int(0, VPN_MIN_SCORE);
      login(user, device, ip, vpn, ok, score, ts);
    } else if (r < 0.72) pwd(user, ip, ts);
    else transfer(user, ip, int(1, LARGE_TRANSFER - 1), ts);
  }

  // Planted attacks and near misses, each on its own user and IP, at random times in the run.
  const planted = { "vpn-brute-force": 0, "account-takeover": 0, "ip-login-flood": 0 };
  const at = () => start + Math.floor(rnd() * Math.max(1, end - start));
  let victim = 0;
  const target = () => {
    const v = victim++;
    return { user: `t${v}`, ip: `192.0.${(v >> 8) & 255}.${v & 255}`, attackerIp: `198.51.${(v >> 8) & 255}.${v & 255}` };
  };
  for (let a = 0; a < attacks; a++) {
    // Rule vpn-brute-force. The victim's history: a few good logins from their own device.
    const vpnBurst = (kind: "attack" | "few" | "known-device" | "low-score" | "slow" | "no-vpn") => {
      const t = target();
      const t0 = at();
      for (let k = 0; k < 3; k++) login(t.user, `${t.user}-laptop`, t.ip, true, true, int(0, 30), t0 - (k + 1) * 20 * MIN);
      const device = kind === "known-device" ? `${t.user}-laptop` : `${t.user}-evil`;
      // A low score on one attempt leaves only VPN_FAILURES attempts that fit the rule.
      const count = kind === "few" ? VPN_FAILURES : kind === "low-score" ? VPN_FAILURES + 1 : VPN_FAILURES + 1 + int(0, 3);
      const gap = kind === "slow" ? 15 * MIN : int(1, 4) * MIN;
      for (let k = 0; k < count; k++) {
        const score = kind === "low-score" && k === 2 ? VPN_MIN_SCORE : int(VPN_MIN_SCORE + 1, 100);
        login(t.user, device, t.attackerIp, kind !== "no-vpn", false, score, t0 + k * gap);
      }
      if (kind === "attack") planted["vpn-brute-force"]++;
    };
    vpnBurst("attack");
    vpnBurst((["few", "known-device", "low-score", "slow", "no-vpn"] as const)[a % 5]!);

    // Rule account-takeover.
    const takeover = (kind: "attack" | "small" | "slow" | "order") => {
      const t = target();
      const t0 = at();
      login(t.user, `${t.user}-phone`, t.ip, false, true, int(0, 30), t0 - 30 * MIN); // a usual login, long before
      login(t.user, `${t.user}-new`, t.attackerIp, false, true, int(0, 100), t0);
      const amount = kind === "small" ? int(100, LARGE_TRANSFER - 1) : int(LARGE_TRANSFER, 5 * LARGE_TRANSFER);
      if (kind === "order") {
        transfer(t.user, t.attackerIp, amount, t0 + 2 * MIN);
        pwd(t.user, t.attackerIp, t0 + 4 * MIN);
      } else {
        pwd(t.user, t.attackerIp, t0 + (kind === "slow" ? 6 : int(1, 4)) * MIN);
        transfer(t.user, t.attackerIp, amount, t0 + (kind === "slow" ? 10 * MIN + 1_000 : int(5, 9) * MIN));
      }
      if (kind === "attack") planted["account-takeover"]++;
    };
    takeover("attack");
    takeover((["small", "slow", "order"] as const)[a % 3]!);

    // Rule ip-login-flood: failed logins for many users from one IP.
    const flood = (kind: "attack" | "few" | "slow") => {
      const t = target();
      const t0 = at();
      const count = kind === "few" ? FLOOD_FAILURES : FLOOD_FAILURES + 1 + int(0, 9);
      const gap = kind === "slow" ? 4 * MIN : int(5, 60) * 1_000;
      for (let k = 0; k < count; k++) login(`f${victim}-${k}`, `bot-${victim}`, t.attackerIp, false, false, int(0, VPN_MIN_SCORE), t0 + k * gap);
      if (kind === "attack") planted["ip-login-flood"]++;
    };
    flood("attack");
    flood((["few", "slow"] as const)[a % 2]!);
  }

  // Publish order: event time plus a delay below `disorder`; malformed messages in between.
  const order = events.map((e) => ({ e, arrival: e.ts + rnd() * disorder })).sort((x, y) => x.arrival - y.arrival);
  const messages: GeneratedMessage[] = [];
  for (const { e } of order) {
    if (rnd() < malformedShare) messages.push(malformed(e, rnd()));
    messages.push({ payload: JSON.stringify(e), event: e });
  }
  let lo = Infinity;
  let hi = -Infinity;
  for (const e of events) {
    lo = Math.min(lo, e.ts);
    hi = Math.max(hi, e.ts);
  }
  return { messages, planted, span: [lo, hi] };
}

function malformed(e: SecurityEvent, r: number): GeneratedMessage {
  if (r < 0.25) return { payload: JSON.stringify(e).slice(0, 20), malformed: "not-json" };
  if (r < 0.5) {
    const { type: _type, ...rest } = e;
    return { payload: JSON.stringify(rest), malformed: "missing-type" };
  }
  if (r < 0.75) return { payload: JSON.stringify({ ...e, ts: "yesterday" }), malformed: "bad-ts" };
  return { payload: JSON.stringify({ ...e, type: "logout" }), malformed: "unknown-type" };
}

/**
 * The event a payload stands for, or a one-line reason it is none: what the pipeline's parsing
 * step dead-letters. Every field is checked, since the rules' CEL conditions read them.
 */
export function parseSecurityEvent(payload: string): SecurityEvent | string {
  let x: unknown;
  try {
    x = JSON.parse(payload);
  } catch {
    return "not JSON";
  }
  return validateSecurityEvent(x);
}

/** `record` (decoded JSON) as a security event, or a one-line reason it is none. */
export function validateSecurityEvent(x: unknown): SecurityEvent | string {
  if (typeof x !== "object" || x === null || Array.isArray(x)) return "not an object";
  const o = x as Record<string, unknown>;
  const str = (k: string) => typeof o[k] === "string" && (o[k] as string).length > 0 && (o[k] as string).length <= 128;
  const num = (k: string) => typeof o[k] === "number" && Number.isFinite(o[k]);
  if (!num("ts") || !Number.isSafeInteger(o["ts"])) return "ts must be an epoch-ms integer";
  if (!str("user") || !str("ip")) return "user and ip must be non-empty strings";
  switch (o["type"]) {
    case "login":
      if (!str("device") || typeof o["vpn"] !== "boolean" || typeof o["ok"] !== "boolean" || !num("score")) return "login needs device, vpn, ok, score";
      return { type: "login", user: o["user"] as string, device: o["device"] as string, ip: o["ip"] as string, vpn: o["vpn"] as boolean, ok: o["ok"] as boolean, score: o["score"] as number, ts: o["ts"] as number };
    case "password_change":
      return { type: "password_change", user: o["user"] as string, ip: o["ip"] as string, ts: o["ts"] as number };
    case "transfer":
      if (!num("amount")) return "transfer needs an amount";
      return { type: "transfer", user: o["user"] as string, ip: o["ip"] as string, amount: o["amount"] as number, ts: o["ts"] as number };
    default:
      return `unknown type ${JSON.stringify(o["type"])?.slice(0, 40) ?? "(missing)"}`;
  }
}
