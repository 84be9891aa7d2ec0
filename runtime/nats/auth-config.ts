/**
 * The nats-server `authorization` block of an eddy cluster with per-job users, rendered from the
 * jobs' names (`eddy auth render`, docs/security.md).
 *
 * NATS wildcards match whole tokens, and eddy's stream and bucket names are single tokens
 * (`EDDY_<job>_<fn>`, `KV_eddy_<job>_<fn>`), so a static file can only grant "every stream" where a
 * job needs its own: that let a worker purge or update any stream, and through a stream's
 * `republish` publish anywhere. Rendering the names of each job closes that: a job's worker,
 * query and producer users reach that job's streams, buckets and subjects and nothing else, and
 * no role but the admin may create or update a stream (a stream config can republish onto any
 * subject, mirror any stream). The job's streams and buckets are therefore created when the job is
 * deployed, by the admin, not by its workers.
 *
 * Snapshots and savepoints are in object stores of their job (`eddy_ckpt_<job>`, `eddy_sp_<job>`),
 * and heartbeats under keys of their job (`eddy_workers` keys `<job>.<worker>`), because object
 * names are encoded in their subjects and cannot be scoped, while store names and key tokens can.
 * What subject permissions still cannot separate is written down in docs/security.md: whoever may
 * create a consumer can have it deliver onto any core subject, and inboxes are shared. Pure: no I/O.
 */
import { heartbeatKeys, JOBS_BUCKET, LEADER_BUCKET, WORKERS_BUCKET } from "../core/protocol.ts";
import { checkpointObjects, deadLetterStream, deadLetterSubject, inputStream, inputSubjects, savepointObjects, spillStream, spillSubjects, stateBucket } from "../core/naming.ts";
import { CODE_OBJECTS } from "./deployments.ts";

/** What the users of one job must reach: its functions, its sources' streams and subjects, its sinks. */
export interface JobAccess {
  readonly job: string;
  readonly functions: ReadonlyArray<{
    readonly name: string;
    /** A source function's user stream and the subjects producers publish to. */
    readonly source?: { readonly stream: string; readonly subjects: readonly string[] };
  }>;
  /** Subjects the job's sinks publish to (JetStream publishes: the sink streams capture them). */
  readonly sinks?: readonly string[];
  /** KV buckets the job's lookups read (dimension tables, design note by): read only, never written. */
  readonly lookups?: readonly string[];
}

/** Names of the users `renderAuthConfig` writes. */
export const AUTH_USERS = {
  admin: "eddy-admin",
  supervisor: "eddy-supervisor",
  worker: (job: string) => `eddy-worker-${job}`,
  /** A worker of every rendered job (one Deployment or `eddy scale` running whatever is deployed). */
  allJobsWorker: "eddy-worker",
  query: (job: string) => `eddy-query-${job}`,
  producer: (job: string) => `eddy-producer-${job}`,
} as const;

/**
 * The environment variable the server reads a user's password from: `EDDY_ADMIN_PASSWORD`,
 * `EDDY_SUPERVISOR_PASSWORD`, `EDDY_WORKER_<JOB>_PASSWORD`, … (the job upper-cased, other
 * characters than letters and digits as `_`).
 */
export function passwordVariable(role: "admin" | "supervisor" | "worker" | "query" | "producer", job?: string): string {
  const suffix = job === undefined ? "" : `_${job.toUpperCase().replace(/[^A-Z0-9]/g, "_")}`;
  return `EDDY_${role.toUpperCase()}${suffix}_PASSWORD`;
}

const OBJ = (store: string) => `OBJ_${store}`;
const KV = (bucket: string) => `KV_${bucket}`;

/** Reading `stream`: info, message gets, direct gets. */
const readStream = (stream: string) => [`$JS.API.STREAM.INFO.${stream}`, `$JS.API.STREAM.MSG.GET.${stream}`, `$JS.API.DIRECT.GET.${stream}`, `$JS.API.DIRECT.GET.${stream}.>`];

/** Consuming `stream`: ordered and pull consumers (create, info, delete, next), their flow control. */
const consumeStream = (stream: string) => [
  `$JS.API.CONSUMER.CREATE.${stream}`,
  `$JS.API.CONSUMER.CREATE.${stream}.>`,
  `$JS.API.CONSUMER.INFO.${stream}.*`,
  `$JS.API.CONSUMER.DELETE.${stream}.*`,
  `$JS.API.CONSUMER.MSG.NEXT.${stream}.*`,
  `$JS.FC.${stream}.>`,
];

const quoted = (s: string) => JSON.stringify(s);

function user(name: string, variable: string, comment: string, publish: readonly string[], subscribe: readonly string[], deny: readonly string[] = []): string[] {
  const list = (items: readonly string[], indent: string) => items.map((i) => `${indent}${quoted(i)}`);
  return [
    `    # ${comment}`,
    "    {",
    `      user: ${quoted(name)}`,
    `      password: $${variable}`,
    "      permissions: {",
    "        publish: {",
    "          allow: [",
    ...list(publish, "            "),
    "          ]",
    ...(deny.length === 0 ? [] : ["          deny: [", ...list(deny, "            "), "          ]"]),
    "        }",
    "        subscribe: {",
    "          allow: [",
    ...list(subscribe, "            "),
    "          ]",
    "        }",
    "      }",
    "    }",
  ];
}

/** Everything a job's workers need, and nothing of other jobs' (see the module comment for what cannot be scoped). */
export function workerPermissions(a: JobAccess): { publish: string[]; subscribe: string[] } {
  const inputs = a.functions.map((f) => inputStream(a.job, f.name));
  const buckets = a.functions.map((f) => stateBucket(a.job, f.name));
  const sources = [...new Set(a.functions.flatMap((f) => (f.source === undefined ? [] : [f.source.stream])))];
  const readable = [
    KV(JOBS_BUCKET),
    KV(WORKERS_BUCKET),
    OBJ(checkpointObjects(a.job)),
    OBJ(savepointObjects(a.job)),
    OBJ(CODE_OBJECTS),
    deadLetterStream(a.job),
    spillStream(a.job),
    ...inputs,
    ...buckets.map(KV),
    ...sources,
  ];
  return {
    publish: [
      "$JS.API.INFO",
      ...readable.flatMap(readStream),
      // Lookup buckets: message gets only (no consumers, no writes).
      ...(a.lookups ?? []).map(KV).flatMap(readStream),
      ...readable.flatMap(consumeStream),
      // Input logs are trimmed below the last materialized checkpoint, spilled sink output once published.
      // (Message by message on a replicated stream of a server before 2.9.18: subject-removal.ts.)
      ...[...inputs, spillStream(a.job)].flatMap((s) => [`$JS.API.STREAM.PURGE.${s}`, `$JS.API.STREAM.MSG.DELETE.${s}`]),
      // State, timers, watermarks, positions; the job's spec; its heartbeats (`<job>.<worker>`).
      ...buckets.map((b) => `$KV.${b}.>`),
      `$KV.${JOBS_BUCKET}.${a.job}.spec`,
      `$KV.${WORKERS_BUCKET}.${heartbeatKeys(a.job)}`,
      // Snapshot deltas and savepoint exports: the job's own stores.
      `$O.${checkpointObjects(a.job)}.>`,
      `$O.${savepointObjects(a.job)}.>`,
      ...a.functions.map((f) => inputSubjects(a.job, f.name)),
      ...a.functions.map((f) => deadLetterSubject(a.job, f.name)),
      ...a.functions.map((f) => spillSubjects(a.job, f.name)),
      `eddy.${a.job}.ctl.ack`,
      `eddy.${a.job}.ctl.failed`,
      ...(a.sinks ?? []),
      // Replies: state-service answers, "write applied" notices, service discovery.
      "_INBOX.>",
    ],
    subscribe: ["_INBOX.>", `eddy.${a.job}.ctl.>`, `eddy.q.${a.job}.>`, "$SRV.>"],
  };
}

/** Live reads through the job's state services and committed reads of its buckets; no consumers, no writes. */
export function queryPermissions(a: JobAccess): { publish: string[]; subscribe: string[] } {
  const buckets = a.functions.map((f) => KV(stateBucket(a.job, f.name)));
  return {
    publish: [
      `eddy.q.${a.job}.*.*.get`,
      `eddy.q.${a.job}.*.*.scan`,
      "$SRV.PING",
      "$SRV.PING.>",
      "$SRV.INFO",
      "$SRV.INFO.>",
      "$SRV.STATS",
      "$SRV.STATS.>",
      "$JS.API.INFO",
      ...buckets.flatMap(readStream),
      // The job's own records (spec and deployment: partition counts, state declarations), no other job's.
      `$JS.API.STREAM.INFO.${KV(JOBS_BUCKET)}`,
      `$JS.API.DIRECT.GET.${KV(JOBS_BUCKET)}.$KV.${JOBS_BUCKET}.${a.job}.>`,
    ],
    subscribe: ["_INBOX.>"],
  };
}

/** Publishing into the job's source subjects (JetStream publishes; the acks come back to an inbox). */
export function producerPermissions(a: JobAccess): { publish: string[]; subscribe: string[] } {
  return { publish: [...new Set(a.functions.flatMap((f) => f.source?.subjects ?? []))], subscribe: ["_INBOX.>"] };
}

/**
 * The supervisor: cluster-wide control plane, lag of every stream; of each rendered job the
 * checkpoint store (read, and purged by the cleanup) and the savepoint store (manifests); never a
 * job's data, nor a snapshot.
 */
export function supervisorPermissions(jobs: readonly JobAccess[]): { publish: string[]; subscribe: string[] } {
  return {
    publish: [
      ...SUPERVISOR_PUBLISH,
      ...jobs.flatMap((j) => [
        // Deltas no actor can need any more are deleted (purges, control-store.ts); never written.
        `$JS.API.STREAM.PURGE.${OBJ(checkpointObjects(j.job))}`,
        `$JS.API.STREAM.MSG.DELETE.${OBJ(checkpointObjects(j.job))}`,
        // The manifest that completes a savepoint.
        `$O.${savepointObjects(j.job)}.>`,
      ]),
    ],
    // Heartbeats as they are written: news makes it poll sooner (design note co).
    subscribe: ["_INBOX.>", "eddy.*.ctl.>", "eddy.ctl.>", `$KV.${WORKERS_BUCKET}.>`],
  };
}

/** What the supervisor needs whichever jobs exist. */
const SUPERVISOR_PUBLISH = [
  "$JS.API.INFO",
  // Creates the control plane if it does not exist yet (ensureControlPlane).
  ...[JOBS_BUCKET, WORKERS_BUCKET, LEADER_BUCKET].map((b) => `$JS.API.STREAM.CREATE.${KV(b)}`),
  // Record deletions are purges of their subjects, not tombstones (control-store.ts).
  `$JS.API.STREAM.PURGE.${KV(JOBS_BUCKET)}`,
  `$JS.API.STREAM.MSG.DELETE.${KV(JOBS_BUCKET)}`,
  // Reads: stream infos (lag), bucket and object reads, consumers for key listings and lag.
  "$JS.API.STREAM.INFO.*",
  "$JS.API.STREAM.MSG.GET.*",
  "$JS.API.DIRECT.GET.>",
  "$JS.API.CONSUMER.CREATE.>",
  "$JS.API.CONSUMER.INFO.*.*",
  "$JS.API.CONSUMER.DELETE.*.*",
  "$JS.API.CONSUMER.MSG.NEXT.*.*",
  "$JS.FC.>",
  `$KV.${JOBS_BUCKET}.>`,
  `$KV.${LEADER_BUCKET}.>`,
  "eddy.*.ctl.>",
  "_INBOX.>",
];

/** The header of infra/nats/auth.conf, which is `renderAuthConfig([])` after it (test/unit/nats/auth-config.test.ts). */
export const BASE_AUTH_CONF_HEADER = [
  "# The cluster-wide users of eddy only: eddy-admin and eddy-supervisor. Jobs need users of their own",
  "# (eddy-worker-<job>, eddy-query-<job>, eddy-producer-<job>): render the complete file with",
  "#   npx eddy auth render <module.ts>... [--sink <subject>]... > auth.conf",
  "# and include that instead. See docs/security.md.",
  "",
].join("\n");

/**
 * The `authorization { users = [...] }` block for `jobs`: the admin, the supervisor, a worker of
 * all those jobs, and a worker, query and producer user per job. Passwords come from the server's environment
 * ({@link passwordVariable}); nats-server refuses to start while one is missing.
 */
export function renderAuthConfig(jobs: readonly JobAccess[]): string {
  const lines = [
    "# Generated by `eddy auth render`: users and permissions of an eddy cluster (nats-server 2.9+).",
    "# See docs/security.md. Render again (and reload the server) before deploying a job whose functions, sources or sinks change.",
    `# Passwords come from the server's environment: ${[passwordVariable("admin"), passwordVariable("supervisor"), ...(jobs.length > 0 ? [passwordVariable("worker")] : []), ...jobs.flatMap((j) => (["worker", "query", "producer"] as const).map((r) => passwordVariable(r, j.job)))].join(" ")}`,
    "authorization {",
    "  users = [",
    ...user(AUTH_USERS.admin, passwordVariable("admin"), "Deployments and operations (eddy deploy, state put, savepoints, status): everything.", [">"], [">"]),
    ...user(
      AUTH_USERS.supervisor,
      passwordVariable("supervisor"),
      "The supervisor: leadership lease, job records, checkpoint triggers, cleanup of checkpoint objects, savepoint manifests, lag. No job's data.",
      supervisorPermissions(jobs).publish,
      supervisorPermissions(jobs).subscribe,
    ),
  ];
  if (jobs.length > 0) {
    const all = jobs.map(workerPermissions);
    const union = (xs: string[][]) => [...new Set(xs.flat())];
    lines.push(
      ...user(
        AUTH_USERS.allJobsWorker,
        passwordVariable("worker"),
        `Workers of every job rendered here (${jobs.map((j) => j.job).join(", ")}): eddy worker running whatever is deployed.`,
        union(all.map((p) => p.publish)),
        union(all.map((p) => p.subscribe)),
      ),
    );
  }
  for (const j of jobs) {
    const w = workerPermissions(j);
    lines.push(...user(AUTH_USERS.worker(j.job), passwordVariable("worker", j.job), `Workers of job ${j.job} (eddy worker --job ${j.job}).`, w.publish, w.subscribe));
    const q = queryPermissions(j);
    lines.push(...user(AUTH_USERS.query(j.job), passwordVariable("query", j.job), `Read-only state queries of job ${j.job}.`, q.publish, q.subscribe));
    const p = producerPermissions(j);
    if (p.publish.length > 0) lines.push(...user(AUTH_USERS.producer(j.job), passwordVariable("producer", j.job), `Producers of job ${j.job}'s sources.`, p.publish, p.subscribe));
  }
  lines.push("  ]", "}");
  return lines.join("\n") + "\n";
}
