/**
 * Local nats-server processes for development, the demo and integration tests.
 *
 * `startLocalNatsServer` spawns the `nats-server` binary bound to 127.0.0.1 with JetStream enabled
 * on a store directory, waits until it accepts clients and hands back a handle that can stop, kill
 * (for chaos tests) and restart it on the same port and store. Production deployments run their
 * own NATS; nothing here is used on the hot path.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { accessSync, constants as fsConstants, readdirSync, readFileSync, rmSync, statSync } from "node:fs";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { delimiter, join } from "node:path";
import { InputError, TransientError } from "../errors.ts";

/** Where we look for the binary after `NATS_SERVER_BIN` and `PATH`. */
const WELL_KNOWN_PATHS = ["/usr/sbin/nats-server", "/usr/local/bin/nats-server"];

const HOST = "127.0.0.1";
const READY_TIMEOUT_MS = 10_000;
const STOP_TIMEOUT_MS = 5_000;
// The reason for a failed start is in the last lines; earlier ones are the startup banner.
const STDERR_TAIL_LINES = 12;

/** Thrown when no nats-server binary can be found; the message says how to install one. */
export class NatsServerMissingError extends InputError {
  override readonly name = "NatsServerMissingError";
  constructor(detail?: string) {
    super(
      [
        "nats-server was not found" + (detail ? ` (${detail})` : "") + ".",
        "Install it:",
        "  Debian/Ubuntu: sudo apt-get install -y nats-server",
        "  macOS:         brew install nats-server",
        "  otherwise:     download a release from https://github.com/nats-io/nats-server/releases",
        "or point NATS_SERVER_BIN at an existing binary.",
      ].join("\n"),
    );
  }
}

/**
 * Thrown when nats-server exited or did not become ready in time; the message carries the tail of
 * its stderr, which is where the reason is (bad config, port in use, store dir not writable).
 */
export class NatsServerStartError extends TransientError {
  override readonly name = "NatsServerStartError";
  readonly stderrTail: string;
  constructor(message: string, stderrTail: string) {
    super(stderrTail ? `${message}\n--- nats-server stderr (tail) ---\n${stderrTail}` : message);
    this.stderrTail = stderrTail;
  }
}

function isExecutableFile(path: string): boolean {
  try {
    accessSync(path, fsConstants.X_OK);
    return statSync(path).isFile();
  } catch {
    return false;
  }
}

/**
 * Finds the nats-server binary: `NATS_SERVER_BIN`, then `PATH`, then the usual install locations.
 * Returns `undefined` if there is none.
 */
export function findNatsServerBinary(env: NodeJS.ProcessEnv = process.env): string | undefined {
  const fromEnv = env.NATS_SERVER_BIN;
  if (fromEnv) return isExecutableFile(fromEnv) ? fromEnv : undefined;
  for (const dir of (env.PATH ?? "").split(delimiter)) {
    if (!dir) continue;
    const candidate = join(dir, "nats-server");
    if (isExecutableFile(candidate)) return candidate;
  }
  return WELL_KNOWN_PATHS.find(isExecutableFile);
}

/** Like {@link findNatsServerBinary}, but throws {@link NatsServerMissingError} if there is none. */
export function requireNatsServerBinary(env: NodeJS.ProcessEnv = process.env): string {
  const bin = findNatsServerBinary(env);
  if (bin) return bin;
  throw new NatsServerMissingError(
    env.NATS_SERVER_BIN ? `NATS_SERVER_BIN=${env.NATS_SERVER_BIN} is not an executable file` : undefined,
  );
}

/** Asks the kernel for a free TCP port on 127.0.0.1. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.unref();
    srv.once("error", reject);
    srv.listen(0, HOST, () => {
      const addr = srv.address();
      const port = typeof addr === "object" && addr ? addr.port : 0;
      srv.close(() => (port ? resolve(port) : reject(new Error("could not determine a free port"))));
    });
  });
}

/** Options for {@link startLocalNatsServer}. */
export interface LocalNatsServerOptions {
  /** Client port on 127.0.0.1; 0 or absent picks a free one. */
  readonly port?: number;
  /** JetStream store directory; default a fresh temp dir, removed on stop unless `keepStore`. */
  readonly storeDir?: string;
  /** Keep the temp store dir on stop (a caller-supplied `storeDir` is never removed). */
  readonly keepStore?: boolean;
  /** Extra nats-server configuration (e.g. `mappings = {...}`), written to a temp .conf file. */
  readonly configText?: string;
  /** JetStream `max_memory_store`, e.g. "256MB". */
  readonly jetstreamMaxMemory?: string;
}

/** A running local nats-server. `pid` changes on `restart()`. */
export interface LocalNatsServer extends AsyncDisposable {
  /** `nats://127.0.0.1:<port>` */
  readonly url: string;
  readonly port: number;
  readonly pid: number;
  readonly storeDir: string;
  /** SIGTERM, wait for exit (SIGKILL after a timeout), remove temp files. Idempotent. */
  stop(): Promise<void>;
  /** SIGKILL without cleanup, for chaos tests; `restart()` brings it back with its data. */
  kill(): Promise<void>;
  /** Stop (gracefully, if running) and start again on the same port and store dir. */
  restart(): Promise<void>;
  /** Whether the current process has exited (killed, stopped, or crashed on its own). */
  readonly exited: boolean;
  /**
   * Whether the process runs (or how it ended) and the last lines it logged, for the failure
   * message of a test whose clients cannot reach it, e.g. `nats-server pid 4711 on port 4222:
   * exited (code 1, signal null)` followed by its stderr tail.
   */
  describe(): string;
}

// Servers started by this process; killed on process exit so no nats-server outlives its parent.
const liveChildren = new Set<ChildProcess>();
// Temp dirs of servers not stopped yet; removed (best effort) on process exit.
const pendingTempDirs = new Set<string>();
let exitHookInstalled = false;
function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  // 'exit' handlers must be synchronous: SIGKILL needs no waiting, and rmSync is synchronous.
  // Note that Node runs no 'exit' handlers when it is killed by an unhandled signal.
  process.on("exit", () => {
    for (const c of liveChildren) {
      try {
        c.kill("SIGKILL");
      } catch {
        // already gone
      }
    }
    for (const dir of pendingTempDirs) {
      try {
        rmSync(dir, { recursive: true, force: true });
      } catch {
        // best effort: the killed server may still be releasing files
      }
    }
  });
}
function trackChild(child: ChildProcess): void {
  installExitHook();
  liveChildren.add(child);
  child.once("exit", () => liveChildren.delete(child));
}

function hasExited(child: ChildProcess): boolean {
  return child.exitCode !== null || child.signalCode !== null;
}

function waitForExit(child: ChildProcess, timeoutMs: number): Promise<boolean> {
  if (hasExited(child)) return Promise.resolve(true);
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      child.off("exit", onExit);
      resolve(false);
    }, timeoutMs);
    const onExit = () => {
      clearTimeout(timer);
      resolve(true);
    };
    child.once("exit", onExit);
  });
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Keeps the last lines of a child's stderr (the pipe must be drained anyway, or the child blocks). */
/** Lines kept from where a nats-server crash report begins. */
const CRASH_HEAD_LINES = 12;

/** The last lines of a nats-server's stderr, and the head of a crash report if one began. */
export class StderrTail {
  private lines: string[] = [];
  private partial = "";
  /** The head of a Go panic or fatal error: what failed, which the goroutine dump after it pushes out of the tail. */
  private crash: string[] = [];
  push(chunk: string): void {
    const parts = (this.partial + chunk).split("\n");
    this.partial = parts.pop() ?? "";
    for (const line of parts) {
      if (this.crash.length === 0 ? /^(panic|fatal error):/.test(line) : this.crash.length < CRASH_HEAD_LINES) this.crash.push(line);
      this.lines.push(line);
      if (this.lines.length > STDERR_TAIL_LINES) this.lines.shift();
    }
  }
  text(): string {
    const tail = [...this.lines, this.partial].filter((l) => l !== "");
    const head = this.crash.length > 0 && tail[0] !== this.crash[0] ? [...this.crash, "..."] : [];
    return [...head, ...tail].join("\n");
  }
}

interface Spawned {
  readonly child: ChildProcess;
  readonly tail: StderrTail;
}

/**
 * Whether the server `pid` has bound its listeners: nats-server writes `<executable>_<pid>.ports`
 * into `--ports_file_dir` once they accept connections, and never when a bind fails. This proves
 * that the listener on the port is this child's. Neither "the port accepts connections" (it may
 * be another process's, which took the port between our pick and the bind — the child then dies
 * of "address already in use" a moment later) nor the "Server is ready" log line (a config may
 * send the log to a file) does.
 */
function portsFileListens(portsDir: string, pid: number, port: number): boolean {
  const name = readdirSync(portsDir).find((f) => f.endsWith(`_${pid}.ports`));
  if (name === undefined) return false;
  try {
    const ports = JSON.parse(readFileSync(join(portsDir, name), "utf8")) as { nats?: unknown };
    // `nats://…`, or `tls://…` when the config requires TLS.
    return Array.isArray(ports.nats) && ports.nats.some((u) => typeof u === "string" && u.endsWith(`://${HOST}:${port}`));
  } catch {
    return false; // written but not complete yet
  }
}

async function spawnAndWaitReady(bin: string, args: readonly string[], port: number, portsDir: string): Promise<Spawned> {
  const child = spawn(bin, [...args, "--ports_file_dir", portsDir], { stdio: ["ignore", "ignore", "pipe"] });
  trackChild(child);
  const tail = new StderrTail();
  child.stderr!.setEncoding("utf8");
  child.stderr!.on("data", (chunk: string) => tail.push(chunk));
  // A running server must not keep the parent's event loop alive; the exit hook kills it.
  child.unref();
  (child.stderr as unknown as { unref?: () => void }).unref?.();

  // An 'error' event (e.g. EACCES) means the process never started.
  const spawnFailure: { error?: Error } = {};
  child.once("error", (e) => (spawnFailure.error = e));
  try {
    const deadline = Date.now() + READY_TIMEOUT_MS;
    for (;;) {
      if (spawnFailure.error) {
        throw new NatsServerStartError(`could not spawn ${bin}: ${spawnFailure.error.message}`, tail.text());
      }
      if (hasExited(child)) {
        await sleep(20); // let the last stderr chunk arrive
        throw new NatsServerStartError(
          `nats-server exited during startup (code ${child.exitCode}, signal ${child.signalCode})`,
          tail.text(),
        );
      }
      if (child.pid !== undefined && portsFileListens(portsDir, child.pid, port)) return { child, tail };
      if (Date.now() >= deadline) {
        throw new NatsServerStartError(`nats-server did not become ready on ${HOST}:${port} within ${READY_TIMEOUT_MS / 1000} s`, tail.text());
      }
      await sleep(25);
    }
  } catch (e) {
    if (child.pid !== undefined && !hasExited(child)) {
      child.kill("SIGKILL");
      await waitForExit(child, 2_000);
    }
    throw e;
  }
}

/**
 * Starts a nats-server on 127.0.0.1 with JetStream enabled and waits until it accepts clients.
 * Throws {@link NatsServerMissingError} if there is no binary and {@link NatsServerStartError} if
 * it exits early or is not ready in ~10 s.
 */
export async function startLocalNatsServer(opts: LocalNatsServerOptions = {}): Promise<LocalNatsServer> {
  return startServer(opts, []);
}

async function startServer(opts: LocalNatsServerOptions, extraArgs: readonly string[]): Promise<LocalNatsServer> {
  const bin = requireNatsServerBinary();

  // Build (and validate) the config file text before creating anything that would need cleanup.
  let configText: string | undefined;
  if (opts.configText !== undefined || opts.jetstreamMaxMemory !== undefined) {
    const userText = opts.configText ?? "";
    const parts: string[] = [];
    if (opts.jetstreamMaxMemory !== undefined) {
      // A second top-level `jetstream` block replaces the first one entirely (checked on 2.9.10),
      // so merging ours with the caller's would silently drop settings.
      if (/^\s*jetstream\s*[:={]/m.test(userText)) {
        throw new Error(
          "jetstreamMaxMemory cannot be combined with a jetstream block in configText; set max_memory_store there",
        );
      }
      parts.push(`jetstream {\n  max_memory_store: ${opts.jetstreamMaxMemory}\n}`);
    }
    parts.push(userText);
    configText = parts.join("\n") + "\n";
  }

  const ownsStore = opts.storeDir === undefined;
  const storeDir = opts.storeDir ?? (await mkdtemp(join(tmpdir(), "eddy-nats-store-")));
  const tempDirs = ownsStore && !opts.keepStore ? [storeDir] : [];
  installExitHook();
  const cleanup = async () => {
    for (const d of tempDirs) {
      await rm(d, { recursive: true, force: true });
      pendingTempDirs.delete(d);
    }
  };

  let configFile: string | undefined;
  let portsDir: string;
  try {
    if (!ownsStore) await mkdir(storeDir, { recursive: true });
    portsDir = await mkdtemp(join(tmpdir(), "eddy-nats-ports-"));
    tempDirs.push(portsDir);
    if (configText !== undefined) {
      const configDir = await mkdtemp(join(tmpdir(), "eddy-nats-conf-"));
      tempDirs.push(configDir);
      configFile = join(configDir, "nats-server.conf");
      await writeFile(configFile, configText);
    }
  } catch (e) {
    await cleanup();
    throw e;
  }
  for (const d of tempDirs) pendingTempDirs.add(d);

  // Command-line flags override the config file in nats-server, so address, port, JetStream and
  // the store dir are always ours whether or not configText is given.
  const argsFor = (port: number) => {
    const args = ["-a", HOST, "-p", String(port), "-js", "-sd", storeDir, ...extraArgs];
    if (configFile) args.push("-c", configFile);
    return args;
  };

  let port = opts.port ?? 0;
  let spawned: Spawned | undefined;
  try {
    // A port picked by us can be taken by someone else before the server binds it: retry then.
    for (let attempt = 0; ; attempt++) {
      const pick = port === 0;
      const p = pick ? await freePort() : port;
      try {
        spawned = await spawnAndWaitReady(bin, argsFor(p), p, portsDir);
        port = p;
        break;
      } catch (e) {
        const inUse = e instanceof NatsServerStartError && /address already in use/i.test(e.stderrTail);
        if (!(pick && inUse && attempt < 3)) throw e;
      }
    }
  } catch (e) {
    await cleanup();
    throw e;
  }

  let current: Spawned = spawned;
  let stopped: Promise<void> | undefined;

  const terminate = async (child: ChildProcess) => {
    if (hasExited(child)) return;
    child.kill("SIGTERM");
    if (await waitForExit(child, STOP_TIMEOUT_MS)) return;
    child.kill("SIGKILL");
    await waitForExit(child, STOP_TIMEOUT_MS);
  };

  const server: LocalNatsServer = {
    url: `nats://${HOST}:${port}`,
    port,
    get pid() {
      return current.child.pid ?? -1;
    },
    storeDir,
    stop() {
      stopped ??= (async () => {
        await terminate(current.child);
        await cleanup();
      })();
      return stopped;
    },
    async kill() {
      if (hasExited(current.child)) return;
      current.child.kill("SIGKILL");
      await waitForExit(current.child, STOP_TIMEOUT_MS);
    },
    async restart() {
      if (stopped) throw new Error("cannot restart a nats-server that was stopped; start a new one");
      await terminate(current.child);
      current = await spawnAndWaitReady(bin, argsFor(port), port, portsDir);
    },
    get exited() {
      return hasExited(current.child);
    },
    describe() {
      const c = current.child;
      const state = hasExited(c) ? `exited (code ${c.exitCode}, signal ${c.signalCode})` : "running";
      return `nats-server pid ${c.pid ?? "?"} on port ${port}: ${state}\n${current.tail.text()}`;
    },
    [Symbol.asyncDispose]() {
      return server.stop();
    },
  };
  return server;
}

/** Options for {@link startLocalNatsCluster}. */
export interface LocalNatsClusterOptions {
  /** Number of servers, 2 to 5 (3 is what JetStream's three replicas need). */
  readonly size: number;
  /** Client port of the first server, the others take the ports after it; absent: free ports. */
  readonly port?: number;
  /** Store root, kept on stop: server i keeps its store in `<dataDir>/n<i>`; default temp dirs, removed on stop. */
  readonly dataDir?: string;
  /** The cluster's name; the servers are `<name>-0`, `<name>-1`, … (default "eddy"). */
  readonly name?: string;
}

/** Running local nats-servers routed into one JetStream cluster. */
export interface LocalNatsCluster extends AsyncDisposable {
  readonly name: string;
  readonly servers: readonly LocalNatsServer[];
  /** Every server's client URL. */
  readonly urls: readonly string[];
  /** The client URLs comma-separated: what `--nats` and `EDDY_NATS_URL` take. */
  readonly url: string;
  /** Server `i`'s name, as JetStream names it in stream info's `cluster.leader` and `replicas`. */
  serverName(i: number): string;
  /** Waits until every running server answers JetStream API requests (after a start or restart). */
  waitForJetStream(timeoutMs?: number): Promise<void>;
  /** Stops every server (see {@link LocalNatsServer.stop}). Idempotent. */
  stop(): Promise<void>;
}

const CLUSTER_READY_TIMEOUT_MS = 30_000;

/**
 * Starts `size` nats-servers on 127.0.0.1, each with its own client port, route port and store,
 * routed to one another as a JetStream cluster, and waits until JetStream has a meta leader that
 * every server knows (a clustered server accepts clients before that, but answers JetStream
 * requests with "temporarily unavailable").
 */
export async function startLocalNatsCluster(opts: LocalNatsClusterOptions): Promise<LocalNatsCluster> {
  const size = opts.size;
  if (!Number.isInteger(size) || size < 2 || size > 5) throw new InputError(`a local cluster has 2 to 5 servers, not ${size}`);
  const name = opts.name ?? "eddy";
  if (!/^[A-Za-z0-9_-]+$/.test(name)) throw new InputError(`cluster name "${name}" may only hold letters, digits, "_" and "-"`);
  requireNatsServerBinary();
  for (let attempt = 0; ; attempt++) {
    const clientPorts: number[] = [];
    const routePorts: number[] = [];
    for (let i = 0; i < size; i++) {
      clientPorts.push(opts.port === undefined ? await freePort() : opts.port + i);
      routePorts.push(await freePort());
    }
    const routes = routePorts.map((p) => `nats://${HOST}:${p}`).join(",");
    const servers: LocalNatsServer[] = [];
    try {
      for (let i = 0; i < size; i++) {
        const args = ["-n", `${name}-${i}`, "--cluster_name", name, "--cluster", `nats://${HOST}:${routePorts[i]}`, "--routes", routes];
        servers.push(
          await startServer({ port: clientPorts[i]!, ...(opts.dataDir === undefined ? {} : { storeDir: join(opts.dataDir, `n${i}`) }) }, args),
        );
      }
    } catch (e) {
      await Promise.all(servers.map((s) => s.stop()));
      const inUse = e instanceof NatsServerStartError && /address already in use/i.test(e.stderrTail);
      if (opts.port === undefined && inUse && attempt < 3) continue;
      throw e;
    }
    let stopped: Promise<void> | undefined;
    const cluster: LocalNatsCluster = {
      name,
      servers,
      urls: servers.map((s) => s.url),
      url: servers.map((s) => s.url).join(","),
      serverName: (i) => `${name}-${i}`,
      waitForJetStream: (timeoutMs = CLUSTER_READY_TIMEOUT_MS) => waitForJetStream(servers, timeoutMs),
      stop() {
        stopped ??= Promise.all(servers.map((s) => s.stop())).then(() => undefined);
        return stopped;
      },
      [Symbol.asyncDispose]() {
        return cluster.stop();
      },
    };
    try {
      await cluster.waitForJetStream();
      await waitForPeers(cluster.urls, size, CLUSTER_READY_TIMEOUT_MS);
    } catch (e) {
      await cluster.stop();
      throw e;
    }
    return cluster;
  }
}

function isRunning(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

// Each running server is asked on its own, so that one that has not heard of the meta leader yet
// is not hidden behind another that has.
async function waitForJetStream(servers: readonly LocalNatsServer[], timeoutMs: number): Promise<void> {
  const { connect } = await import("@nats-io/transport-node");
  const { jetstreamManager } = await import("@nats-io/jetstream");
  const deadline = Date.now() + timeoutMs;
  for (const server of servers) {
    if (server.pid < 0 || !isRunning(server.pid)) continue;
    let last: unknown;
    for (;;) {
      if (Date.now() > deadline) {
        throw new NatsServerStartError(`JetStream on ${server.url} was not ready within ${timeoutMs / 1000} s: ${String((last as Error)?.message ?? last)}`, "");
      }
      try {
        const nc = await connect({ servers: server.url, maxReconnectAttempts: 0, timeout: 1000, ignoreClusterUpdates: true, noRandomize: true });
        try {
          await (await jetstreamManager(nc, { timeout: 1000 })).getAccountInfo();
          break;
        } finally {
          await nc.close();
        }
      } catch (e) {
        last = e;
        await sleep(100);
      }
    }
  }
}

// The meta leader answers before every server has registered as a JetStream peer; until then a
// stream with one replica per server is refused ("no suitable peers for placement"). Creating
// (and deleting) such a stream in memory is the one question that tells.
async function waitForPeers(urls: readonly string[], size: number, timeoutMs: number): Promise<void> {
  const { connect } = await import("@nats-io/transport-node");
  const { jetstreamManager, StorageType } = await import("@nats-io/jetstream");
  const nc = await connect({ servers: [...urls], timeout: 2000 });
  try {
    const jsm = await jetstreamManager(nc, { timeout: 2000 });
    const name = `EDDY_PEERS_PROBE_${process.pid}`;
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      try {
        await jsm.streams.add({ name, subjects: [`$eddy.peers-probe.${process.pid}`], storage: StorageType.Memory, num_replicas: size });
        await jsm.streams.delete(name);
        return;
      } catch (e) {
        if (Date.now() > deadline) throw new NatsServerStartError(`the JetStream cluster did not place a stream on all ${size} servers within ${timeoutMs / 1000} s: ${(e as Error).message}`, "");
        await sleep(200);
      }
    }
  } finally {
    await nc.close();
  }
}
