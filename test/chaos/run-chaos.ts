/**
 * The chaos suite: two jobs with exactly-once sinks run on two worker processes under two
 * supervisor processes while this harness SIGKILLs workers at seeded random moments, kills the
 * active supervisor once and restarts nats-server once (keeping its file store). With
 * `--nats-cluster 3` the jobs run on a 3-node JetStream cluster (three replicas of everything) and
 * the NATS faults are SIGKILLs of one server at a time — the leader of the source stream, the
 * leader of the jobs bucket, any server — each restarted with its store a moment later (with
 * `--nats-empty-store` the last one with an empty store: a replaced disk); the result reports how long the source stream had
 * no leader after each kill. At the end the sink output is compared with results computed
 * independently from the input; any missing or duplicated record makes the run fail.
 *
 *   npm run chaos -- --seed <n> [--events <n>] [--kills <k>] [--keys <n>] [--zipf] [--state-cache-mb <MiB>] [--nats-cluster <n>] [--nats-kills <n>] [--nats-empty-store] [--json]
 *
 * `--rules` runs the rules chaos run instead (test/chaos/rules-chaos.ts: live rules put, changed
 * and removed while workers are killed around the changes; `--events` then counts per phase):
 *
 *   npm run chaos -- --rules --seed <n> [--phases <n>] [--events <per phase>] [--kills <k>] [--json]
 *     (probes: --moments before-apply,after-apply,mid-phase,none,… per boundary; --trust-live; --verbose)
 */
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, openSync, readFileSync, closeSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { parseArgs } from "node:util";
import { Kvm } from "@nats-io/kv";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { rm } from "node:fs/promises";
import { jetstreamManager } from "@nats-io/jetstream";
import { startLocalNatsCluster, startLocalNatsServer, type LocalNatsCluster, type LocalNatsServer } from "../../runtime/nats/local-server.ts";
import { ensureStream, publishAll, readAll } from "../../runtime/nats/streams.ts";
import { requestEndOfInput } from "../../runtime/nats/control.ts";
import { checkpointKey, JOBS_BUCKET, latestKey, LEADER_BUCKET, LEADER_KEY, statusKey, type CheckpointRecord, type CommittedCheckpoint, type JobStatusRecord } from "../../runtime/core/protocol.ts";
import { appliedKey, positionKey, watermarkKey } from "../../runtime/core/kv-keys.ts";
import { deadLetterStream, HEADER, stateBucket } from "../../runtime/core/naming.ts";
import { decodeValue } from "../../runtime/core/wire.ts";
import { runRulesChaos } from "./rules-chaos.ts";
import { expectedOutputs, generateEvents, OUTPUT_STREAM, seededRandom, SOURCE_STREAM, SOURCE_SUBJECT, TOTALS_SUBJECT, totalsJob, WINDOWS_SUBJECT, windowsJob, type TotalOut } from "./workload.ts";

export interface ChaosOptions {
  readonly seed: number;
  readonly events: number;
  readonly kills: number;
  readonly supervisorKills?: number;
  readonly natsRestarts?: number;
  /** How long the input is spread over (default: events / 2500 s, at least 12 s). */
  readonly publishSeconds?: number;
  readonly timeoutSeconds?: number;
  /** Keys the events spread over (default 64) and how (default uniform). */
  readonly keys?: number;
  readonly keyDistribution?: "uniform" | "zipf";
  /** Workers' `--state-cache-mb` (default: theirs): a small one makes kills hit evicted state. */
  readonly stateCacheMb?: number;
  /** Run on a JetStream cluster of this many servers (default: one server); `natsRestarts` are then server kills. */
  readonly natsCluster?: number;
  /** On a cluster, restart the last killed server with an empty store (a replaced disk). */
  readonly natsEmptyStore?: boolean;
  readonly log?: (line: string) => void;
}

/** One NATS server loss of a cluster run. */
export interface NatsLoss {
  readonly server: string;
  /** Why it was chosen: it led the source stream or the jobs bucket, or any. */
  readonly role: "source-leader" | "jobs-leader" | "any";
  /** Restarted with an empty store (a replaced disk). */
  readonly emptyStore: boolean;
  /** Milliseconds until the source stream answered with a leader again. */
  readonly sourceStallMs: number;
}

export interface ChaosResult {
  readonly seed: number;
  readonly events: number;
  readonly workerKills: number;
  readonly supervisorKills: number;
  readonly natsRestarts: number;
  /** Of a cluster run: each server loss. */
  readonly natsLosses?: readonly NatsLoss[];
  /** Per job, the restarts the supervisor counted after failures (worker kills cause some; a NATS loss should cause none). */
  readonly jobRestarts: Readonly<Record<string, number>>;
  readonly expected: number;
  readonly actual: number;
  readonly missing: number;
  readonly duplicated: number;
  /** Records dead-lettered by either job: the workload has no bad input, so any is a loss. */
  readonly deadLettered: number;
  readonly exact: boolean;
  readonly seconds: number;
}

const ROOT = resolve(import.meta.dirname, "../..");
const CLI = join(ROOT, "runtime/cli/main.mjs");
const WORKLOAD = join(ROOT, "test/chaos/workload.ts");
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const decoder = new TextDecoder();
const JOBS = [windowsJob, totalsJob];

class Processes {
  private readonly workerArgs: readonly string[];
  constructor(workerArgs: readonly string[] = []) {
    this.workerArgs = workerArgs;
  }
  private readonly dir = mkdtempSync(join(tmpdir(), "eddy-chaos-"));
  private readonly live = new Map<string, ChildProcess>();
  private counter = 0;

  start(kind: "worker" | "supervisor", url: string): string {
    const name = `${kind}-${++this.counter}`;
    const args =
      kind === "worker"
        ? [CLI, "worker", "--pipeline", WORKLOAD, "--nats", url, ...this.workerArgs]
        : [CLI, "supervisor", "--nats", url, "--id", name, "--checkpoint-interval", "500"];
    const out = openSync(join(this.dir, `${name}.log`), "a");
    const child = spawn(process.execPath, args, { stdio: ["ignore", out, out], cwd: ROOT });
    closeSync(out);
    this.live.set(name, child);
    child.on("exit", () => this.live.delete(name));
    return name;
  }

  names(kind: string): string[] {
    return [...this.live.keys()].filter((n) => n.startsWith(kind));
  }

  kill(name: string): void {
    this.live.get(name)?.kill("SIGKILL");
    this.live.delete(name);
  }

  async stopAll(): Promise<void> {
    const children = [...this.live.values()];
    for (const c of children) c.kill("SIGKILL");
    await Promise.all(children.map((c) => (c.exitCode === null ? new Promise((r) => c.once("exit", r)) : undefined)));
    this.live.clear();
  }

  logTail(lines = 40): string {
    const all: string[] = [];
    for (let i = 1; i <= this.counter; i++) {
      for (const kind of ["worker", "supervisor"]) {
        try {
          const text = readFileSync(join(this.dir, `${kind}-${i}.log`), "utf8").trim().split("\n").slice(-lines);
          all.push(`--- ${kind}-${i}`, ...text);
        } catch {
          // that process never existed
        }
      }
    }
    return all.join("\n");
  }
}

async function retry<T>(f: () => Promise<T>, until: number): Promise<T> {
  for (;;) {
    try {
      return await f();
    } catch (e) {
      if (Date.now() > until) throw e;
      await sleep(200);
    }
  }
}

/** The committed checkpoint after which every actor of `job` had seen the end of its input. */
async function finishedCheckpoint(nc: NatsConnection, job: string): Promise<number | undefined> {
  const jobs = await new Kvm(nc).open(JOBS_BUCKET);
  const latest = await jobs.get(latestKey(job));
  if (latest === null || latest.length === 0) return undefined;
  const id = (JSON.parse(decoder.decode(latest.value)) as CommittedCheckpoint).id;
  const rec = await jobs.get(checkpointKey(job, id));
  if (rec === null || rec.length === 0) return undefined;
  const record = JSON.parse(decoder.decode(rec.value)) as CheckpointRecord;
  return record.finished === true && record.status === "committed" ? id : undefined;
}

/** True once every sink partition of `job` has materialized (and so published) checkpoint `id`. */
async function sinksApplied(nc: NatsConnection, job: string, partitions: number, id: number): Promise<boolean> {
  const kv = await new Kvm(nc).open(stateBucket(job, "out"));
  for (let p = 0; p < partitions; p++) {
    const e = await kv.get(appliedKey(p));
    if (e === null || e.length === 0 || (decodeValue(e.value) as number) < id) return false;
  }
  return true;
}

function compare(expected: readonly unknown[], actual: readonly unknown[]): { missing: number; duplicated: number } {
  const counts = new Map<string, number>();
  for (const x of expected) counts.set(JSON.stringify(x), (counts.get(JSON.stringify(x)) ?? 0) + 1);
  let duplicated = 0;
  for (const x of actual) {
    const k = JSON.stringify(x);
    const n = counts.get(k) ?? 0;
    if (n > 0) counts.set(k, n - 1);
    else duplicated++;
  }
  let missing = 0;
  for (const n of counts.values()) missing += n;
  return { missing, duplicated };
}

/**
 * SIGKILLs one server of the cluster — by turns the leader of the source stream, the leader of
 * the jobs bucket, any — and restarts it two seconds later with its store (or an empty one),
 * measuring how long the source stream had no leader that answers.
 */
async function loseServer(nc: NatsConnection, cluster: LocalNatsCluster, n: number, emptyStore: boolean, rnd: () => number, log: (l: string) => void, t0: number): Promise<NatsLoss | undefined> {
  const jsm = await jetstreamManager(nc, { timeout: 2000 });
  const role: NatsLoss["role"] = n % 3 === 0 ? "source-leader" : n % 3 === 1 ? "jobs-leader" : "any";
  const leaderOf = async (stream: string) => (await jsm.streams.info(stream).catch(() => undefined))?.cluster?.leader;
  // The stream may be between leaders (an earlier loss, a step-down): ask again for a while.
  const currentLeaderOf = async (stream: string) => {
    for (let tries = 0; tries < 100; tries++) {
      const leader = await leaderOf(stream);
      if (leader !== undefined) return leader;
      await sleep(100);
    }
    return undefined;
  };
  const name = role === "any" ? cluster.serverName(Math.floor(rnd() * cluster.servers.length)) : await currentLeaderOf(role === "source-leader" ? SOURCE_STREAM : `KV_${JOBS_BUCKET}`);
  const index = cluster.servers.findIndex((_, i) => cluster.serverName(i) === name);
  if (index < 0) return undefined;
  const victim = cluster.servers[index]!;
  const killedAt = Date.now();
  await victim.kill();
  log(`chaos: t=${((killedAt - t0) / 1000).toFixed(1)} s SIGKILL nats-server ${name} (${role})${emptyStore ? ", to come back with an empty store" : ""}`);
  let sourceStallMs = -1;
  while (Date.now() - killedAt < 60_000) {
    const leader = await leaderOf(SOURCE_STREAM);
    if (leader !== undefined && leader !== name) {
      sourceStallMs = Date.now() - killedAt;
      break;
    }
    await sleep(50);
  }
  await sleep(Math.max(0, killedAt + 2000 - Date.now()));
  if (emptyStore) await rm(join(victim.storeDir, "jetstream"), { recursive: true, force: true });
  await victim.restart();
  await cluster.waitForJetStream();
  log(`chaos: t=${((Date.now() - t0) / 1000).toFixed(1)} s nats-server ${name} back; the source stream had a leader again after ${sourceStallMs} ms`);
  return { server: name!, role, emptyStore, sourceStallMs };
}

/**
 * nats-server 2.9.10 crashed while the jobs were being set up (seen twice in about a hundred
 * runs on a loaded machine: a Go crash while the supervisor created the control buckets), before
 * any fault or input: nothing of the run had begun, so it starts over.
 */
class ServerCrashedInSetup extends Error {}

export async function runChaos(options: ChaosOptions): Promise<ChaosResult> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await runChaosOnce(options);
    } catch (e) {
      if (!(e instanceof ServerCrashedInSetup) || attempt >= 3) throw e;
      options.log?.(`chaos: ${e.message}\nchaos: starting over (attempt ${attempt + 1})`);
    }
  }
}

async function runChaosOnce(options: ChaosOptions): Promise<ChaosResult> {
  const log = options.log ?? (() => undefined);
  const started = Date.now();
  const rnd = seededRandom(options.seed ^ 0x5eed);
  const events = generateEvents(options.seed, options.events, options.keys, options.keyDistribution);
  const expected = expectedOutputs(events);
  const publishSeconds = options.publishSeconds ?? Math.max(12, options.events / 2500);
  const deadline = started + (options.timeoutSeconds ?? 540) * 1000;
  const supervisorKills = options.supervisorKills ?? 1;
  const natsRestarts = options.natsRestarts ?? (options.natsCluster === undefined ? 1 : 3);

  const cluster: LocalNatsCluster | undefined = options.natsCluster === undefined ? undefined : await startLocalNatsCluster({ size: options.natsCluster });
  const server: LocalNatsServer | LocalNatsCluster = cluster ?? (await startLocalNatsServer());
  const serverState = () => (cluster === undefined ? (server as LocalNatsServer).describe() : cluster.servers.map((s) => s.describe()).join("\n--- "));
  const procs = new Processes(options.stateCacheMb === undefined ? [] : ["--state-cache-mb", String(options.stateCacheMb)]);
  const nc = await connect({ servers: server.url.split(","), maxReconnectAttempts: -1, reconnectTimeWait: 100 });
  const losses: NatsLoss[] = [];
  let workerKills = 0;
  let supKills = 0;
  let restarts = 0;
  try {
    await ensureStream(nc, SOURCE_STREAM, [SOURCE_SUBJECT]);
    await ensureStream(nc, OUTPUT_STREAM, ["chaos.out.>"]);
    procs.start("supervisor", server.url);
    procs.start("supervisor", server.url);
    procs.start("worker", server.url);
    procs.start("worker", server.url);
    // Running means a first checkpoint committed for both jobs.
    const jobs = await new Kvm(nc)
      .open(JOBS_BUCKET)
      .catch(async () => {
        await sleep(1000);
        return new Kvm(nc).open(JOBS_BUCKET);
      })
      .catch((e) => {
        if (cluster === undefined && (server as LocalNatsServer).exited) throw new ServerCrashedInSetup(`nats-server exited before the jobs ran:\n${serverState()}`);
        throw e;
      });
    const crashed = () => cluster === undefined && (server as LocalNatsServer).exited;
    for (const job of JOBS) {
      while ((await jobs.get(latestKey(job.name)).catch(() => null))?.length ? false : true) {
        if (crashed()) throw new ServerCrashedInSetup(`nats-server exited before the jobs ran:\n${serverState()}`);
        if (Date.now() > deadline) throw new Error(`job ${job.name} never committed a checkpoint\n${procs.logTail()}\n--- ${serverState()}`);
        await sleep(100);
      }
    }
    log(`chaos: jobs running after ${((Date.now() - started) / 1000).toFixed(1)} s`);

    // Seeded schedule of faults over the publishing period.
    type Fault = { at: number; kind: "worker" | "supervisor" | "nats" };
    const faults: Fault[] = [];
    const when = () => (0.1 + 0.8 * rnd()) * publishSeconds * 1000;
    for (let i = 0; i < options.kills; i++) faults.push({ at: when(), kind: "worker" });
    for (let i = 0; i < supervisorKills; i++) faults.push({ at: when(), kind: "supervisor" });
    for (let i = 0; i < natsRestarts; i++) faults.push({ at: when(), kind: "nats" });
    faults.sort((a, b) => a.at - b.at);

    const t0 = Date.now();
    // A server loss of a cluster takes seconds (an election, a restart, catching up); its own
    // sequence keeps it from holding up the process kills scheduled meanwhile.
    const sequence = async (list: readonly Fault[]) => {
      for (const f of list) {
        await sleep(Math.max(0, t0 + f.at - Date.now()));
        if (f.kind === "worker") {
          const live = procs.names("worker");
          const victim = live[Math.floor(rnd() * live.length)];
          if (victim === undefined) continue;
          procs.kill(victim);
          workerKills++;
          log(`chaos: t=${((Date.now() - t0) / 1000).toFixed(1)} s SIGKILL ${victim}`);
          setTimeout(() => procs.start("worker", server.url), 1000);
        } else if (f.kind === "supervisor") {
          // There may be no leader for a while (a takeover; on a cluster, the lease bucket's
          // server lost and its election, which took 20 s on a loaded machine): look again.
          let leader: string | undefined;
          for (let tries = 0; leader === undefined && tries < 600; tries++) {
            const lease = await (await new Kvm(nc).open(LEADER_BUCKET)).get(LEADER_KEY).catch(() => null);
            const holder = lease === null ? "" : decoder.decode(lease.value);
            leader = procs.names("supervisor").find((n) => holder === n);
            if (leader === undefined) await sleep(100);
          }
          if (leader === undefined) continue;
          procs.kill(leader);
          supKills++;
          log(`chaos: t=${((Date.now() - t0) / 1000).toFixed(1)} s SIGKILL leader ${leader}`);
          procs.start("supervisor", server.url);
        } else if (cluster !== undefined) {
          const loss = await loseServer(nc, cluster, restarts, options.natsEmptyStore === true && restarts === natsRestarts - 1, rnd, log, t0);
          if (loss !== undefined) losses.push(loss);
          restarts++;
        } else {
          log(`chaos: t=${((Date.now() - t0) / 1000).toFixed(1)} s restarting nats-server`);
          await (server as LocalNatsServer).restart();
          restarts++;
        }
      }
    };
    const chaos = cluster === undefined ? sequence(faults) : Promise.all([sequence(faults.filter((f) => f.kind !== "nats")), sequence(faults.filter((f) => f.kind === "nats"))]);

    // Publish the input at a steady pace, retrying through the server restart. The expected
    // output follows the events' order, so the stream must hold them in that order: each publish
    // expects the stream's last sequence to be its predecessor's (event k is sequence k + 1). A
    // publish lost in a leader election while later ones of its batch were stored would otherwise
    // be stored after them by the retry; now the later ones are refused, and the retry stores the
    // lost one and then them (the message id drops those stored already).
    const chunk = 200;
    for (let i = 0; i < events.length; i += chunk) {
      const due = t0 + (i / events.length) * publishSeconds * 1000;
      await sleep(Math.max(0, due - Date.now()));
      const batch = events.slice(i, i + chunk).map((e, j) => ({ subject: SOURCE_SUBJECT, data: JSON.stringify(e), headers: { "Nats-Msg-Id": `ev-${i + j}`, "Nats-Expected-Last-Sequence": String(i + j) } }));
      await retry(() => publishAll(nc, batch), deadline);
    }
    await chaos;
    log(`chaos: input published; ending input`);
    for (const job of JOBS) await retry(() => requestEndOfInput(nc, job.name), deadline);

    for (const job of JOBS) {
      for (;;) {
        if (Date.now() > deadline) throw new Error(`job ${job.name} did not finish in time\n${procs.logTail()}\n--- ${serverState()}`);
        const id = await finishedCheckpoint(nc, job.name).catch(() => undefined);
        if (id !== undefined && (await sinksApplied(nc, job.name, 2, id).catch(() => false))) break;
        await sleep(200);
      }
    }
    const jobRestarts: Record<string, number> = {};
    for (const job of JOBS) {
      const status = await retry(async () => (await new Kvm(nc).open(JOBS_BUCKET)).get(statusKey(job.name)), deadline);
      const record = status === null || status.length === 0 ? undefined : (JSON.parse(decoder.decode(status.value)) as JobStatusRecord);
      jobRestarts[job.name] = record?.restarts ?? 0;
      for (const r of record?.recentRestarts ?? []) log(`chaos: ${job.name} restarted after: ${r.reason.slice(0, 160)}`);
    }
    const windows = (await readAll(nc, OUTPUT_STREAM, WINDOWS_SUBJECT)).map((m) => JSON.parse(decoder.decode(m.data)));
    const totalMessages = await readAll(nc, OUTPUT_STREAM, TOTALS_SUBJECT);
    const totals = totalMessages.map((m) => JSON.parse(decoder.decode(m.data)) as TotalOut);
    const w = compare(expected.windows, windows);
    const t = compare(expected.totals, totals);
    const deadLetters = (await Promise.all(JOBS.map((job) => readAll(nc, deadLetterStream(job.name))))).flat();
    const result: ChaosResult = {
      seed: options.seed,
      events: options.events,
      workerKills,
      supervisorKills: supKills,
      natsRestarts: restarts,
      ...(cluster === undefined ? {} : { natsLosses: losses }),
      jobRestarts,
      expected: expected.windows.length + expected.totals.length,
      actual: windows.length + totals.length,
      missing: w.missing + t.missing,
      duplicated: w.duplicated + t.duplicated,
      deadLettered: deadLetters.length,
      exact: w.missing + t.missing + w.duplicated + t.duplicated + deadLetters.length === 0,
      seconds: Math.round((Date.now() - started) / 100) / 10,
    };
    if (!result.exact) {
      // Which records differ, so that a failure can be traced to a key, a partition, a window.
      const show = (name: string, exp: readonly unknown[], act: readonly unknown[]) => {
        const e = new Map<string, number>();
        for (const x of exp) e.set(JSON.stringify(x), (e.get(JSON.stringify(x)) ?? 0) + 1);
        const a = new Map<string, number>();
        for (const x of act) a.set(JSON.stringify(x), (a.get(JSON.stringify(x)) ?? 0) + 1);
        const missing = [...e].filter(([k, n]) => (a.get(k) ?? 0) < n).map(([k]) => k);
        const extra = [...a].filter(([k, n]) => (e.get(k) ?? 0) < n).map(([k]) => k);
        log(`chaos: ${name}: ${missing.length} missing, e.g. ${missing.slice(0, 8).join(" ")}`);
        log(`chaos: ${name}: ${extra.length} unexpected or repeated, e.g. ${extra.slice(0, 8).join(" ")}`);
      };
      show("windows", expected.windows, windows);
      show("totals", expected.totals, totals);
      for (const m of deadLetters.slice(0, 8)) log(`chaos: dead letter on ${m.subject}: ${m.headers[HEADER.reason] ?? "?"} ${decoder.decode(m.data).slice(0, 200)}`);
      // Where a missing running total belonged: the same key's neighbours, with the stream
      // sequence and message id (job/fn/partition/generation/epoch/i) they were published under.
      const byKey = new Map<string, Array<{ n: number; seq: number; id: string }>>();
      totalMessages.forEach((m, i) => {
        const t = totals[i]!;
        const list = byKey.get(t.key) ?? [];
        list.push({ n: t.n, seq: m.seq, id: m.headers["Nats-Msg-Id"] ?? "?" });
        byKey.set(t.key, list);
      });
      const found = new Set(totals.map((t) => `${t.key}#${t.n}`));
      const jsm = await jetstreamManager(nc);
      for (const t of expected.totals.filter((x) => !found.has(`${x.key}#${x.n}`)).slice(0, 8)) {
        const near = (byKey.get(t.key) ?? []).filter((x) => Math.abs(x.n - t.n) <= 2);
        log(`chaos: totals: ${t.key} n=${t.n} missing; near it: ${near.map((x) => `n=${x.n} seq ${x.seq} ${x.id}`).join(", ") || "none"}`);
        // Whether the stream holds it after all (then the filtered read above skipped it): its
        // messages between the neighbours, read one by one by sequence.
        const before = near.filter((x) => x.n < t.n).at(-1)?.seq;
        const after = near.find((x) => x.n > t.n)?.seq;
        if (before === undefined || after === undefined) continue;
        for (let seq = before + 1; seq < after && seq <= before + 40; seq++) {
          const m = await jsm.streams.getMessage(OUTPUT_STREAM, { seq }).catch(() => null);
          if (m !== null && m.subject === TOTALS_SUBJECT && decoder.decode(m.data).includes(`"key":"${t.key}","n":${t.n},`)) log(`chaos: totals: ${t.key} n=${t.n} IS in the stream at seq ${seq} (${m.header?.get("Nats-Msg-Id") ?? "?"}): the read skipped it`);
        }
      }
      const held = (await jsm.streams.info(OUTPUT_STREAM, { subjects_filter: ">" })).state.subjects ?? {};
      log(`chaos: ${OUTPUT_STREAM} holds ${held[TOTALS_SUBJECT] ?? 0} running totals (read ${totalMessages.length}) and ${held[WINDOWS_SUBJECT] ?? 0} window results (read ${windows.length})`);
      const source = await readAll(nc, SOURCE_STREAM);
      const misplaced = source.filter((m, k) => decoder.decode(m.data) !== JSON.stringify(events[k])).length;
      log(`chaos: ${SOURCE_STREAM} holds ${source.length} messages (${events.length} published), last sequence ${source.at(-1)?.seq}, ${misplaced} not at their event's place`);
      const kvm = new Kvm(nc);
      for (const job of JOBS) {
        const jobs = await kvm.open(JOBS_BUCKET);
        const end = await jobs.get(`${job.name}.end`);
        const state = await kvm.open(stateBucket(job.name, "events"));
        const pos = await state.get(positionKey(0));
        const wm = await state.get(watermarkKey(0));
        log(`chaos: ${job.name}: end ${end === null ? "none" : decoder.decode(end.value)}, events/0 _pos ${pos === null ? "none" : String(decodeValue(pos.value))}, _wm ${wm === null ? "none" : JSON.stringify(decodeValue(wm.value))}`);
      }
      log(procs.logTail(200));
    }
    return result;
  } finally {
    await procs.stopAll();
    await nc.close().catch(() => undefined);
    await server.stop();
  }
}

if (import.meta.main) {
  const { values } = parseArgs({
    options: {
      seed: { type: "string", default: "1" },
      events: { type: "string" },
      kills: { type: "string" },
      rules: { type: "boolean", default: false },
      phases: { type: "string" },
      verbose: { type: "boolean", default: false },
      "trust-live": { type: "boolean", default: false },
      moments: { type: "string" },
      keys: { type: "string", default: "64" },
      zipf: { type: "boolean", default: false },
      "state-cache-mb": { type: "string" },
      "nats-cluster": { type: "string" },
      "nats-kills": { type: "string" },
      "nats-empty-store": { type: "boolean", default: false },
      json: { type: "boolean", default: false },
    },
  });
  const num = (name: string, v: string | undefined) => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < 0) {
      process.stderr.write(`chaos: --${name} must be a non-negative integer, got "${v}"\n`);
      process.exit(2);
    }
    return n;
  };
  const cacheMb = (v: string) => {
    const n = Number(v);
    if (!(n > 0)) {
      process.stderr.write(`chaos: --state-cache-mb must be a number of MiB > 0, got "${v}"\n`);
      process.exit(2);
    }
    return n;
  };
  const clusterSize = (v: string) => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < 3 || n > 5) {
      process.stderr.write(`chaos: --nats-cluster must be 3, 4 or 5, got "${v}"\n`);
      process.exit(2);
    }
    return n;
  };
  const log = values.json ? (line: string) => process.stderr.write(line + "\n") : (line: string) => console.log(line);
  if (values.rules) {
    // The rules chaos run (test/chaos/rules-chaos.ts): --events is per phase, --kills at most one per boundary.
    const phases = values.phases === undefined ? 5 : num("phases", values.phases);
    if (phases < 2) {
      process.stderr.write(`chaos: --phases must be at least 2, got "${values.phases}"\n`);
      process.exit(2);
    }
    const result = await runRulesChaos({
      seed: num("seed", values.seed),
      phases,
      eventsPerPhase: values.events === undefined ? 800 : num("events", values.events),
      kills: values.kills === undefined ? phases - 1 : num("kills", values.kills),
      timeoutSeconds: 1_800,
      verbose: values.verbose,
      trustLive: values["trust-live"],
      ...(values.moments === undefined ? {} : { moments: values.moments.split(",").map((m) => (m === "" || m === "none" ? undefined : (m as "before-apply"))) }),
      log,
    });
    console.log(JSON.stringify(result));
    process.exit(result.exact ? 0 : 1);
  }
  const opts: ChaosOptions = {
    seed: num("seed", values.seed),
    events: num("events", values.events ?? "200000"),
    kills: num("kills", values.kills ?? "10"),
    keys: Math.max(1, num("keys", values.keys)),
    keyDistribution: values.zipf ? "zipf" : "uniform",
    ...(values["state-cache-mb"] === undefined ? {} : { stateCacheMb: cacheMb(values["state-cache-mb"]) }),
    ...(values["nats-cluster"] === undefined ? {} : { natsCluster: clusterSize(values["nats-cluster"]) }),
    ...(values["nats-kills"] === undefined ? {} : { natsRestarts: num("nats-kills", values["nats-kills"]) }),
    ...(values["nats-empty-store"] ? { natsEmptyStore: true } : {}),
    log,
  };
  const result = await runChaos(opts);
  console.log(JSON.stringify(result));
  process.exit(result.exact ? 0 : 1);
}
