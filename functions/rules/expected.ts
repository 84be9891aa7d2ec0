/**
 * The alerts the rule-detection scenario must raise, computed without any matcher: plain loops
 * over each rule key's events in event-time order, from the rule's parameters (rules.ts
 * `RuleSpec`), never from its CEL or pattern. The integration tests compare the pipeline's
 * alerts with these, and the unit tests compare these with the CEP core, so the two check each
 * other.
 *
 * Why plain loops suffice: every scenario rule is a chain of relaxed steps ("skip till next
 * match") with fixed counts, so an event that can start a match has exactly one candidate: the
 * first fitting events after it. A candidate is a match if its last event is less than `within`
 * after its first. The skip strategy `skipPastLastEvent` then follows note bp literally: walk the
 * candidates in completion order (last event, then first event), drop one whose first event lies
 * in an interval [first, last] of an alert already raised, raise the others.
 *
 * Rule versions (the live-rules contract, ISSUE14 "Determinism"): a version applies exactly to
 * the events with timestamp in [its activeFrom, the next version's activeFrom) — or until the
 * rule's removal time — and its matches use only those events (a new version drops the partial
 * matches of the old one). `seen('device', d)` means an earlier event of the rule key had device
 * d; which earlier events count is `seenScope`: every event of the input ("stream", what `cep()`
 * with `remember` does), or only those in the version's window ("version", if the live matcher
 * forgets remembered values with a new version).
 * A history in which a rule is removed and put again later is `historyWindows`.
 */
import { ruleKeyOf } from "../../runtime/core/rules.ts";
import type { Login, SecurityEvent } from "./events.ts";
import type { RuleSpec } from "./rules.ts";

/** An alert as the live-rules matcher emits it (`Alert` of runtime/sdk/rules.ts), plus the matched events. */
export interface ExpectedAlert {
  readonly rule: string;
  readonly version: number;
  /** `ruleKeyOf(rule.key, event)`. */
  readonly key: string;
  /** Event time of the match's last event. */
  readonly at: number;
  /** The rule's `output`, computed here in TypeScript. */
  readonly fields: Record<string, unknown>;
  /** Stage name → the events it took (not part of the pipeline's alert; for cross-checks). */
  readonly matched: Readonly<Record<string, readonly SecurityEvent[]>>;
}

/** A rule version and the event-time window [from, to) it applies to. */
export interface VersionWindow {
  readonly spec: RuleSpec;
  readonly from: number;
  readonly to: number;
}

/**
 * The windows of a rule history: each version from its `activeFrom` (the first may lack one:
 * from the start) to the next version's `activeFrom`, the last until `removedAt[id]` or for good.
 * @throws Error when a later version has no activeFrom (its start would not be deterministic)
 */
export function versionWindows(specs: readonly RuleSpec[], removedAt: Readonly<Record<string, number>> = {}): VersionWindow[] {
  const byId = new Map<string, RuleSpec[]>();
  for (const s of specs) byId.set(s.id, [...(byId.get(s.id) ?? []), s]);
  const out: VersionWindow[] = [];
  for (const [id, versions] of byId) {
    versions.sort((a, b) => a.version - b.version);
    versions.forEach((spec, i) => {
      if (i > 0 && spec.activeFrom === undefined) throw new Error(`rule ${id} version ${spec.version}: a later version needs activeFrom`);
      const next = versions[i + 1];
      out.push({ spec, from: spec.activeFrom ?? -Infinity, to: next?.activeFrom ?? removedAt[id] ?? Infinity });
    });
  }
  return out;
}

/** One change of a rule history at event time `at`: a version put (active from `at`), or the rule removed. */
export type RuleHistoryChange = { readonly at: number; readonly put: RuleSpec } | { readonly at: number; readonly remove: string };

/**
 * The windows of a rule history in which rules are put, changed, removed and put again: a put
 * version applies from its `at` to the rule's next change (a newer version or a removal), a
 * removed rule to nothing until it is put again. Changes of one rule must come in ascending `at`
 * with rising versions, and a put's `activeFrom` (if set) must be its `at` — the history is what
 * the harness published, so a mismatch is a bug in the harness.
 * @throws Error for a history that breaks these rules
 */
export function historyWindows(changes: readonly RuleHistoryChange[]): VersionWindow[] {
  const open = new Map<string, { spec: RuleSpec; from: number }>();
  const last = new Map<string, { at: number; version: number }>();
  const out: VersionWindow[] = [];
  for (const c of [...changes].sort((a, b) => a.at - b.at)) {
    const id = "put" in c ? c.put.id : c.remove;
    const before = last.get(id);
    if (before !== undefined && c.at <= before.at) throw new Error(`rule ${id}: two changes at ${c.at}`);
    if ("put" in c) {
      if (c.put.activeFrom !== undefined && c.put.activeFrom !== c.at) throw new Error(`rule ${id} version ${c.put.version}: activeFrom ${c.put.activeFrom} is not the change's time ${c.at}`);
      if (before !== undefined && c.put.version <= before.version) throw new Error(`rule ${id}: version ${c.put.version} after ${before.version}`);
      last.set(id, { at: c.at, version: c.put.version });
    } else last.set(id, { at: c.at, version: before?.version ?? 0 });
    const prev = open.get(id);
    if (prev !== undefined) out.push({ spec: prev.spec, from: prev.from, to: c.at });
    if ("put" in c) open.set(id, { spec: c.put, from: c.at });
    else open.delete(id);
  }
  for (const { spec, from } of open.values()) out.push({ spec, from, to: Infinity });
  return out;
}

export interface ExpectationOptions {
  /** Which earlier events make a device "seen" (default "stream"); see the module comment. */
  readonly seenScope?: "stream" | "version";
}

/** Every alert of the rule versions `windows` over `events` (any order), sorted by `alertOrder`. */
export function expectedAlerts(events: readonly SecurityEvent[], windows: readonly VersionWindow[], options: ExpectationOptions = {}): ExpectedAlert[] {
  const sorted = [...events].sort((a, b) => a.ts - b.ts);
  const alerts: ExpectedAlert[] = [];
  for (const w of windows) {
    const fields = w.spec.kind === "login-flood" ? [w.spec.by] : ["user"];
    const byKey = new Map<string, SecurityEvent[]>();
    const firstSeen = new Map<string, number>(); // rule key + device → first event time
    for (const e of sorted) {
      const key = ruleKeyOf(fields, e);
      if (key === undefined) continue;
      const inWindow = e.ts >= w.from && e.ts < w.to;
      if (inWindow) {
        const list = byKey.get(key);
        if (list === undefined) byKey.set(key, [e]);
        else list.push(e);
      }
      if (e.type === "login" && (inWindow || options.seenScope !== "version")) {
        const id = `${key}\u0000${e.device}`;
        if (!firstSeen.has(id)) firstSeen.set(id, e.ts);
      }
    }
    for (const [key, keyEvents] of byKey) {
      const seen = (e: Login) => (firstSeen.get(`${key}\u0000${e.device}`) ?? Infinity) < e.ts;
      for (const c of skipPastLastEvent(candidates(w.spec, keyEvents, seen))) {
        alerts.push({ rule: w.spec.id, version: w.spec.version, key, at: keyEvents[c.last]!.ts, fields: outputOf(w.spec, c.matched), matched: c.matched });
      }
    }
  }
  return alerts.sort(alertOrder);
}

/** A total order of alerts (event time, rule, key, version), to compare outputs whose order differs. */
export function alertOrder(a: { rule: string; version: number; key: string; at: number }, b: { rule: string; version: number; key: string; at: number }): number {
  return a.at - b.at || cmp(a.rule, b.rule) || cmp(a.key, b.key) || a.version - b.version;
}

const cmp = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);

/** A candidate match: indices of its first and last event in the key's events, and its events per stage. */
interface Candidate {
  readonly first: number;
  readonly last: number;
  readonly matched: Record<string, SecurityEvent[]>;
}

/**
 * Per start event, the one candidate a chain of relaxed steps allows: the first fitting event
 * for each step after the previous one, kept if its last event is less than `within` after its
 * first. `events` are one key's, ascending event time (unique times: the generator makes them so).
 */
function candidates(spec: RuleSpec, events: readonly SecurityEvent[], seen: (e: Login) => boolean): Candidate[] {
  const out: Candidate[] = [];
  /** The first index after `from` whose event fits `fits`, or -1. */
  const nextFitting = (from: number, fits: (e: SecurityEvent) => boolean) => {
    for (let j = from + 1; j < events.length; j++) if (fits(events[j]!)) return j;
    return -1;
  };
  /** `count` fitting indices after `from`, or undefined if there are fewer. */
  const nextFittingN = (from: number, count: number, fits: (e: SecurityEvent) => boolean) => {
    const taken: number[] = [];
    let j = from;
    while (taken.length < count) {
      j = nextFitting(j, fits);
      if (j < 0) return undefined;
      taken.push(j);
    }
    return taken;
  };
  const keep = (first: number, last: number, matched: Record<string, SecurityEvent[]>) => {
    if (events[last]!.ts - events[first]!.ts < spec.withinMs) out.push({ first, last, matched });
  };
  for (let i = 0; i < events.length; i++) {
    const e = events[i]!;
    switch (spec.kind) {
      case "vpn-brute-force": {
        const failedVpn = (x: SecurityEvent): x is Login => x.type === "login" && x.vpn && !x.ok && x.score > spec.minScore;
        if (!failedVpn(e) || seen(e)) break;
        const more = nextFittingN(i, spec.failures, (x) => failedVpn(x) && x.device === e.device);
        if (more !== undefined) keep(i, more[more.length - 1]!, { first: [e], more: more.map((j) => events[j]!) });
        break;
      }
      case "account-takeover": {
        if (e.type !== "login" || !e.ok) break;
        const p = nextFitting(i, (x) => x.type === "password_change");
        const t = p < 0 ? -1 : nextFitting(p, (x) => x.type === "transfer" && x.amount >= spec.minAmount);
        if (t >= 0) keep(i, t, { login: [e], password: [events[p]!], transfer: [events[t]!] });
        break;
      }
      case "login-flood": {
        const failed = (x: SecurityEvent) => x.type === "login" && !x.ok;
        if (!failed(e)) break;
        const rest = nextFittingN(i, spec.failures, failed);
        if (rest !== undefined) keep(i, rest[rest.length - 1]!, { fail: [e, ...rest.map((j) => events[j]!)] });
        break;
      }
    }
  }
  return out;
}

/** Note bp's walk for `skipPastLastEvent`: in completion order, drop candidates starting inside a raised match. */
function skipPastLastEvent(cs: readonly Candidate[]): Candidate[] {
  const order = [...cs].sort((a, b) => a.last - b.last || a.first - b.first);
  const raised: Candidate[] = [];
  for (const c of order) {
    if (raised.some((r) => c.first >= r.first && c.first <= r.last)) continue;
    raised.push(c);
  }
  return raised;
}

function outputOf(spec: RuleSpec, m: Record<string, SecurityEvent[]>): Record<string, unknown> {
  switch (spec.kind) {
    case "vpn-brute-force": {
      const f = m["first"]![0] as Login;
      return { user: f.user, device: f.device, ip: f.ip, firstAt: f.ts };
    }
    case "account-takeover": {
      const l = m["login"]![0] as Login;
      const t = m["transfer"]![0]!;
      return { user: l.user, device: l.device, amount: t.type === "transfer" ? t.amount : undefined, loginAt: l.ts };
    }
    case "login-flood": {
      const f = m["fail"]![0]!;
      return { by: f[spec.by], firstAt: f.ts };
    }
  }
}
