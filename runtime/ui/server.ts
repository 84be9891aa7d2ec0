/**
 * The web console's server (`eddy ui`): static assets and a small JSON API over one NATS
 * connection, in the eddy process, with server-sent events for the pages that update live.
 *
 * The browser code (runtime/ui/app/) is bundled with esbuild when the server starts — in memory,
 * from the files in this repository and node_modules, so nothing is fetched from the network at
 * run time and there is no build step to forget. The API reads what `eddy status`, `eddy
 * checkpoints`, `eddy dlq` and `eddy state` read (runtime/cli, runtime/nats), with the NATS
 * permissions of the user the console runs as; the decisions about what to show are in
 * runtime/core/console-view.ts. It is read-only unless started with `admin`: then, and only then,
 * state puts and deletes are accepted, each confirmed by the page.
 *
 * Every request is hostile until checked: names and keys are validated (400 with the reason),
 * an unknown job is 404, a NATS outage 503; no request can throw past its handler.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { readFile } from "node:fs/promises";
import { fileURLToPath } from "node:url";
import type { AddressInfo } from "node:net";
import { build } from "esbuild";
import type { NatsConnection } from "../nats/connection.ts";
import { listJobViews, readJobView, type JobView } from "../nats/job-views.ts";
import { requestLiveStats } from "../nats/live-stats.ts";
import { ensureControlStores, liveWorkers, readJson } from "../nats/control-store.ts";
import { listDeadLetters, NoDeadLettersError } from "../nats/dead-letters.ts";
import { stateClient } from "../nats/state-client.ts";
import { UnknownJobError } from "../nats/control.ts";
import { readJobStatus, type JobStatus } from "../cli/status.ts";
import { readCheckpointRecords } from "../cli/checkpoints.ts";
import { assignmentKey } from "../core/protocol.ts";
import {
  backpressureCauses,
  checkName,
  checkpointRow,
  checkStateQuery,
  checkStateWrite,
  functionSummaries,
  graphOf,
  jobRow,
  liveSampleOf,
  partitionRows,
  type CheckpointRow,
  type FunctionSummary,
  type JobGraphModel,
  type JobRow,
  type LiveSample,
  type PartitionRow,
} from "../core/console-view.ts";
import { InputError, TransientError } from "../errors.ts";

/** Options of {@link startConsole}. */
export interface ConsoleOptions {
  readonly nc: NatsConnection;
  /** Default 127.0.0.1: the console is for whoever can reach the machine. */
  readonly host?: string;
  /** 0 (default) takes a free port. */
  readonly port?: number;
  /** Accept state puts and deletes (default false: read-only). */
  readonly admin?: boolean;
  /** How often live pages get an update (default 1 000 ms). */
  readonly intervalMs?: number;
}

/** A running console. */
export interface RunningConsole extends AsyncDisposable {
  readonly url: string;
  readonly port: number;
  close(): Promise<void>;
}

/** What the job page receives on every update. */
export interface JobPayload {
  readonly at: number;
  readonly status: Omit<JobStatus, "partitions" | "streams">;
  readonly streams: JobStatus["streams"];
  readonly graph: JobGraphModel;
  readonly functions: readonly FunctionSummary[];
  readonly partitions: readonly PartitionRow[];
  readonly causes: readonly string[];
  readonly checkpoints: readonly CheckpointRow[];
  readonly workers: number;
}

/** What the jobs page receives. */
export interface JobsPayload {
  readonly at: number;
  readonly jobs: readonly JobRow[];
}

/** A worker on the workers page. */
export interface WorkerRow {
  readonly worker: string;
  readonly pid: number;
  readonly startedAt: number;
  readonly jobs: ReadonlyArray<{ readonly job: string; readonly running: number | null; readonly actors: readonly string[] }>;
  readonly leaving: boolean;
}

const HERE = fileURLToPath(new URL(".", import.meta.url));
const ROOT = fileURLToPath(new URL("../../", import.meta.url));

/** The browser bundle and its styles, built once at start. */
async function assets(): Promise<{ js: string; css: string; html: string }> {
  const out = await build({
    entryPoints: [`${HERE}app/main.ts`],
    bundle: true,
    write: false,
    format: "esm",
    platform: "browser",
    target: "es2022",
    minify: true,
    logLevel: "silent",
    absWorkingDir: ROOT,
  });
  const js = out.outputFiles[0]!.text;
  const css = (await readFile(`${ROOT}node_modules/uplot/dist/uPlot.min.css`, "utf8")) + "\n" + (await readFile(`${HERE}app/console.css`, "utf8"));
  const html = await readFile(`${HERE}app/index.html`, "utf8");
  return { js, css, html };
}

/** Why a request failed, as an HTTP status and a message for the page. */
function failure(e: unknown): { status: number; message: string } {
  const message = e instanceof Error ? e.message : String(e);
  if (e instanceof UnknownJobError || e instanceof NoDeadLettersError) return { status: 404, message };
  if (e instanceof InputError) return { status: 400, message };
  if (e instanceof TransientError || /timeout|no responders|disconnect|closed/i.test(message)) return { status: 503, message };
  return { status: 500, message };
}

function send(res: ServerResponse, status: number, body: unknown): void {
  if (res.headersSent) return;
  res.writeHead(status, { "content-type": "application/json; charset=utf-8", "cache-control": "no-store" });
  res.end(JSON.stringify(body));
}

const refuse = (res: ServerResponse, status: number, reason: string) => send(res, status, { error: reason });

/** Reads a request body up to `limit` bytes; undefined when it is larger. */
function bodyOf(req: IncomingMessage, limit = 256 * 1024): Promise<string | undefined> {
  return new Promise((resolve, reject) => {
    let size = 0;
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => {
      size += c.length;
      if (size > limit) {
        resolve(undefined);
        req.destroy();
      } else chunks.push(c);
    });
    req.on("end", () => resolve(Buffer.concat(chunks).toString("utf8")));
    req.on("error", reject);
  });
}

/** Gathers a page's figures from NATS; keeps the previous live sample of each job for rates. */
class Gatherer {
  private readonly previous = new Map<string, LiveSample>();
  private readonly nc: NatsConnection;
  constructor(nc: NatsConnection) {
    this.nc = nc;
  }

  /** The live figures of a job's actors, and the sample before (for rates). */
  private async live(job: string, workers: number): Promise<{ now: LiveSample; before: LiveSample | undefined }> {
    const replies = workers === 0 ? [] : await requestLiveStats(this.nc, job, { expected: workers, maxWaitMs: 800 });
    const now = liveSampleOf(replies);
    const before = this.previous.get(job);
    this.previous.set(job, now);
    return { now, before };
  }

  private async workerCounts(): Promise<Map<string, number>> {
    const live = await liveWorkers(await ensureControlStores(this.nc));
    return new Map([...live].map(([job, ws]) => [job, ws.size]));
  }

  async jobs(): Promise<JobsPayload> {
    const [views, counts] = await Promise.all([listJobViews(this.nc, { all: true }), this.workerCounts()]);
    const now = Date.now();
    const jobs = await Promise.all(views.map(async (v) => {
      const workers = counts.get(v.job) ?? 0;
      let summaries: FunctionSummary[] | undefined;
      if (workers > 0) {
        const status = await readJobStatus(this.nc, v.job, now).catch(() => undefined);
        if (status !== undefined) {
          const { now: sample, before } = await this.live(v.job, workers);
          summaries = functionSummaries(v.functions, partitionRows(status.partitions, sample, before, now));
        }
      }
      return jobRow({ job: v.job, state: v.state, version: v.deployment?.version ?? null, generation: v.generation, restarts: v.restarts, lastCheckpoint: v.lastCheckpoint, functions: functionsOf(v) }, summaries, now);
    }));
    return { at: now, jobs };
  }

  async job(job: string): Promise<JobPayload> {
    const view = await readJobView(this.nc, job);
    const counts = await this.workerCounts();
    const workers = counts.get(job) ?? 0;
    const now = Date.now();
    const [status, records, live] = await Promise.all([readJobStatus(this.nc, job, now), readCheckpointRecords(this.nc, job).catch(() => []), this.live(job, workers)]);
    const graph = graphOf(view.spec ?? { functions: functionsOf(view).map((f) => ({ ...f, isSource: f.isSource ?? false })) });
    const partitions = partitionRows(status.partitions, live.now, live.before, now);
    const functions = functionSummaries(view.functions, partitions);
    const { partitions: _p, streams, ...rest } = status;
    return { at: now, status: rest, streams, graph, functions, partitions, causes: backpressureCauses(graph, functions), checkpoints: records.slice(0, 100).map(checkpointRow), workers };
  }

  async workers(): Promise<{ at: number; workers: WorkerRow[] }> {
    const stores = await ensureControlStores(this.nc);
    const live = await liveWorkers(stores);
    const rows = new Map<string, { worker: string; pid: number; startedAt: number; leaving: boolean; jobs: Array<{ job: string; running: number | null; actors: string[] }> }>();
    for (const [job, ws] of live) {
      const assignment = await readJson(stores.jobs, assignmentKey(job), "assignment").catch(() => undefined);
      for (const [id, hb] of ws) {
        let row = rows.get(id);
        if (row === undefined) rows.set(id, (row = { worker: id, pid: hb.pid, startedAt: hb.startedAt, leaving: false, jobs: [] }));
        row.leaving ||= hb.leaving === true;
        const owners = assignment?.value.owners ?? {};
        row.jobs.push({ job, running: hb.running?.[job] ?? null, actors: Object.keys(owners).filter((a) => owners[a] === id).sort() });
      }
    }
    return { at: Date.now(), workers: [...rows.values()].sort((a, b) => (a.worker < b.worker ? -1 : 1)) };
  }
}

function functionsOf(v: JobView): Array<{ name: string; partitions: number; isSource?: boolean }> {
  const sources = new Map(v.spec?.functions.map((f) => [f.name, f.isSource]) ?? []);
  return v.functions.map((f) => ({ name: f.name, partitions: f.partitions, ...(sources.has(f.name) ? { isSource: sources.get(f.name)! } : {}) }));
}

const textDecoder = new TextDecoder("utf-8", { fatal: true });
function preview(data: Uint8Array): string {
  try {
    const t = textDecoder.decode(data.subarray(0, 2048));
    return t.length > 300 ? t.slice(0, 300) + "…" : t;
  } catch {
    return `(${data.length} bytes, not UTF-8)`;
  }
}

const LOOPBACK: ReadonlySet<string> = new Set(["127.0.0.1", "localhost", "::1", "[::1]"]);

/** The host name of a Host header, without the port. */
function hostnameOf(host: string | undefined): string {
  if (host === undefined) return "";
  if (host.startsWith("[")) return host.slice(0, host.indexOf("]") + 1);
  const colon = host.lastIndexOf(":");
  return colon === -1 ? host : host.slice(0, colon);
}

/**
 * Starts the console. Resolves once it listens; `close()` ends open event streams and stops it
 * (the NATS connection stays the caller's).
 */
export async function startConsole(options: ConsoleOptions): Promise<RunningConsole> {
  const { nc } = options;
  const admin = options.admin === true;
  const interval = options.intervalMs ?? 1_000;
  const files = await assets();
  const gatherer = new Gatherer(nc);
  const streams = new Set<ServerResponse>();

  const loopbackOnly = LOOPBACK.has(options.host ?? "127.0.0.1");
  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    // A console on a loopback address answers only to loopback names: a page of another site
    // whose name an attacker pointed at 127.0.0.1 (DNS rebinding) sends its own name as Host.
    if (loopbackOnly && !LOOPBACK.has(hostnameOf(req.headers.host))) return refuse(res, 403, "host: this console answers only to 127.0.0.1, localhost and [::1]");
    const url = new URL(req.url ?? "/", "http://console");
    const path = url.pathname;
    if (req.method === "GET" && (path === "/" || path === "/index.html")) {
      res.writeHead(200, {
        "content-type": "text/html; charset=utf-8",
        "content-security-policy": "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:",
        "x-content-type-options": "nosniff",
      });
      res.end(files.html);
      return;
    }
    if (req.method === "GET" && path === "/app.js") {
      res.writeHead(200, { "content-type": "text/javascript; charset=utf-8", "x-content-type-options": "nosniff" });
      res.end(files.js);
      return;
    }
    if (req.method === "GET" && path === "/app.css") {
      res.writeHead(200, { "content-type": "text/css; charset=utf-8" });
      res.end(files.css);
      return;
    }
    if (req.method === "GET" && path === "/favicon.ico") {
      res.writeHead(204);
      res.end();
      return;
    }
    if (req.method === "GET" && path === "/api/config") return send(res, 200, { admin });
    if (req.method === "GET" && path === "/api/events") return events(url, req, res);
    if (req.method === "GET" && path === "/api/jobs") return send(res, 200, await gatherer.jobs());
    if (req.method === "GET" && path === "/api/workers") return send(res, 200, await gatherer.workers());
    const m = /^\/api\/jobs\/([^/]*)(?:\/(dlq|state))?$/.exec(path);
    if (m === null) return refuse(res, 404, `no such page: ${path.slice(0, 100)}`);
    let name: string;
    try {
      name = decodeURIComponent(m[1]!);
    } catch {
      return refuse(res, 400, "job: not a valid URL component");
    }
    const job = checkName("job", name);
    if (!job.ok) return refuse(res, 400, job.reason);
    if (m[2] === undefined && req.method === "GET") return send(res, 200, await gatherer.job(job.value));
    if (m[2] === "dlq" && req.method === "GET") {
      const letters = await listDeadLetters(nc, job.value).catch((e) => {
        if (e instanceof NoDeadLettersError) return [];
        throw e;
      });
      const newest = letters.slice(-500).reverse();
      return send(res, 200, {
        total: letters.length,
        letters: newest.map((d) => ({ seq: d.seq, function: d.headers["Eddy-Function"] ?? null, time: d.time, reason: d.headers["Eddy-Reason"] ?? null, size: d.data.length, origin: d.headers["Eddy-Source-Subject"] ?? d.headers["Eddy-Producer"] ?? null, preview: preview(d.data) })),
      });
    }
    if (m[2] === "state" && req.method === "GET") {
      const q = checkStateQuery(url.searchParams);
      if (!q.ok) return refuse(res, 400, q.reason);
      const client = await stateClient(nc, job.value, q.value.fn, { timeoutMs: 5_000 });
      const consistency = q.value.committed ? "committed" : "live";
      if (q.value.op === "get") {
        const value = await client.get(q.value.state, q.value.key, { consistency, ...(q.value.subkey === undefined ? {} : { subkey: q.value.subkey }) });
        return send(res, 200, { found: value !== undefined, value: value ?? null, partition: client.partitionOf(q.value.key) });
      }
      const entries: unknown[] = [];
      for await (const e of client.scan({ consistency, ...(q.value.state === undefined ? {} : { state: q.value.state }), ...(q.value.prefix === undefined ? {} : { prefix: q.value.prefix }), pageSize: Math.min(q.value.limit, 100) })) {
        entries.push(e);
        if (entries.length >= q.value.limit) break;
      }
      return send(res, 200, { entries, more: entries.length >= q.value.limit });
    }
    if (m[2] === "state" && req.method === "POST") {
      if (!admin) return refuse(res, 403, "the console is read-only (start it with --admin to write state)");
      // A form on another site cannot send JSON, and a script there cannot without CORS.
      if (!(req.headers["content-type"] ?? "").startsWith("application/json")) return refuse(res, 415, "body: send application/json");
      const origin = req.headers.origin;
      if (origin !== undefined && origin !== `http://${req.headers.host}`) return refuse(res, 403, "origin: writes are accepted from the console's own pages only");
      const body = await bodyOf(req);
      if (body === undefined) return refuse(res, 413, "body: larger than 256 KiB");
      const w = checkStateWrite(body);
      if (!w.ok) return refuse(res, 400, w.reason);
      const client = await stateClient(nc, job.value, w.value.fn, { timeoutMs: 10_000 });
      const opts = w.value.subkey === undefined ? {} : { subkey: w.value.subkey };
      const receipt = w.value.op === "put" ? await client.put(w.value.state, w.value.key, w.value.value, opts) : await client.delete(w.value.state, w.value.key, opts);
      return send(res, 200, receipt);
    }
    return refuse(res, 405, `${req.method} not allowed here`);
  };

  /** Server-sent events: the figures of one page (`view=jobs|job|workers`, `job=` for a job) every interval. */
  const events = (url: URL, req: IncomingMessage, res: ServerResponse): void => {
    const view = url.searchParams.get("view") ?? "jobs";
    if (view !== "jobs" && view !== "job" && view !== "workers") return refuse(res, 400, `view: ${JSON.stringify(view.slice(0, 20))} is not jobs, job or workers`);
    let job: string | undefined;
    if (view === "job") {
      const c = checkName("job", url.searchParams.get("job"));
      if (!c.ok) return refuse(res, 400, c.reason);
      job = c.value;
    }
    res.writeHead(200, { "content-type": "text/event-stream; charset=utf-8", "cache-control": "no-store", connection: "keep-alive" });
    streams.add(res);
    let open = true;
    const finish = () => {
      open = false;
      streams.delete(res);
    };
    req.on("close", finish);
    res.on("error", finish);
    void (async () => {
      while (open) {
        const started = Date.now();
        try {
          const payload = view === "jobs" ? await gatherer.jobs() : view === "workers" ? await gatherer.workers() : await gatherer.job(job!);
          if (open) res.write(`data: ${JSON.stringify(payload)}\n\n`);
        } catch (e) {
          const f = failure(e);
          if (open) res.write(`event: problem\ndata: ${JSON.stringify({ status: f.status, error: f.message })}\n\n`);
        }
        await new Promise((r) => setTimeout(r, Math.max(100, interval - (Date.now() - started))));
      }
    })();
  };

  const server: Server = createServer((req, res) => {
    handle(req, res).catch((e: unknown) => {
      const f = failure(e);
      refuse(res, f.status, f.message);
    });
  });
  server.on("clientError", (_e, socket) => socket.destroy());
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(options.port ?? 0, options.host ?? "127.0.0.1", () => resolve());
  });
  const address = server.address() as AddressInfo;
  const host = address.family === "IPv6" ? `[${address.address}]` : address.address;
  const close = async () => {
    for (const s of streams) s.end();
    streams.clear();
    server.closeAllConnections();
    await new Promise<void>((r) => server.close(() => r()));
  };
  return { url: `http://${host}:${address.port}`, port: address.port, close, [Symbol.asyncDispose]: close };
}
