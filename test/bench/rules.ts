/**
 * Rule-matching throughput (issue 14 item 5): the CEP core matching many live rules at once over
 * the rule-detection scenario's events (functions/rules/), in process — no NATS, no workers, no
 * watermark buffering. It measures what the matcher itself costs per event as the rule count
 * grows, which bounds what a live-rules pipeline can do per core; the pipeline adds transport,
 * state I/O and checkpoints on top (the pipeline benchmarks measure those).
 *
 * Each run takes `n` rules (functions/rules/rules.ts `benchmarkSpecs`: the three scenario rules
 * with varied thresholds, keyed by user or by IP) and feeds every event, in event-time order, to
 * every rule whose key fields it has, as the live matcher does: one NFA state per (rule, rule
 * key), devices remembered per rule key for `seen()`, at most 1 000 partial matches per key and
 * rule, a key's state dropped when it holds nothing. Reported per run: events/s (wall clock),
 * events per core-second (process.cpuUsage, user + system), NFA advances, matches, and the
 * partial matches alive at the end (time advanced to the last event's, so those past `within`
 * are gone, as `cep()`'s deadline timers would have removed them) with their msgpack size (bytes per partial match = msgpack
 * bytes of the NFA states holding partial matches / their number; a state also holds the shared
 * event buffer its partial matches point into).
 */
import { pack } from "msgpackr";
import { advance, advanceTime, compilePattern, initialState, type CompiledPattern, type NfaState } from "../../runtime/core/cep/index.ts";
import { decodeRuleChange, keySignature, ruleKeyOf, type Rule } from "../../runtime/core/rules.ts";
import { patternFromJson } from "../../runtime/core/cep/index.ts";
import { generateSecurityEvents, type SecurityEvent } from "../../functions/rules/events.ts";
import { benchmarkSpecs, REMEMBER, toRule } from "../../functions/rules/rules.ts";

export interface RulesBenchRun {
  readonly rules: number;
  readonly seconds: number;
  readonly eventsPerSecond: number;
  readonly eventsPerCoreSecond: number;
  /** NFA steps: (event, rule) pairs where the event had the rule's key fields. */
  readonly advances: number;
  readonly matches: number;
  /** (rule, key) matcher states kept at the end (holding partial matches or counters). */
  readonly states: number;
  readonly partialMatches: number;
  readonly partialMatchBytes: number;
  readonly bytesPerPartialMatch: number | null;
  readonly droppedByCap: number;
  readonly celErrors: number;
}

export interface RulesBenchResult {
  readonly bench: "rules";
  readonly events: number;
  readonly keys: number;
  readonly distinctUsers: number;
  readonly distinctIps: number;
  readonly runs: RulesBenchRun[];
}

const MAX_PARTIAL_MATCHES = 1_000;

/** Runs with 1, 10 and 100 rules (those up to `maxRules`, and `maxRules` itself). */
export async function benchRules(options: { readonly rules: number; readonly keys: number; readonly events: number }): Promise<RulesBenchResult> {
  const events = benchEvents(options);
  const counts = [...new Set([1, 10, 100].filter((c) => c < options.rules).concat(options.rules))];
  const runs: RulesBenchRun[] = [];
  for (const n of counts) {
    // Rules as the matcher gets them: JSON decoded and validated, then compiled.
    const rules = benchmarkSpecs(n).map((s) => {
      const change = decodeRuleChange(JSON.parse(JSON.stringify({ op: "put", rule: toRule(s) })), patternFromJson);
      return (change as { rule: Rule }).rule;
    });
    runs.push(matchRun(rules, events));
  }
  return {
    bench: "rules",
    events: events.length,
    keys: options.keys,
    distinctUsers: new Set(events.map((e) => e.user)).size,
    distinctIps: new Set(events.map((e) => e.ip)).size,
    runs,
  };
}

/** The benchmark's events (seed 1, `keys` users), valid ones only, in event-time order. */
export function benchEvents(options: { readonly keys: number; readonly events: number }): SecurityEvent[] {
  const run = generateSecurityEvents({ seed: 1, events: options.events, users: options.keys, attacks: Math.max(1, Math.round(options.events / 10_000)) });
  return run.messages.flatMap((m) => (m.event === undefined ? [] : [m.event])).sort((a, b) => a.ts - b.ts);
}

/** One timed run of `rules` over `events` (event-time order). */
export function matchRun(rules: readonly Rule[], events: readonly SecurityEvent[]): RulesBenchRun {
  const groups = new Map<string, { fields: readonly string[]; rules: { index: number; compiled: CompiledPattern }[] }>();
  rules.forEach((rule, index) => {
    const sig = keySignature(rule.key);
    const g = groups.get(sig) ?? { fields: rule.key, rules: [] };
    g.rules.push({ index, compiled: compilePattern(rule.pattern) });
    groups.set(sig, g);
  });
  const groupList = [...groups.values()];
  const states = new Map<string, NfaState>();
  const remembered = new Map<string, Set<string>>();
  let advances = 0;
  let matches = 0;
  let dropped = 0;
  let celErrors = 0;
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  for (const e of events) {
    for (const g of groupList) {
      const key = ruleKeyOf(g.fields, e);
      if (key === undefined) continue;
      let seenValues = remembered.get(key);
      const seen = (field: string, value: unknown) => seenValues !== undefined && seenValues.has(`${field}\u0000${String(value)}`);
      for (const r of g.rules) {
        const id = `${r.index}\u0000${key}`;
        const state = states.get(id) ?? initialState();
        const errorsBefore = state.celErrors;
        const result = advance(r.compiled, state, e, e.ts, { key, seen, maxPartialMatches: MAX_PARTIAL_MATCHES });
        advances++;
        matches += result.matches.length;
        dropped += result.dropped;
        celErrors += state.celErrors - errorsBefore;
        if (state.partial.length === 0 && state.dropped === 0 && state.celErrors === 0) states.delete(id);
        else states.set(id, state);
      }
      for (const f of REMEMBER) {
        const v = (e as unknown as Record<string, unknown>)[f];
        if (v === undefined) continue;
        if (seenValues === undefined) remembered.set(key, (seenValues = new Set()));
        seenValues.add(`${f}\u0000${String(v)}`);
      }
    }
  }
  const seconds = (performance.now() - t0) / 1000;
  const cpu = process.cpuUsage(cpu0);
  const coreSeconds = (cpu.user + cpu.system) / 1e6;
  // As cep()'s deadline timers would by now: partial matches past `within` at the last event time are gone.
  const end = events.length === 0 ? 0 : events[events.length - 1]!.ts;
  const compiledOf = new Map(groupList.flatMap((g) => g.rules.map((r) => [r.index, r.compiled] as const)));
  let partialMatches = 0;
  let partialMatchBytes = 0;
  let kept = 0;
  for (const [id, s] of states) {
    advanceTime(compiledOf.get(Number(id.slice(0, id.indexOf("\u0000"))))!, s, end);
    if (s.partial.length > 0 || s.dropped > 0 || s.celErrors > 0) kept++;
    if (s.partial.length === 0) continue;
    partialMatches += s.partial.length;
    partialMatchBytes += pack(s).length;
  }
  return {
    rules: rules.length,
    seconds: round(seconds, 2),
    eventsPerSecond: Math.round(events.length / seconds),
    eventsPerCoreSecond: Math.round(events.length / coreSeconds),
    advances,
    matches,
    states: kept,
    partialMatches,
    partialMatchBytes,
    bytesPerPartialMatch: partialMatches === 0 ? null : Math.round(partialMatchBytes / partialMatches),
    droppedByCap: dropped,
    celErrors,
  };
}

const round = (x: number, digits: number) => Math.round(x * 10 ** digits) / 10 ** digits;
