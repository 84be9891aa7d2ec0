/**
 * The `eddy` command line: parses arguments with `effect/cli` and dispatches to the subcommands.
 *
 * Handlers stay thin: they import the module that does the work lazily (so `eddy --help` loads no
 * NATS code) and turn its result into an exit code. Bad arguments print one line to stderr and
 * exit 2 instead of effect/cli's default of the full help text and exit 1.
 */
import * as NodeRuntime from "@effect/platform-node/NodeRuntime";
import * as NodeServices from "@effect/platform-node/NodeServices";
import * as CliError from "effect/cli/CliError";
import * as CliOutput from "effect/cli/CliOutput";
import * as Argument from "effect/cli/Argument";
import * as Command from "effect/cli/Command";
import * as Flag from "effect/cli/Flag";
import * as Console from "effect/Console";
import * as Effect from "effect/Effect";
import * as Option from "effect/Option";
import * as Runtime from "effect/Runtime";
import pkg from "../../package.json" with { type: "json" };
import { errorActionOf, InputError } from "../errors.ts";

/** Exit code for a command line that could not be parsed (as in most Unix tools). */
const USAGE_EXIT_CODE = 2;

/**
 * Makes `eddy` exit with `code` without runMain logging anything: whoever fails with it has
 * already told the user what went wrong.
 */
class ExitWithCodeError extends Error {
  // effect declares these markers on the global Error interface, hence `override`.
  override readonly [Runtime.errorExitCode]: number;
  override readonly [Runtime.errorReported] = false;
  constructor(code: number) {
    super(`exit ${code}`);
    this.name = "ExitWithCodeError";
    this[Runtime.errorExitCode] = code;
  }
}

/** JavaScript's own error classes: thrown by eddy's code they mean a bug, so their stack is shown. */
const BUILTIN_ERROR = /^(Error|TypeError|RangeError|ReferenceError|SyntaxError|UnknownError)$/;

/**
 * Prints an error thrown by a handler and returns the exit code. eddy's own errors say what to do
 * (their base class carries it): their message is printed, with a hint for transient ones, and a
 * command line the parser could not reject exits 2. Errors from libraries (NATS, the file system)
 * print their message; JavaScript's built-in errors print their stack.
 */
function reportError(e: unknown): number {
  const action = errorActionOf(e);
  if (action !== undefined) {
    const message = (e as Error).message;
    const hint = action === "retry" && !/\bretry\b/i.test(message) ? " (this may be temporary; retry)" : "";
    process.stderr.write(`eddy: ${message}${hint}\n`);
    return e instanceof UsageError ? USAGE_EXIT_CODE : 1;
  }
  const bug = e instanceof Error && BUILTIN_ERROR.test(e.name);
  const text = e instanceof Error ? (bug ? (e.stack ?? e.message) : e.message) : String(e);
  process.stderr.write(`eddy: ${text}\n`);
  return 1;
}

/**
 * Runs a promise-returning handler body and exits with its code (non-zero codes only).
 *
 * runMain turns SIGINT/SIGTERM into an interruption of the handler and then exits at once. A body
 * that shuts down gracefully on those signals itself (`handlesSignals`, e.g. the worker writing
 * its state back) is therefore run uninterruptibly, so the process waits for it; a second signal
 * forces the exit.
 */
const exitWith = (body: (signal: AbortSignal) => Promise<number>, opts: { handlesSignals?: boolean } = {}) => {
  const run = Effect.promise((signal) => {
    let signals = 0;
    const force = () => {
      if (++signals < 2) return;
      process.stderr.write("eddy: second signal, exiting without waiting\n");
      process.exit(130);
    };
    if (opts.handlesSignals) for (const s of ["SIGINT", "SIGTERM"] as const) process.on(s, force);
    return body(signal)
      .then(
        (code) => code,
        (e: unknown) => reportError(e),
      )
      .finally(() => {
        for (const s of ["SIGINT", "SIGTERM"] as const) process.off(s, force);
      });
  });
  return (opts.handlesSignals ? Effect.uninterruptible(run) : run).pipe(
    Effect.flatMap((code) => (code === 0 ? Effect.void : Effect.fail(new ExitWithCodeError(code)))),
  );
};

/** The command line is wrong in a way the parser cannot see; the message says what to fix. */
class UsageError extends InputError {
  override readonly name = "UsageError";
}

const natsFlag = (description: string) =>
  Flag.String("nats").pipe(Flag.withDescription(description), Flag.optional);

// --- eddy nats-server -----------------------------------------------------------------------

const natsServer = Command.make(
  "nats-server",
  {
    port: Flag.Int("port").pipe(Flag.withDescription("client port on 127.0.0.1 (default: a free port)"), Flag.optional),
    data: Flag.String("data").pipe(
      Flag.withDescription("JetStream store directory, kept on exit (default: a temp dir, removed on exit)"),
      Flag.optional,
    ),
  },
  ({ port, data }) =>
    Effect.scoped(
      Effect.gen(function* () {
        const { startLocalNatsServer } = yield* Effect.promise(() => import("../nats/local-server.ts"));
        const { ensureNatsServer } = yield* Effect.promise(() => import("../../scripts/ensure-nats-server.ts"));
        const started = yield* Effect.tryPromise({
          try: async () => {
            await ensureNatsServer();
            return startLocalNatsServer({
              port: Option.getOrUndefined(port),
              storeDir: Option.getOrUndefined(data),
            });
          },
          catch: (e) => new ExitWithCodeError(reportError(e)),
        });
        // The release runs when SIGINT/SIGTERM interrupts us, so JetStream shuts down cleanly.
        const server = yield* Effect.acquireRelease(Effect.succeed(started), (s) =>
          Effect.promise(() => s.stop()).pipe(Effect.andThen(Console.error("eddy: nats-server stopped"))),
        );
        yield* Console.log(server.url);
        yield* Console.error(`eddy: nats-server pid ${server.pid}, store ${server.storeDir}; Ctrl-C to stop`);
        return yield* Effect.never;
      }),
    ),
).pipe(Command.withDescription("Run a local nats-server with JetStream until interrupted"));

// --- eddy demo ------------------------------------------------------------------------------

/** Options of `runDemo` in runtime/demo/run-demo.ts. */
interface DemoOptions {
  events: number;
  seed: number;
  natsUrl: string | undefined;
}

const demo = Command.make(
  "demo",
  {
    events: Flag.Int("events").pipe(
      Flag.withDescription("number of events to generate (default: 10000)"),
      Flag.withDefault(10_000),
    ),
    seed: Flag.Int("seed").pipe(Flag.withDescription("random seed of the event generator (default: 1)"), Flag.withDefault(1)),
    nats: natsFlag("NATS server URL (default: start a local nats-server)"),
  },
  ({ events, seed, nats }) =>
    exitWith(async () => {
      const opts: DemoOptions = { events, seed, natsUrl: Option.getOrUndefined(nats) };
      const { runDemo } = await import("../demo/run-demo.ts");
      return runDemo(opts);
    }),
).pipe(Command.withDescription("Run the end-to-end demo pipeline and print its results"));

// --- eddy worker ----------------------------------------------------------------------------

/** Options of `runWorker` in runtime/actor/run-worker.ts. */
interface WorkerOptions {
  pipeline: string | undefined;
  natsUrl: string | undefined;
  job: string | undefined;
  metricsPort: number | undefined;
}

const worker = Command.make(
  "worker",
  {
    pipeline: Flag.String("pipeline").pipe(
      Flag.withDescription("module (.ts) that exports the pipeline(s) to run (default: run whatever is deployed)"),
      Flag.optional,
    ),
    nats: natsFlag("NATS server URL"),
    job: Flag.String("job").pipe(Flag.withDescription("job name (default: from the pipeline)"), Flag.optional),
    metricsPort: Flag.Int("metrics-port").pipe(Flag.withDescription("serve /metrics and /healthz on this port (default: $EDDY_METRICS_PORT)"), Flag.optional),
  },
  ({ pipeline, nats, job, metricsPort }) =>
    exitWith(async () => {
      const opts: WorkerOptions = {
        pipeline: Option.getOrUndefined(pipeline),
        natsUrl: Option.getOrUndefined(nats),
        job: Option.getOrUndefined(job),
        metricsPort: Option.getOrUndefined(metricsPort),
      };
      const { runWorker } = await import("../actor/run-worker.ts");
      return runWorker(opts);
    }, { handlesSignals: true }),
).pipe(Command.withDescription("Run a worker process that hosts the actors of a pipeline"));

// --- eddy supervisor --------------------------------------------------------------------------

const supervisor = Command.make(
  "supervisor",
  {
    nats: natsFlag("NATS server URL (default: $EDDY_NATS_URL or nats://127.0.0.1:4222)"),
    id: Flag.String("id").pipe(Flag.withDescription("supervisor id in the leader lease (default: random)"), Flag.optional),
    checkpointInterval: Flag.Int("checkpoint-interval").pipe(
      Flag.withDescription("milliseconds between checkpoints of a job; 0 = only on request (default: 1000)"),
      Flag.withDefault(1000),
    ),
    retain: Flag.Int("retain").pipe(Flag.withDescription("committed checkpoints kept per job (default: 3)"), Flag.withDefault(3)),
    metricsPort: Flag.Int("metrics-port").pipe(Flag.withDescription("serve /metrics, /healthz and /scaling on this port (default: $EDDY_METRICS_PORT)"), Flag.optional),
  },
  ({ nats, id, checkpointInterval, retain, metricsPort }) =>
    exitWith(async () => {
      if (checkpointInterval < 0) throw new UsageError("--checkpoint-interval must be >= 0");
      if (retain < 1) throw new UsageError("--retain must be >= 1");
      const { runSupervisor } = await import("../supervisor/run-supervisor.ts");
      return runSupervisor({
        natsUrl: Option.getOrUndefined(nats),
        id: Option.getOrUndefined(id),
        checkpointIntervalMs: checkpointInterval,
        retainCheckpoints: retain,
        metricsPort: Option.getOrUndefined(metricsPort),
      });
    }, { handlesSignals: true }),
).pipe(Command.withDescription("Run a supervisor: leader election, partition assignment, checkpoints, recovery"));

// --- eddy checkpoints -------------------------------------------------------------------------

const checkpoints = Command.make(
  "checkpoints",
  {
    job: Argument.String("job").pipe(Argument.withDescription("job name")),
    nats: natsFlag("NATS server URL (default: $EDDY_NATS_URL or nats://127.0.0.1:4222)"),
    limit: Flag.Int("limit").pipe(Flag.withDescription("how many (default: 20)"), Flag.withDefault(20)),
    json: Flag.Boolean("json").pipe(Flag.withDescription("print JSON instead of a table"), Flag.withDefault(false)),
  },
  ({ job, nats, limit, json }) =>
    exitWith(async () => {
      const { runCheckpoints } = await import("./checkpoints.ts");
      return runCheckpoints({ job, natsUrl: Option.getOrUndefined(nats), limit, json });
    }),
).pipe(Command.withDescription("List a job's recent checkpoints: id, status, duration, alignment, bytes, keys changed"));

// --- eddy deploy / ls / rollback / undeploy ---------------------------------------------------

const deploy = Command.make(
  "deploy",
  {
    module: Argument.String("module").pipe(Argument.withDescription("module (.ts) exporting the pipeline(s)")),
    job: Flag.String("job").pipe(Flag.withDescription("job name (default: the pipeline's name)"), Flag.optional),
    partitions: Flag.Int("partitions").pipe(Flag.withDescription("partitions of keyed functions that set none (default: 8)"), Flag.optional),
    fromSavepoint: Flag.String("from-savepoint").pipe(Flag.withDescription("restore this savepoint first (the job must be stopped: eddy stop <job>)"), Flag.optional),
    skipState: Flag.String("skip-state").pipe(
      Flag.withDescription("<function>.<state> to start empty instead of restoring it (to bootstrap it); repeatable"),
      Flag.atLeast(0),
    ),
    nats: natsFlag("NATS server URL (default: $EDDY_NATS_URL or nats://127.0.0.1:4222)"),
    json: Flag.Boolean("json").pipe(Flag.withDescription("print JSON"), Flag.withDefault(false)),
  },
  ({ module, job, partitions, fromSavepoint, skipState, nats, json }) =>
    exitWith(async () => {
      if (skipState.length > 0 && Option.isNone(fromSavepoint)) throw new UsageError("--skip-state only makes sense with --from-savepoint");
      const { runDeploy } = await import("./deploy.ts");
      return runDeploy({
        module,
        job: Option.getOrUndefined(job),
        partitions: Option.getOrUndefined(partitions),
        fromSavepoint: Option.getOrUndefined(fromSavepoint),
        skipState: [...skipState],
        natsUrl: Option.getOrUndefined(nats),
        json,
      });
    }),
).pipe(Command.withDescription("Bundle, validate and deploy a pipeline module; a bad or incompatible module is rejected"));

const ls = Command.make(
  "ls",
  {
    nats: natsFlag("NATS server URL (default: $EDDY_NATS_URL or nats://127.0.0.1:4222)"),
    json: Flag.Boolean("json").pipe(Flag.withDescription("print JSON"), Flag.withDefault(false)),
  },
  ({ nats, json }) =>
    exitWith(async () => {
      const { runLs } = await import("./deploy.ts");
      return runLs({ natsUrl: Option.getOrUndefined(nats), json });
    }),
).pipe(Command.withDescription("List deployed jobs: version, code digest, functions"));

const rollbackCommand = Command.make(
  "rollback",
  {
    job: Argument.String("job").pipe(Argument.withDescription("job name")),
    nats: natsFlag("NATS server URL (default: $EDDY_NATS_URL or nats://127.0.0.1:4222)"),
    json: Flag.Boolean("json").pipe(Flag.withDescription("print JSON"), Flag.withDefault(false)),
  },
  ({ job, nats, json }) =>
    exitWith(async () => {
      const { runRollback } = await import("./deploy.ts");
      return runRollback({ job, natsUrl: Option.getOrUndefined(nats), json });
    }),
).pipe(Command.withDescription("Deploy a job's previous code again, as a new version"));

const undeployCommand = Command.make(
  "undeploy",
  {
    job: Argument.String("job").pipe(Argument.withDescription("job name")),
    nats: natsFlag("NATS server URL (default: $EDDY_NATS_URL or nats://127.0.0.1:4222)"),
    json: Flag.Boolean("json").pipe(Flag.withDescription("print JSON"), Flag.withDefault(false)),
  },
  ({ job, nats, json }) =>
    exitWith(async () => {
      const { runUndeploy } = await import("./deploy.ts");
      return runUndeploy({ job, natsUrl: Option.getOrUndefined(nats), json });
    }),
).pipe(Command.withDescription("Stop running a job on generic workers (its state and versions stay)"));

const status = Command.make(
  "status",
  {
    job: Argument.String("job").pipe(Argument.withDescription("job name")),
    nats: natsFlag("NATS server URL (default: $EDDY_NATS_URL or nats://127.0.0.1:4222)"),
    json: Flag.Boolean("json").pipe(Flag.withDescription("print JSON"), Flag.withDefault(false)),
  },
  ({ job, nats, json }) =>
    exitWith(async () => {
      const { runStatus } = await import("./status.ts");
      return runStatus({ job, natsUrl: Option.getOrUndefined(nats), json });
    }),
).pipe(Command.withDescription("Show a job: version, generation, last checkpoint; per partition owner, lag and watermark"));

const dev = Command.make(
  "dev",
  {
    port: Flag.Int("port").pipe(Flag.withDescription("nats-server port on 127.0.0.1 (default: a free port)"), Flag.optional),
    data: Flag.String("data").pipe(Flag.withDescription("JetStream store directory, kept on exit (default: a temp dir)"), Flag.optional),
    checkpointInterval: Flag.Int("checkpoint-interval").pipe(Flag.withDescription("milliseconds between checkpoints (default: 1000)"), Flag.withDefault(1000)),
  },
  ({ port, data, checkpointInterval }) =>
    exitWith(async () => {
      if (checkpointInterval < 0) throw new UsageError("--checkpoint-interval must be >= 0");
      const { runDev } = await import("../dev/run-dev.ts");
      return runDev({ port: Option.getOrUndefined(port), data: Option.getOrUndefined(data), checkpointIntervalMs: checkpointInterval });
    }, { handlesSignals: true }),
).pipe(Command.withDescription("Run a local cluster in one process: nats-server, a supervisor and a worker for deployed jobs"));

const scale = Command.make(
  "scale",
  {
    count: Argument.Int("count").pipe(Argument.withDescription("number of local worker processes")),
    nats: natsFlag("NATS server URL (default: $EDDY_NATS_URL or nats://127.0.0.1:4222)"),
  },
  ({ count, nats }) =>
    exitWith(async () => {
      if (count < 0) throw new UsageError("the worker count must be >= 0");
      const { runScale } = await import("../dev/scale.ts");
      return runScale({ count, natsUrl: Option.getOrUndefined(nats) });
    }),
).pipe(Command.withDescription("Set the number of local worker processes (started detached, tracked in .eddy/)"));

// --- eddy k8s --------------------------------------------------------------------------------

const k8sRender = Command.make(
  "render",
  {
    overlay: Flag.String("overlay").pipe(Flag.withDescription("dev or production (default: dev)"), Flag.optional),
    image: Flag.String("image").pipe(Flag.withDescription("eddy image reference"), Flag.optional),
    namespace: Flag.String("namespace").pipe(Flag.withDescription("namespace (default: eddy)"), Flag.optional),
    workersMin: Flag.Int("workers-min").pipe(Flag.withDescription("KEDA minReplicaCount of workers (0 = scale to zero)"), Flag.optional),
    workersMax: Flag.Int("workers-max").pipe(Flag.withDescription("KEDA maxReplicaCount of workers"), Flag.optional),
    pipeline: Flag.String("pipeline").pipe(Flag.withDescription("run this module baked into the image instead of deployed jobs"), Flag.optional),
    lagTarget: Flag.Int("lag-target").pipe(Flag.withDescription("lag per worker KEDA aims for"), Flag.optional),
    sourceConsumer: Flag.String("source-consumer").pipe(Flag.withDescription("<stream>/<consumer> for a nats-jetstream trigger (repeatable)"), Flag.atLeast(0)),
    natsAccount: Flag.String("nats-account").pipe(Flag.withDescription("NATS account for the nats-jetstream trigger"), Flag.optional),
    natsImage: Flag.String("nats-image").pipe(Flag.withDescription("nats-server image"), Flag.optional),
  },
  (f) =>
    exitWith(async () => {
      const { runK8sRender } = await import("./k8s-render.ts");
      const opt = <T>(o: Option.Option<T>) => Option.getOrUndefined(o);
      const given = Object.fromEntries(
        Object.entries({
          overlay: opt(f.overlay),
          image: opt(f.image),
          namespace: opt(f.namespace),
          workersMin: opt(f.workersMin),
          workersMax: opt(f.workersMax),
          pipeline: opt(f.pipeline),
          lagTarget: opt(f.lagTarget),
          natsAccount: opt(f.natsAccount),
          natsImage: opt(f.natsImage),
        }).filter(([, v]) => v !== undefined),
      );
      return runK8sRender({ ...given, sourceConsumers: f.sourceConsumer });
    }),
).pipe(Command.withDescription("Print the Kubernetes manifests (NATS, supervisor, workers, KEDA ScaledObject) as YAML"));

const k8s = Command.make("k8s").pipe(Command.withDescription("Kubernetes manifests"), Command.withSubcommands([k8sRender]));

// --- eddy nexmark ----------------------------------------------------------------------------

const nexmarkGenerate = Command.make(
  "generate",
  {
    events: Flag.Int("events").pipe(Flag.withDescription("number of events")),
    seed: Flag.Int("seed").pipe(Flag.withDescription("random seed (default: 1)"), Flag.withDefault(1)),
    out: Flag.String("out").pipe(Flag.withDescription("output file (default: stdout)"), Flag.optional),
  },
  ({ events, seed, out }) =>
    exitWith(async () => {
      if (events < 0) throw new UsageError("--events must be >= 0");
      const { runNexmarkGenerate } = await import("./nexmark-generate.ts");
      return runNexmarkGenerate({ events, seed, out: Option.getOrUndefined(out) });
    }),
).pipe(Command.withDescription("Write deterministic Nexmark events, one JSON event per line"));

const nexmarkRun = Command.make(
  "run",
  {
    query: Flag.String("query").pipe(Flag.withDescription("q0, q1, q2, q3, q4, q5, q7, q8 or q11")),
    input: Flag.String("input").pipe(Flag.withDescription("events, one JSON event per line")),
    out: Flag.String("out").pipe(Flag.withDescription("result rows, one JSON object per line")),
    nats: natsFlag("NATS server URL (default: start a local nats-server)"),
  },
  ({ query, input, out, nats }) =>
    exitWith(async () => {
      const { runNexmarkRun } = await import("./nexmark.ts");
      return runNexmarkRun({ query, input, out, natsUrl: Option.getOrUndefined(nats) });
    }),
).pipe(Command.withDescription("Run a Nexmark query on eddy over NATS until its input is exhausted"));

const nexmarkBench = Command.make(
  "bench",
  {
    query: Flag.String("query").pipe(Flag.withDescription("q0, q1, q2, q3, q4, q5, q7, q8 or q11")),
    events: Flag.Int("events").pipe(Flag.withDescription("number of generated events (default: 1000000)"), Flag.withDefault(1_000_000)),
    seed: Flag.Int("seed").pipe(Flag.withDescription("generator seed (default: 1)"), Flag.withDefault(1)),
    baseline: Flag.Boolean("baseline").pipe(Flag.withDescription("run the naive KV baseline instead (q5, q7)"), Flag.withDefault(false)),
    checkpointInterval: Flag.Int("checkpoint-interval").pipe(
      Flag.withDescription("milliseconds between checkpoints during the run (default: 10000)"),
      Flag.withDefault(10_000),
    ),
    json: Flag.Boolean("json").pipe(Flag.withDescription("print one JSON line"), Flag.withDefault(false)),
    nats: natsFlag("NATS server URL (default: start a local nats-server, whose CPU is counted)"),
  },
  ({ query, events, seed, baseline, checkpointInterval, json, nats }) =>
    exitWith(async () => {
      if (events <= 0) throw new UsageError("--events must be > 0");
      if (checkpointInterval <= 0) throw new UsageError("--checkpoint-interval must be > 0");
      const { runNexmarkBench } = await import("./nexmark.ts");
      return runNexmarkBench({ query, events, seed, baseline, json, natsUrl: Option.getOrUndefined(nats), checkpointIntervalMs: checkpointInterval });
    }),
).pipe(Command.withDescription("Time a Nexmark query: events per core-second of eddy plus nats-server, against the ceiling"));

const nexmark = Command.make("nexmark").pipe(
  Command.withDescription("Nexmark: generate events, run queries, benchmark"),
  Command.withSubcommands([nexmarkGenerate, nexmarkRun, nexmarkBench]),
);

// --- eddy -----------------------------------------------------------------------------------

/** The root command; add a subcommand by defining it above and listing it here. */
// --- eddy state get / scan / put / delete -------------------------------------------------------

const stateTarget = {
  job: Argument.String("job").pipe(Argument.withDescription("job name")),
  fn: Argument.String("function").pipe(Argument.withDescription("function name")),
  nats: natsFlag("NATS server URL (default: $EDDY_NATS_URL or nats://127.0.0.1:4222)"),
  json: Flag.Boolean("json").pipe(Flag.withDescription("print JSON"), Flag.withDefault(false)),
};
const stateName = Argument.String("state").pipe(Argument.withDescription("state name, as the function declares it"));
const stateKeyArg = Argument.String("key").pipe(Argument.withDescription("the key (as the function's key selector returns it)"));
const subkeyFlag = Flag.String("subkey").pipe(Flag.withDescription("one entry of a map state"), Flag.optional);
const committedFlag = Flag.Boolean("committed").pipe(
  Flag.withDescription("read the last committed checkpoint from KV (works with the job stopped) instead of the live actor"),
  Flag.withDefault(false),
);

const stateGet = Command.make(
  "get",
  { ...stateTarget, state: stateName, key: stateKeyArg, subkey: subkeyFlag, committed: committedFlag },
  ({ job, fn, state, key, subkey, committed, nats, json }) =>
    exitWith(async () => {
      const { runStateGet } = await import("./state.ts");
      return runStateGet({ job, fn, state, key, subkey: Option.getOrUndefined(subkey), committed, natsUrl: Option.getOrUndefined(nats), json });
    }),
).pipe(Command.withDescription("Read one key's state (live from the owning actor, or --committed)"));

const stateScan = Command.make(
  "scan",
  {
    ...stateTarget,
    state: Flag.String("state").pipe(Flag.withDescription("only this state (default: all)"), Flag.optional),
    prefix: Flag.String("prefix").pipe(Flag.withDescription("only keys starting with this"), Flag.optional),
    limit: Flag.Int("limit").pipe(Flag.withDescription("at most this many entries (default: 100)"), Flag.withDefault(100)),
    committed: committedFlag,
  },
  ({ job, fn, state, prefix, limit, committed, nats, json }) =>
    exitWith(async () => {
      if (limit < 1) throw new UsageError("--limit must be at least 1");
      const { runStateScan } = await import("./state.ts");
      return runStateScan({ job, fn, state: Option.getOrUndefined(state), prefix: Option.getOrUndefined(prefix), limit, committed, natsUrl: Option.getOrUndefined(nats), json });
    }),
).pipe(Command.withDescription("List keys and their state, by key prefix, over every partition"));

const statePut = Command.make(
  "put",
  { ...stateTarget, state: stateName, key: stateKeyArg, value: Argument.String("value").pipe(Argument.withDescription("the new value, as JSON")), subkey: subkeyFlag },
  ({ job, fn, state, key, value, subkey, nats, json }) =>
    exitWith(async () => {
      const { runStatePut } = await import("./state.ts");
      return runStatePut({ job, fn, state, key, value, subkey: Option.getOrUndefined(subkey), natsUrl: Option.getOrUndefined(nats), json });
    }),
).pipe(Command.withDescription("Write one key's state through the input log; returns once the actor applied it"));

const stateDelete = Command.make(
  "delete",
  { ...stateTarget, state: stateName, key: stateKeyArg, subkey: subkeyFlag },
  ({ job, fn, state, key, subkey, nats, json }) =>
    exitWith(async () => {
      const { runStateDelete } = await import("./state.ts");
      return runStateDelete({ job, fn, state, key, subkey: Option.getOrUndefined(subkey), natsUrl: Option.getOrUndefined(nats), json });
    }),
).pipe(Command.withDescription("Delete one key's state (or one map entry) through the input log"));

const stateBootstrap = Command.make(
  "bootstrap",
  {
    job: Argument.String("job").pipe(Argument.withDescription("job name")),
    fn: Argument.String("function").pipe(Argument.withDescription("function whose state to fill (as the deployed code declares it)")),
    from: Flag.String("from").pipe(Flag.withDescription("old items: savepoint:<id>, file:<path.ndjson> or stream:<name>")),
    with: Flag.String("with").pipe(Flag.withDescription("bootstrap module (.ts) exporting defineBootstrap({...})")),
    nats: natsFlag("NATS server URL (default: $EDDY_NATS_URL or nats://127.0.0.1:4222)"),
    json: Flag.Boolean("json").pipe(Flag.withDescription("print JSON"), Flag.withDefault(false)),
  },
  ({ job, fn, from, with: module, nats, json }) =>
    exitWith(async () => {
      const { runStateBootstrap } = await import("./state.ts");
      return runStateBootstrap({ job, fn, from, module, natsUrl: Option.getOrUndefined(nats), json });
    }),
).pipe(Command.withDescription("Fill a function's state (windows included) from old data through a bootstrap module; works stopped or running"));

const stateRepartition = Command.make(
  "repartition",
  {
    job: Argument.String("job").pipe(Argument.withDescription("job name")),
    fn: Argument.String("function").pipe(Argument.withDescription("function to spread over a new number of partitions")),
    partitions: Flag.Int("partitions").pipe(Flag.withDescription("the new partition count")),
    fromSavepoint: Flag.String("from-savepoint").pipe(Flag.withDescription("savepoint to rewrite (it stays; a new one is written)")),
    nats: natsFlag("NATS server URL (default: $EDDY_NATS_URL or nats://127.0.0.1:4222)"),
    json: Flag.Boolean("json").pipe(Flag.withDescription("print JSON"), Flag.withDefault(false)),
  },
  ({ job, fn, partitions, fromSavepoint, nats, json }) =>
    exitWith(async () => {
      if (partitions < 1 || partitions > 4096) throw new UsageError("--partitions must be in 1..4096");
      const { runRepartition } = await import("./savepoints.ts");
      return runRepartition({ job, fn, partitions, savepoint: fromSavepoint, natsUrl: Option.getOrUndefined(nats), json });
    }),
).pipe(Command.withDescription("Write a new savepoint with a function's state rewritten for another partition count"));

/** Subcommands of `eddy state`. */
const stateSubcommands = [stateGet, stateScan, statePut, stateDelete, stateBootstrap, stateRepartition];

// --- eddy savepoint / savepoints / stop / start ------------------------------------------------------

const jobOnly = {
  job: Argument.String("job").pipe(Argument.withDescription("job name")),
  nats: natsFlag("NATS server URL (default: $EDDY_NATS_URL or nats://127.0.0.1:4222)"),
  json: Flag.Boolean("json").pipe(Flag.withDescription("print JSON"), Flag.withDefault(false)),
};

const savepointCommand = Command.make("savepoint", jobOnly, ({ job, nats, json }) =>
  exitWith(async () => {
    const { runSavepoint } = await import("./savepoints.ts");
    return runSavepoint({ job, natsUrl: Option.getOrUndefined(nats), json });
  }),
).pipe(Command.withDescription("Take a savepoint of a running job: a full export of its state, kept until deleted"));

const savepointsCommand = Command.make("savepoints", jobOnly, ({ job, nats, json }) =>
  exitWith(async () => {
    const { runSavepoints } = await import("./savepoints.ts");
    return runSavepoints({ job, natsUrl: Option.getOrUndefined(nats), json });
  }),
).pipe(Command.withDescription("List a job's savepoints"));

const stopCommand = Command.make(
  "stop",
  { ...jobOnly, savepoint: Flag.Boolean("savepoint").pipe(Flag.withDescription("take a savepoint at the stop checkpoint"), Flag.withDefault(false)) },
  ({ job, savepoint, nats, json }) =>
    exitWith(async () => {
      const { runStop } = await import("./savepoints.ts");
      return runStop({ job, savepoint, natsUrl: Option.getOrUndefined(nats), json });
    }),
).pipe(Command.withDescription("Stop a job at a checkpoint (sources stop at its barrier); its state stays"));

const startCommand = Command.make("start", jobOnly, ({ job, nats, json }) =>
  exitWith(async () => {
    const { runStart } = await import("./savepoints.ts");
    return runStart({ job, natsUrl: Option.getOrUndefined(nats), json });
  }),
).pipe(Command.withDescription("Run a stopped job again from its last checkpoint"));

const stateCommand = Command.make("state").pipe(
  Command.withDescription("Query and write functions' keyed state"),
  Command.withSubcommands(stateSubcommands),
);

export const eddy = Command.make("eddy").pipe(
  Command.withDescription("eddy: actor-based stream functions on NATS JetStream"),
  Command.withSubcommands([natsServer, dev, demo, worker, supervisor, scale, checkpoints, deploy, ls, status, rollbackCommand, undeployCommand, k8s, nexmark, stateCommand, savepointCommand, savepointsCommand, stopCommand, startCommand]),
);

/**
 * Replaces effect/cli's presentation of a bad command line (full help, then the errors) with one
 * line: `eddy: <message> (see eddy <cmd> --help)`. Help and version output are unchanged.
 */
const oneLineErrors: CliOutput.Presenter = {
  present: (event) => {
    if (event._tag !== "InvalidInvocation") return CliOutput.defaultPresenter.present(event);
    const message = event.errors
      .map((e) => e.message.replace(/\s*\n\s*/g, " ").trim())
      .join("; ");
    return Console.error(`eddy: ${message} (see ${event.commandPath.join(" ")} --help)`);
  },
};

const program = Command.run(eddy, { version: pkg.version }).pipe(
  // A parse error arrives as ShowHelp carrying the errors (already printed by oneLineErrors).
  Effect.catchIf(
    (e): e is CliError.ShowHelp => CliError.isCliError(e) && e._tag === "ShowHelp" && e.errors.length > 0,
    () => Effect.fail(new ExitWithCodeError(USAGE_EXIT_CODE)),
  ),
  Effect.provide(CliOutput.layerPresenter(oneLineErrors)),
  Effect.provide(NodeServices.layer),
);

/** Runs `eddy` with `process.argv` and exits the process when done (bin/eddy.mjs calls this). */
export function runCli(): void {
  NodeRuntime.runMain(program);
}

// `node runtime/cli/main.ts ...` (the npm scripts) runs the CLI directly.
if (import.meta.main) runCli();
