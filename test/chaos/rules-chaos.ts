/**
 * The rules chaos run (issue 14 item 4c): the rule-detection job of functions/rules/ on a real
 * nats-server, its rules put, changed (new versions) and removed (and put again) while seeded
 * security events flow, and worker processes SIGKILLed around the changes — right after a change
 * is published (before the checkpoint barrier that applies it), right after it was applied, and
 * while a phase's events are published. At the end the alerts of the exactly-once sink must equal
 * functions/rules/expected.ts over the rule history: nothing missing, nothing duplicated.
 *
 * What makes the expectation exact (note bu, the contract of issue 14): event time is cut into
 * phases; the change of boundary `B` (a put with `activeFrom: B`, or a removal) is published
 * before any event at or after `B`, and the next events are published only once the change is
 * part of a *committed* checkpoint (the matcher's broadcast state as materialized in KV). Before
 * a put, the matcher's committed watermark must have passed the previous boundary, so no event
 * still needs the version two back (the matcher keeps one retired version per rule); before a
 * removal it must have passed every event before `B` (a removal has no activeFrom: it stops the
 * rule for every event fed after it). Each phase ends with filler events that match nothing, so
 * that the watermark can pass a phase's last real event before the next phase is published.
 * Account-takeover, keyed by user like vpn-brute-force, is never removed: the events' devices are
 * then remembered for `seen()` under every user key throughout, as the expectation assumes.
 *
 *   npm run chaos -- --rules --seed <n> [--phases <n>] [--events <per phase>] [--kills <k>] [--json]
 *     (probes: --moments before-apply,after-apply,mid-phase,none,… per boundary; --trust-live; --verbose)
 */
import { Kvm } from "@nats-io/kv";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { resolve } from "node:path";
import { deployModule } from "../../runtime/deploy/deploy.ts";
import { startLocalNatsServer } from "../../runtime/nats/local-server.ts";
import { ensureStream, publishAll, readAll } from "../../runtime/nats/streams.ts";
import { readJobView } from "../../runtime/nats/job-views.ts";
import { stateClient, type StateClient } from "../../runtime/nats/state-client.ts";
import { JOBS_BUCKET, latestKey, type CommittedCheckpoint } from "../../runtime/core/protocol.ts";
import { appliedKey, watermarkKey } from "../../runtime/core/kv-keys.ts";
import { stateBucket } from "../../runtime/core/naming.ts";
import { decodeValue } from "../../runtime/core/wire.ts";
import { checkRuleChange } from "../../runtime/core/rule-matcher.ts";
import type { Rule, RuleChange } from "../../runtime/core/rules.ts";
import { seededRandom } from "../../functions/seeded-random.ts";
import { generateSecurityEvents, type SecurityEvent } from "../../functions/rules/events.ts";
import { expectedAlerts, historyWindows, type RuleHistoryChange } from "../../functions/rules/expected.ts";
import { accountTakeoverSpec, ipLoginFloodSpec, toRule, vpnBruteForceSpec, type RuleSpec } from "../../functions/rules/rules.ts";
import { startSupervisor, type StartedSupervisor } from "../../runtime/supervisor/supervisor.ts";
import { startEddy, type EddyProcess } from "../support/processes.ts";

const ROOT = resolve(import.meta.dirname, "../..");
const JOB = "rules";
const MATCHER = "rules";
const ALERTS_FN = "rules-alerts";
const RULES_PREFIX = "rules.scenario";
const START = Date.UTC(2026, 0, 1);
/** Event-time step of the noise (phases of `eventsPerPhase` events last `eventsPerPhase · STEP_MS`). */
const STEP_MS = 1_500;
/** The last FILLER_MS of each phase hold only fillers: more than the watermark's 2 s bound. */
const FILLER_MS = 5_000;
const FILLER_EVERY_MS = 250;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const decoder = new TextDecoder();

/** When a worker is SIGKILLed at a boundary: right after the change is published, right after it is committed, or halfway through the phase's events. */
export type KillMoment = "before-apply" | "after-apply" | "mid-phase";

export interface RulesChaosOptions {
  readonly seed: number;
  /** Phases of event time; a rule changes at every boundary between two (default 5). */
  readonly phases?: number;
  /** Noise events per phase (default 800; planted attacks, near misses and fillers come on top). */
  readonly eventsPerPhase?: number;
  /** Worker kills, at most one per boundary (default: one per boundary). */
  readonly kills?: number;
  readonly timeoutSeconds?: number;
  readonly log?: (line: string) => void;
  /**
   * Probe: at an "after-apply" boundary, take the change as applied once partition 0 shows it
   * live (as `eddy rules ls` did), publish the phase at once and kill every worker.
   */
  readonly trustLive?: boolean;
  /** Kill moments by boundary, instead of the plan's. */
  readonly moments?: readonly (KillMoment | undefined)[];
  /** Also log the supervisor's lines. */
  readonly verbose?: boolean;
}

/** One boundary of the plan: the change at `at`, and whether and when a worker is killed around it. */
export interface Boundary {
  readonly at: number;
  readonly change: RuleHistoryChange;
  readonly kill?: KillMoment;
}

export interface RulesChaosPlan {
  /** Phase i is [boundaries[i - 1].at (or START), boundaries[i].at (or for good)). */
  readonly boundaries: readonly Boundary[];
  /** Every rule change: the three rules at START, then one per boundary. */
  readonly history: readonly RuleHistoryChange[];
  /** The messages of each phase in publish order (the last phase ends with a far-later flush). */
  readonly phases: readonly (readonly string[])[];
  /** Every valid event published. */
  readonly events: readonly SecurityEvent[];
}

const label = (c: RuleHistoryChange) => ("put" in c ? `put ${c.put.id}@${c.put.version}` : `remove ${c.remove}`);

/**
 * The seeded plan of a run: events, phases and the changes at their boundaries. The changes go
 * round "new version, removal, put again, new version": a new version of a rule present (other
 * thresholds; ip-login-flood may switch its key between ip and user), a removal of
 * vpn-brute-force or ip-login-flood, a removed rule put again with a higher version. The kill
 * moments go round too, from a seeded offset, so a short run meets each.
 */
export function rulesChaosPlan(seed: number, phases: number, eventsPerPhase: number, kills: number): RulesChaosPlan {
  if (!Number.isSafeInteger(phases) || phases < 2) throw new Error("a rules chaos run needs at least 2 phases");
  const rnd = seededRandom(seed ^ 0x7e1e5);
  const phaseMs = eventsPerPhase * STEP_MS;
  const run = generateSecurityEvents({ seed, events: phases * eventsPerPhase, stepMs: STEP_MS, startTs: START, attacks: 2 * phases });
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rnd() * xs.length)]!;

  // The rule history.
  const current = new Map<string, RuleSpec>();
  const highest = new Map<string, number>();
  const history: RuleHistoryChange[] = [];
  for (const spec of [vpnBruteForceSpec, accountTakeoverSpec, ipLoginFloodSpec]) {
    const s = { ...spec, activeFrom: START };
    current.set(s.id, s);
    highest.set(s.id, s.version);
    history.push({ at: START, put: s });
  }
  const variant = (base: RuleSpec, version: number, at: number): RuleSpec => {
    const common = { version, activeFrom: at };
    switch (base.kind) {
      case "vpn-brute-force":
        return { ...base, ...common, failures: pick([3, 4, 5]), minScore: pick([40, 50, 60]) };
      case "account-takeover":
        return { ...base, ...common, minAmount: pick([5_000, 10_000, 20_000]), withinMs: pick([300_000, 600_000]) };
      case "login-flood":
        return { ...base, ...common, failures: pick([8, 12, 20]), by: pick(["ip", "ip", "user"] as const) };
    }
  };
  const removable = ["vpn-brute-force", "ip-login-flood"];
  const killOffset = Math.floor(rnd() * 3);
  const moments: KillMoment[] = ["before-apply", "after-apply", "mid-phase"];
  const boundaries: Boundary[] = [];
  for (let b = 1; b < phases; b++) {
    const at = START + b * phaseMs;
    const present = [...current.keys()];
    const absent = removable.filter((id) => !current.has(id));
    const round = (b - 1) % 4;
    let change: RuleHistoryChange;
    if (round === 1 && removable.some((id) => current.has(id))) {
      const id = pick(removable.filter((x) => current.has(x)));
      current.delete(id);
      change = { at, remove: id };
    } else if (round === 2 && absent.length > 0) {
      const id = pick(absent);
      const base = id === "vpn-brute-force" ? vpnBruteForceSpec : ipLoginFloodSpec;
      const spec = variant(base, highest.get(id)! + 1, at);
      current.set(id, spec);
      highest.set(id, spec.version);
      change = { at, put: spec };
    } else {
      const id = pick(present);
      const spec = variant(current.get(id)!, highest.get(id)! + 1, at);
      current.set(id, spec);
      highest.set(id, spec.version);
      change = { at, put: spec };
    }
    history.push(change);
    const kill = b - 1 < kills ? moments[(b - 1 + killOffset) % 3]! : undefined;
    boundaries.push({ at, change, ...(kill === undefined ? {} : { kill }) });
  }

  // Events by phase: the generator's publish order, none in the last FILLER_MS before a boundary
  // (fillers instead), so that no event of a phase is published after one of the next.
  const filler = (ts: number): SecurityEvent => ({ type: "password_change", user: "filler", ip: "10.255.255.254", ts });
  const phaseOf = (ts: number) => Math.min(phases - 1, Math.max(0, Math.floor((ts - START) / phaseMs)));
  const out: string[][] = Array.from({ length: phases }, () => []);
  const events: SecurityEvent[] = [];
  let phase = 0;
  for (const m of run.messages) {
    if (m.event === undefined) {
      out[phase]!.push(m.payload); // malformed: dead-lettered, wherever it is published
      continue;
    }
    const p = phaseOf(m.event.ts);
    if (m.event.ts < START || p < phase) continue; // before the run, or a phase already over
    if (p < phases - 1 && m.event.ts >= START + (p + 1) * phaseMs - FILLER_MS) continue;
    phase = p;
    out[p]!.push(m.payload);
    events.push(m.event);
  }
  for (let p = 0; p < phases - 1; p++) {
    const end = START + (p + 1) * phaseMs;
    for (let ts = end - FILLER_MS; ts < end; ts += FILLER_EVERY_MS) {
      out[p]!.push(JSON.stringify(filler(ts)));
      events.push(filler(ts));
    }
  }
  // Far later than everything: the watermark passes every other event, every `within` deadline.
  const flush = filler(START + phases * phaseMs + 2 * 3_600_000);
  out[phases - 1]!.push(JSON.stringify(flush));
  events.push(flush);
  return { boundaries, history, phases: out, events };
}

export interface RulesChaosResult {
  readonly seed: number;
  readonly phases: number;
  readonly events: number;
  /** The changes in order, e.g. "put vpn-brute-force@2". */
  readonly changes: readonly string[];
  readonly workerKills: number;
  /** Kills at each moment; `before-apply` only counts kills after which the change was not yet committed. */
  readonly kills: Readonly<Record<KillMoment, number>>;
  /** Alerts per rule@version in the expectation. */
  readonly expectedByVersion: Readonly<Record<string, number>>;
  readonly expected: number;
  readonly actual: number;
  readonly missing: number;
  readonly duplicated: number;
  readonly exact: boolean;
  readonly seconds: number;
}

/** JSON with sorted object keys: the pipeline's alert fields and the expectation's need not share key order. */
function canonical(x: unknown): string {
  return JSON.stringify(x, (_k, v: unknown) => (v !== null && typeof v === "object" && !Array.isArray(v) ? Object.fromEntries(Object.entries(v).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) : v));
}

/** The alerts in `expected` missing from `actual` and those in `actual` beyond `expected` (multisets of canonical JSON). */
export function alertDifference(expected: readonly string[], actual: readonly string[]): { missing: string[]; extra: string[] } {
  const counts = new Map<string, number>();
  for (const x of expected) counts.set(x, (counts.get(x) ?? 0) + 1);
  const extra: string[] = [];
  for (const x of actual) {
    const n = counts.get(x) ?? 0;
    if (n > 0) counts.set(x, n - 1);
    else extra.push(x);
  }
  const missing = [...counts].flatMap(([x, n]) => Array<string>(n).fill(x));
  return { missing, extra };
}

export async function runRulesChaos(options: RulesChaosOptions): Promise<RulesChaosResult> {
  const log = options.log ?? (() => undefined);
  const started = Date.now();
  const phases = options.phases ?? 5;
  const planned = rulesChaosPlan(options.seed, phases, options.eventsPerPhase ?? 800, options.kills ?? phases - 1);
  const plan: RulesChaosPlan = options.moments === undefined ? planned : { ...planned, boundaries: planned.boundaries.map(({ kill: _kill, ...b }, i) => (options.moments![i] === undefined ? b : { ...b, kill: options.moments![i]! })) };
  const expectedList = expectedAlerts(plan.events, historyWindows(plan.history)).map(({ rule, version, key, at, fields }) => canonical({ rule, version, key, at, fields }));
  const expectedByVersion: Record<string, number> = {};
  for (const a of expectedAlerts(plan.events, historyWindows(plan.history))) expectedByVersion[`${a.rule}@${a.version}`] = (expectedByVersion[`${a.rule}@${a.version}`] ?? 0) + 1;
  const deadline = started + (options.timeoutSeconds ?? 300) * 1000;
  const rnd = seededRandom(options.seed ^ 0xc4a05);

  const server = await startLocalNatsServer();
  const nc = await connect({ servers: server.url, maxReconnectAttempts: -1, reconnectTimeWait: 100 });
  const procs: EddyProcess[] = [];
  const workers: EddyProcess[] = [];
  const logs = () => [...procs.map((p, i) => `--- process ${i}\n${p.output().trim().split("\n").slice(-30).join("\n")}`), "--- supervisor", ...supervisorLog.slice(-60)].join("\n");
  const kills: Record<KillMoment, number> = { "before-apply": 0, "after-apply": 0, "mid-phase": 0 };
  let workerKills = 0;
  const t = () => `t=${((Date.now() - started) / 1000).toFixed(1)} s`;
  const until = async <T>(what: string, f: () => Promise<T | undefined>): Promise<T> => {
    for (;;) {
      const v = await f().catch(() => undefined);
      if (v !== undefined) return v;
      if (Date.now() > deadline) throw new Error(`rules chaos (seed ${options.seed}): timed out waiting for ${what}\n${logs()}`);
      await sleep(100);
    }
  };
  let stopped = false;
  let supervisor: StartedSupervisor | undefined;
  const supervisorLog: string[] = [];
  const startWorker = () => {
    if (stopped) return;
    const w = startEddy(["worker", "--nats", server.url]);
    procs.push(w);
    workers.push(w);
  };
  const killWorker = async (moment: KillMoment) => {
    const live = workers.filter((w) => w.child.exitCode === null && w.child.signalCode === null);
    const victim = live[Math.floor(rnd() * live.length)];
    if (victim === undefined) return false;
    await victim.kill();
    workerKills++;
    log(`rules chaos: ${t()} SIGKILL worker ${victim.child.pid} (${moment})`);
    // The replacement comes once the victim's heartbeat (5 s TTL) has expired: a worker joining
    // before that makes the supervisor plan a handover with the dead worker's actors, which costs
    // two checkpoint timeouts (20 s) before the actors move (seen in these runs).
    setTimeout(startWorker, 6_000);
    return true;
  };

  try {
    await ensureStream(nc, "SECURITY", ["security.>"]);
    await ensureStream(nc, "RULES", [`${RULES_PREFIX}.>`]);
    await ensureStream(nc, "RULES_ALERTS", ["results.rules.alerts"]);
    await deployModule(nc, resolve(ROOT, "functions/rules/pipeline.ts"));
    // In this process, to shorten what a worker kill costs: a restart waits 0.2 s, not 1 s doubling.
    supervisor = await startSupervisor(nc, {
      checkpointIntervalMs: 300,
      restartStrategy: { initialDelayMs: 200, multiplier: 1, maxDelayMs: 200, maxFailures: 100 },
      log: (line) => {
        supervisorLog.push(`${t()} ${line}`);
        if (options.verbose === true) log(`supervisor: ${t()} ${line}`);
      },
    });
    startWorker();
    startWorker();
    const jobs = await until("the jobs bucket", () => new Kvm(nc).open(JOBS_BUCKET));
    const latest = async () => {
      const e = await jobs.get(latestKey(JOB));
      return e === null || e.length === 0 ? undefined : (JSON.parse(decoder.decode(e.value)) as CommittedCheckpoint).id;
    };
    await until("a first checkpoint", latest);
    log(`rules chaos: ${t()} job running`);
    const matcherPartitions = (await readJobView(nc, JOB)).functions.find((f) => f.name === MATCHER)!.partitions;
    const alertPartitions = (await readJobView(nc, JOB)).functions.find((f) => f.name === ALERTS_FN)!.partitions;
    const matcherKv = await new Kvm(nc).open(stateBucket(JOB, MATCHER));
    const alertsKv = await new Kvm(nc).open(stateBucket(JOB, ALERTS_FN));
    const rulesState: StateClient = await stateClient(nc, JOB, MATCHER, { timeoutMs: 3_000 });

    /** The lowest operator watermark the matcher's partitions committed. */
    const committedWatermark = async () => {
      let low = Infinity;
      for (let p = 0; p < matcherPartitions; p++) {
        const e = await matcherKv.get(watermarkKey(p));
        const op = e === null || e.length === 0 ? undefined : (decodeValue(e.value) as { op?: unknown }).op;
        low = Math.min(low, typeof op === "number" ? op : -Infinity);
      }
      return low;
    };
    const watermarkPast = (ts: number) => until(`the matcher's committed watermark past ${new Date(ts).toISOString()}`, async () => ((await committedWatermark()) >= ts ? true : undefined));
    /** The active rules as committed (materialized broadcast state), `id@version` sorted. */
    const committedActive = async () => {
      const out: string[] = [];
      for await (const e of rulesState.scan({ state: "rules", broadcast: true, consistency: "committed" })) out.push(`${(e.value as Rule).id}@${(e.value as Rule).version}`);
      return out.sort();
    };
    const liveActive = async () => {
      const out: string[] = [];
      for await (const e of rulesState.scan({ state: "rules", broadcast: true, consistency: "live" })) out.push(`${(e.value as Rule).id}@${(e.value as Rule).version}`);
      return out.sort();
    };
    const present = new Map<string, number>();
    const activeIs = async () => {
      const want = [...present].map(([id, v]) => `${id}@${v}`).sort();
      await until(`committed rules ${want.join(", ")}`, async () => (JSON.stringify(await committedActive()) === JSON.stringify(want) ? true : undefined));
    };
    const publishChange = async (c: RuleHistoryChange) => {
      const change: RuleChange = checkRuleChange("put" in c ? { op: "put", rule: toRule(c.put) } : { op: "remove", id: c.remove });
      await publishAll(nc, [{ subject: `${RULES_PREFIX}.${"put" in c ? c.put.id : c.remove}`, data: JSON.stringify(change) }]);
      if ("put" in c) present.set(c.put.id, c.put.version);
      else present.delete(c.remove);
      log(`rules chaos: ${t()} published ${label(c)} at ${new Date(c.at).toISOString()}`);
    };
    const publishPhase = async (messages: readonly string[], killHalfway: boolean) => {
      const chunks = 8;
      const size = Math.ceil(messages.length / chunks);
      for (let i = 0; i < chunks; i++) {
        if (killHalfway && i === chunks / 2) await killWorker("mid-phase").then((k) => k && kills["mid-phase"]++);
        await publishAll(nc, messages.slice(i * size, (i + 1) * size).map((data) => ({ subject: "security.events", data })));
        await sleep(50);
      }
    };

    for (const c of plan.history.filter((c) => c.at === START)) await publishChange(c);
    await activeIs();
    for (let p = 0; p < phases; p++) {
      const boundary = p === 0 ? undefined : plan.boundaries[p - 1]!;
      if (boundary !== undefined) {
        const c = boundary.change;
        // A removal needs every earlier event fed; a put only those before the previous boundary.
        await watermarkPast("remove" in c ? c.at - FILLER_MS : (plan.boundaries[p - 2]?.at ?? START));
        await publishChange(c);
        if (boundary.kill === "before-apply") {
          await killWorker("before-apply");
          // It counts as a kill before the change took effect if no checkpoint had committed it.
          const want = JSON.stringify([...present].map(([id, v]) => `${id}@${v}`).sort());
          if (JSON.stringify(await committedActive()) !== want) kills["before-apply"]++;
          else log(`rules chaos: ${t()} the change was committed before the kill`);
        }
        if (boundary.kill === "after-apply" && options.trustLive === true) {
          // What `eddy rules ls` shows first: partition 0's live state, applied at the barrier
          // but maybe not committed yet. Publish the phase at once and kill every worker.
          const want = JSON.stringify([...present].map(([id, v]) => `${id}@${v}`).sort());
          await until("the change live in partition 0", async () => (JSON.stringify(await liveActive()) === want ? true : undefined));
          await publishAll(nc, plan.phases[p]!.map((data) => ({ subject: "security.events", data })));
          const committedBefore = JSON.stringify(await committedActive()) === want;
          const latestBefore = await latest();
          for (const w of workers.filter((w) => w.child.exitCode === null && w.child.signalCode === null)) await killWorker("after-apply");
          kills["after-apply"]++;
          log(`rules chaos: ${t()} killed every worker after the change was live (${committedBefore ? "already" : "not yet"} materialized; latest committed checkpoint ${latestBefore})`);
          continue;
        }
        await activeIs();
        log(`rules chaos: ${t()} ${label(c)} committed`);
        if (boundary.kill === "after-apply" && (await killWorker("after-apply"))) kills["after-apply"]++;
      }
      await publishPhase(plan.phases[p]!, boundary?.kill === "mid-phase");
    }
    log(`rules chaos: ${t()} all events published`);

    // The end: the matcher's committed watermark past the last real event, then that checkpoint's
    // alerts published by every sink partition.
    const lastReal = Math.max(...plan.events.slice(0, -1).map((e) => e.ts));
    await watermarkPast(lastReal);
    const final = (await latest())!;
    await until(`the alerts of checkpoint ${final} published`, async () => {
      for (let p = 0; p < alertPartitions; p++) {
        const e = await alertsKv.get(appliedKey(p));
        if (e === null || e.length === 0 || (decodeValue(e.value) as number) < final) return undefined;
      }
      return true;
    });
    await sleep(1_000); // a few checkpoints more: nothing else may come
    const actualList = (await readAll(nc, "RULES_ALERTS")).map((m) => {
      const { rule, version, key, at, fields } = JSON.parse(decoder.decode(m.data)) as { rule: string; version: number; key: string; at: number; fields: unknown };
      return canonical({ rule, version, key, at, fields });
    });
    const { missing, extra } = alertDifference(expectedList, actualList);
    const result: RulesChaosResult = {
      seed: options.seed,
      phases,
      events: plan.events.length,
      changes: plan.boundaries.map((b) => label(b.change)),
      workerKills,
      kills,
      expectedByVersion,
      expected: expectedList.length,
      actual: actualList.length,
      missing: missing.length,
      duplicated: extra.length,
      exact: missing.length === 0 && extra.length === 0,
      seconds: Math.round((Date.now() - started) / 100) / 10,
    };
    if (!result.exact) {
      log(`rules chaos: ${missing.length} missing, e.g.\n  ${missing.slice(0, 10).join("\n  ")}`);
      log(`rules chaos: ${extra.length} unexpected or repeated, e.g.\n  ${extra.slice(0, 10).join("\n  ")}`);
      log(logs());
    }
    return result;
  } finally {
    stopped = true;
    for (const p of procs) await p.kill();
    await supervisor?.stop();
    await nc.close().catch(() => undefined);
    await server.stop();
  }
}
