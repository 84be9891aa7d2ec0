/**
 * Recovery time after a worker crash, for a given number of keys of state: a keyed job runs with
 * `keys` keys of state on two worker processes under a supervisor process, a checkpoint covering
 * all of them is committed and materialized in KV, then the worker owning the most keyed
 * partitions is SIGKILLed while probe records keep arriving. The keys are either preloaded into
 * the counters' bucket before the job starts, as a materialized load leaves them (`load:
 * "preload"`, preload-state.ts; the default from 1 M keys, where the job's own load takes 20–80
 * minutes on the shared machine), or published in batches of JSON lines and counted by the job
 * (`"job"`). Reported, from the kill:
 *
 * - `detectionMs`: until its heartbeat is gone from the workers bucket (expiry);
 * - `decisionMs`: until the supervisor logs the new generation;
 * - `restoreMs`: from that decision until the first probe is processed and published by the
 *   new generation's actors (restoring their state, reopening inputs, replaying from the
 *   checkpoint);
 * - `totalMs`: kill to first probe out.
 *
 * The phases are taken from the processes' log lines and from KV, timestamped when this process
 * sees them, so each carries a few milliseconds of observation delay.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { join, resolve } from "node:path";
import { Kvm } from "@nats-io/kv";
import { connect } from "@nats-io/transport-node";
import { jetstream, DeliverPolicy } from "@nats-io/jetstream";
import { freePort, startLocalNatsServer } from "../../runtime/nats/local-server.ts";
import { ensureStream, publishAll } from "../../runtime/nats/streams.ts";
import { assignmentKey, heartbeatKey, JOBS_BUCKET, latestKey, WORKERS_BUCKET, type Assignment } from "../../runtime/core/protocol.ts";
import { appliedKey, positionKey } from "../../runtime/core/kv-keys.ts";
import { stateBucket } from "../../runtime/core/naming.ts";
import { decodeValue } from "../../runtime/core/wire.ts";
import { defaultLoadMode, preloadKeyedState, type LoadMode } from "./preload-state.ts";
import workload, { RECOVERY_LOAD_BATCH, RECOVERY_OUTPUT_STREAM, RECOVERY_OUTPUT_SUBJECT, RECOVERY_PARTITIONS, RECOVERY_SOURCE_STREAM, RECOVERY_SOURCE_SUBJECT } from "./recovery-workload.ts";

export interface RecoveryBenchResult {
  readonly bench: "recovery";
  readonly keys: number;
  readonly partitions: number;
  /** Keyed partitions the killed worker owned. */
  readonly killedPartitions: number;
  readonly load: LoadMode;
  /** Writing the preloaded entries into KV (`load: "preload"` only). */
  readonly preloadSeconds: number | undefined;
  /**
   * Until a checkpoint covering the state is materialized: `"job"`: publishing the load (paced by
   * the job) and processing it; `"preload"`: the preload and the job's start on it.
   */
  readonly loadSeconds: number;
  readonly detectionMs: number;
  readonly decisionMs: number;
  readonly restoreMs: number;
  readonly totalMs: number;
}

const ROOT = resolve(import.meta.dirname, "../..");
const CLI = join(ROOT, "runtime/cli/main.mjs");
const WORKLOAD = join(ROOT, "test/bench/recovery-workload.ts");
const JOB = "recbench";
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const phase = (what: string) => process.stderr.write(`${new Date().toISOString()} ${what}\n`);
const decoder = new TextDecoder();

interface Child {
  readonly proc: ChildProcess;
  /** Log lines with the time they arrived. */
  readonly lines: Array<{ at: number; line: string }>;
}

function start(args: string[]): Child {
  const proc = spawn(process.execPath, [CLI, ...args], { cwd: ROOT, stdio: ["ignore", "pipe", "pipe"] });
  const lines: Child["lines"] = [];
  for (const s of [proc.stdout!, proc.stderr!]) {
    let rest = "";
    s.on("data", (d: Buffer) => {
      const at = Date.now();
      const parts = (rest + d.toString()).split("\n");
      rest = parts.pop()!;
      for (const line of parts) lines.push({ at, line });
    });
  }
  return { proc, lines };
}

/** Source messages published per chunk of the load, and the input lag (messages, over the job) a chunk waits for. */
const LOAD_CHUNK_MESSAGES = 20;
const MAX_INPUT_LAG_MESSAGES = 16;

/**
 * Input messages waiting in the job (`eddy_input_lag_messages` over every actor of both workers);
 * undefined while a worker does not answer or runs no actor yet.
 */
async function inputLag(ports: readonly number[]): Promise<number | undefined> {
  let lag = 0;
  let actors = 0;
  for (const port of ports) {
    const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
    for (const line of text.split("\n")) {
      if (!line.startsWith("eddy_input_lag_messages{")) continue;
      actors++;
      lag += Number(line.slice(line.lastIndexOf(" ") + 1));
    }
  }
  return actors === 0 ? undefined : lag;
}

async function until<T>(what: string, f: () => Promise<T | undefined>, timeoutMs: number): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await f().catch(() => undefined);
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

export async function benchRecovery(keys: number, load: LoadMode = defaultLoadMode(keys)): Promise<RecoveryBenchResult> {
  const server = await startLocalNatsServer();
  const nc = await connect({ servers: server.url, maxReconnectAttempts: -1 });
  const children: Child[] = [];
  try {
    await ensureStream(nc, RECOVERY_SOURCE_STREAM, [RECOVERY_SOURCE_SUBJECT]);
    await ensureStream(nc, RECOVERY_OUTPUT_STREAM, [RECOVERY_OUTPUT_SUBJECT]);
    const loadStarted = Date.now();
    let preloadSeconds: number | undefined;
    if (load === "preload") {
      // Every counter at 1 in KV, as the job's own load would leave them once materialized.
      phase(`preloading ${keys} keys`);
      preloadSeconds = (await preloadKeyedState(nc, { pipeline: workload, fn: "count", state: "n", keys, keyOf: (i) => `key-${i}`, valueOf: () => 1, log: phase })).seconds;
    } else phase(`publishing ${keys} records`);
    const supervisor = start(["supervisor", "--nats", server.url, "--id", "bench-supervisor", "--checkpoint-interval", "2000"]);
    const metricsPorts = [await freePort(), await freePort()];
    const workers = metricsPorts.map((port) => start(["worker", "--pipeline", WORKLOAD, "--nats", server.url, "--metrics-port", String(port)]));
    children.push(supervisor, ...workers);

    // The load, in batches (json-lines, RECOVERY_LOAD_BATCH records a message): one message per
    // record took 10+ minutes to publish and as long to process at 10 M keys. Published all at
    // once, though, the source forwards records far faster than the counters take them, barriers
    // queue behind the backlog and checkpoints time out (the job restarted from checkpoint 0 over
    // and over): so a chunk is published only once the job's inputs are nearly drained, as a
    // producer under backpressure would. Probes stay one record per message.
    let loadMessages = 0;
    for (let i = 0; load === "job" && i < keys; ) {
      const chunkEnd = Math.min(keys, i + LOAD_CHUNK_MESSAGES * RECOVERY_LOAD_BATCH);
      loadMessages += await publishAll(nc, (function* () {
        for (let j = i; j < chunkEnd; j += RECOVERY_LOAD_BATCH) {
          const lines: string[] = [];
          for (let k = j; k < Math.min(chunkEnd, j + RECOVERY_LOAD_BATCH); k++) lines.push(`{"k":"key-${k}"}`);
          yield { subject: RECOVERY_SOURCE_SUBJECT, data: lines.join("\n") };
        }
      })(), 64);
      i = chunkEnd;
      await sleep(100);
      await until("the job to take the load", async () => ((await inputLag(metricsPorts)) ?? Infinity) <= MAX_INPUT_LAG_MESSAGES ? true : undefined, 30 * 60_000);
    }
    if (load === "job") phase(`published ${keys} records in ${loadMessages} messages (${((Date.now() - loadStarted) / 1000).toFixed(1)} s)`);

    // Loaded: a committed checkpoint taken after every record was counted, materialized in KV.
    const kvm = new Kvm(nc);
    const jobs = await until("the jobs bucket", () => kvm.open(JOBS_BUCKET), 60_000);
    const state = await until("the state bucket", () => kvm.open(stateBucket(JOB, "count")), 120_000);
    phase("processing");
    const applied = async (bucket: Awaited<ReturnType<typeof kvm.open>>, p: number) => {
      const e = await bucket.get(appliedKey(p));
      return e === null || e.length === 0 ? 0 : (decodeValue(e.value) as number);
    };
    // A checkpoint whose source position is past the last record covers every count: its barrier
    // reached the counters behind all of them. Once the source has materialized one, that one is it.
    // (Preloaded: any checkpoint the source materialized, position 1 and on, covers the preload.)
    const read = await until("the source's state bucket", () => kvm.open(stateBucket(JOB, "read")), 120_000);
    const target = await until("a checkpoint after every record", async () => {
      const pos = await read.get(positionKey(0));
      if (pos === null || pos.length === 0 || (decodeValue(pos.value) as number) <= loadMessages) return undefined;
      // That position was materialized after its checkpoint committed: the latest commit now is it or later.
      const latest = await jobs.get(latestKey(JOB));
      return latest === null || latest.length === 0 ? undefined : (JSON.parse(decoder.decode(latest.value)) as { id: number }).id;
    }, 30 * 60_000);
    phase(`checkpoint ${target} committed; materializing`);
    await until("materialization", async () => {
      for (let p = 0; p < RECOVERY_PARTITIONS; p++) if ((await applied(state, p)) < target) return undefined;
      return true;
    }, 30 * 60_000);
    const loadSeconds = (Date.now() - loadStarted) / 1000;

    // The worker owning the most counter partitions is the one to kill.
    const assignment = JSON.parse(decoder.decode((await jobs.get(assignmentKey(JOB)))!.value)) as Assignment;
    const byWorker = new Map<string, number>();
    for (const [actor, worker] of Object.entries(assignment.owners)) if (actor.startsWith("count/")) byWorker.set(worker, (byWorker.get(worker) ?? 0) + 1);
    const [victimId, killedPartitions] = [...byWorker].sort((a, b) => b[1] - a[1])[0]!;
    const heartbeats = await kvm.open(WORKERS_BUCKET);
    const hb = JSON.parse(decoder.decode((await heartbeats.get(heartbeatKey(JOB, victimId)))!.value)) as { pid: number };
    const victim = workers.find((w) => w.proc.pid === hb.pid);
    if (victim === undefined) throw new Error(`worker ${victimId} (pid ${hb.pid}) is none of the benchmark's workers`);

    // Probes: one record per 20 ms on fresh keys, from the kill on; the first to come out ends it.
    const js = jetstream(nc);
    const outStart = (await (await js.streams.get(RECOVERY_OUTPUT_STREAM)).info()).state.last_seq + 1;
    const killedAt = Date.now();
    victim.proc.kill("SIGKILL");
    phase(`killed ${victimId} (${killedPartitions} of ${RECOVERY_PARTITIONS} counter partitions)`);
    let probing = true;
    const probes = (async () => {
      for (let i = 0; probing; i++) {
        await js.publish(RECOVERY_SOURCE_SUBJECT, JSON.stringify({ k: `probe-${i}`, probe: Date.now() }));
        await sleep(20);
      }
    })();
    const consumer = await js.consumers.get(RECOVERY_OUTPUT_STREAM, { deliver_policy: DeliverPolicy.StartSequence, opt_start_seq: outStart });
    const messages = await consumer.consume({ max_messages: 64 });
    let firstOut = 0;
    const deadline = setTimeout(() => messages.stop(), 30 * 60_000);
    let detectedAt = 0;
    const watchHeartbeat = (async () => {
      detectedAt = await until("the heartbeat to expire", async () => ((await heartbeats.get(heartbeatKey(JOB, victimId)))?.length ? undefined : Date.now()), 60_000);
    })();
    // The survivor's own partitions go on processing probes until the supervisor restarts every
    // actor in a new generation; the first probe out after the survivor has replaced its actors
    // with the new generation's is the recovered job's.
    const decisionLine = () => supervisor.lines.find((l) => l.at >= killedAt && /generation \d+:/.test(l.line));
    const survivor = workers.find((w) => w !== victim)!;
    const restartLine = () => survivor.lines.find((l) => l.at >= killedAt && /generation \d+, starting/.test(l.line));
    for await (const m of messages) {
      void m;
      const now = Date.now();
      const r = restartLine();
      if (r !== undefined && now > r.at) {
        firstOut = now;
        break;
      }
    }
    clearTimeout(deadline);
    messages.stop();
    probing = false;
    await probes;
    await watchHeartbeat;
    const decision = decisionLine();
    if (firstOut === 0 || decision === undefined) throw new Error(`no recovery observed:\n${supervisor.lines.slice(-20).map((l) => l.line).join("\n")}`);
    return {
      bench: "recovery",
      keys,
      partitions: RECOVERY_PARTITIONS,
      killedPartitions,
      load,
      preloadSeconds,
      loadSeconds: Math.round(loadSeconds * 10) / 10,
      detectionMs: detectedAt - killedAt,
      decisionMs: decision.at - killedAt,
      restoreMs: firstOut - decision.at,
      totalMs: firstOut - killedAt,
    };
  } finally {
    for (const c of children) c.proc.kill("SIGKILL");
    await Promise.all(children.map((c) => (c.proc.exitCode === null && c.proc.signalCode === null ? new Promise((r) => c.proc.once("exit", r)) : undefined)));
    await nc.close();
    await server.stop();
  }
}
