/**
 * Validators of everything eddy reads from its control plane — the JSON on `eddy.<job>.ctl.*` and
 * `eddy.ctl.checkpoint`, and the records in the jobs and worker buckets — and one decoder that
 * never throws.
 *
 * Anyone with publish rights on a control subject, or write rights on the jobs bucket, can put
 * any bytes there (docs/design/ax-untrusted-control-messages.md). Before these checks the
 * readers cast `JSON.parse` output to the record types, so `null` or a string where an object was
 * expected threw inside a subscription callback or a watch loop, which silently ended it. Each
 * reader now decodes with {@link decodeControl}: a rejection says why (`json`: not JSON,
 * `schema`: not the record's shape), the reader counts and logs it and goes on. Numbers that
 * count or identify things must be safe integers and times must be finite, so `1e999`
 * (Infinity), `NaN`-like strings and `1e20` are refused. Properties a schema does not name are
 * left alone (the readers never look at them).
 *
 * The schemas are small hand-written combinators rather than Effect Schema: runtime/core stays
 * free of Effect (test/unit/architecture), and a check that walks the value once without
 * building a copy is all a reader needs.
 */
import type {
  ActorFailure,
  Assignment,
  CheckpointRecord,
  CheckpointReply,
  CheckpointRequest,
  CommittedCheckpoint,
  EndOfInput,
  JobSpecRecord,
  ResumeRequest,
  SnapshotAck,
  TriggerMessage,
  WorkerHeartbeat,
  DeploymentRecord,
} from "./protocol.ts";
import { MAX_HEARTBEAT_PROGRESS } from "./protocol.ts";
import { InputError } from "../errors.ts";

/** A check: undefined if `x` fits, else what is wrong (with `path`, the field's place). */
export type Check = (x: unknown, path: string) => string | undefined;

const isObject = (x: unknown): x is Record<string, unknown> => typeof x === "object" && x !== null && !Array.isArray(x);
const at = (path: string, what: string) => (path === "" ? what : `${path}: ${what}`);

const str: Check = (x, p) => (typeof x === "string" ? undefined : at(p, "expected a string"));
const nonEmpty: Check = (x, p) => (typeof x === "string" && x.length > 0 ? undefined : at(p, "expected a non-empty string"));
const bool: Check = (x, p) => (typeof x === "boolean" ? undefined : at(p, "expected a boolean"));
/** A non-negative safe integer: ids, generations, counts, sequences, sizes. */
const count: Check = (x, p) => (Number.isSafeInteger(x) && (x as number) >= 0 ? undefined : at(p, "expected a non-negative safe integer"));
/** A positive safe integer: partition counts, versions. */
const positive: Check = (x, p) => (Number.isSafeInteger(x) && (x as number) >= 1 ? undefined : at(p, "expected a positive safe integer"));
/** A point in time or a duration in ms: finite. */
const millis: Check = (x, p) => (typeof x === "number" && Number.isFinite(x) ? undefined : at(p, "expected a finite number"));
const finite = millis;
const anything: Check = () => undefined;
const oneOf =
  (...values: readonly string[]): Check =>
  (x, p) => (typeof x === "string" && values.includes(x) ? undefined : at(p, `expected one of ${values.join(", ")}`));
/** Exactly this value (a discriminant such as `ok: true`). */
const literal =
  (value: unknown): Check =>
  (x, p) => (x === value ? undefined : at(p, `expected ${JSON.stringify(value)}`));

/** Fields that must be present, and fields that may be absent (but not `null` or wrong). */
const struct =
  (required: Readonly<Record<string, Check>>, optional: Readonly<Record<string, Check>> = {}): Check =>
  (x, p) => {
    if (!isObject(x)) return at(p, "expected an object");
    for (const k in required) {
      if (!Object.hasOwn(x, k)) return at(p === "" ? k : `${p}.${k}`, "missing");
      const e = required[k]!(x[k], p === "" ? k : `${p}.${k}`);
      if (e !== undefined) return e;
    }
    for (const k in optional) {
      if (!Object.hasOwn(x, k) || x[k] === undefined) continue;
      const e = optional[k]!(x[k], p === "" ? k : `${p}.${k}`);
      if (e !== undefined) return e;
    }
    return undefined;
  };

/** An object used as a map: every own value fits `value`. */
const record =
  (value: Check): Check =>
  (x, p) => {
    if (!isObject(x)) return at(p, "expected an object");
    for (const k of Object.keys(x)) {
      const e = value(x[k], `${p}[${JSON.stringify(k)}]`);
      if (e !== undefined) return e;
    }
    return undefined;
  };

const array =
  (item: Check): Check =>
  (x, p) => {
    if (!Array.isArray(x)) return at(p, "expected an array");
    for (let i = 0; i < x.length; i++) {
      const e = item(x[i], `${p}[${i}]`);
      if (e !== undefined) return e;
    }
    return undefined;
  };

export const triggerMessage = struct({ id: positive, generation: count, stop: bool }, { savepoint: str });

/** A segment reference of an ack: [object name, bytes, epoch] (changelog.ts checks the name). */
const segmentRef: Check = (x, p) =>
  Array.isArray(x) && x.length === 3 && typeof x[0] === "string" && Number.isSafeInteger(x[1]) && Number.isSafeInteger(x[2]) ? undefined : at(p, "expected [name, bytes, epoch]");

export const snapshotAck = struct(
  {
    id: positive,
    generation: count,
    actor: str,
    worker: str,
    bytes: count,
    keysChanged: count,
    alignmentMs: millis,
    finished: bool,
  },
  { segments: array(segmentRef), timings: struct({ syncMs: millis, uploadMs: millis, ackWaitMs: millis }) },
);

export const actorFailure = struct({ generation: count, actor: str, worker: str, reason: str });

export const checkpointRequest = struct({ job: nonEmpty }, { stop: bool, savepoint: bool });

export const committedCheckpoint = struct({ id: count, generation: count, committedAt: millis }, { stop: bool, handoff: bool, finished: bool });

export const assignment = struct({ generation: count, owners: record(str), updatedAt: millis }, { incarnation: count, codeVersion: positive });

export const endOfInput = struct({ streams: record(count), requestedAt: millis });

export const jobSpecRecord = struct(
  {
    job: str,
    functions: array(struct({ name: str, partitions: positive, isSource: bool }, { stream: str, subjects: array(str), inputs: array(struct({ fn: str }, { output: str, broadcast: bool })), chain: array(str) })),
    updatedAt: millis,
  },
  { restartStrategy: record(finite) },
);

export const resumeRequest = struct({ requestedAt: millis });

/** `<job>.ckpt.<id>`: the supervisor's record of one checkpoint. */
export const checkpointRecord = struct(
  { id: count, generation: count, status: oneOf("in-progress", "committed", "aborted"), startedAt: millis },
  {
    completedAt: millis,
    durationMs: finite,
    alignmentMs: finite,
    bytes: count,
    keysChanged: count,
    actors: count,
    stop: bool,
    handoff: bool,
    reason: str,
    finished: bool,
    savepoint: str,
    restoredFrom: str,
    perActor: record(struct({ alignmentMs: finite, bytes: count, keysChanged: count }, { syncMs: finite, uploadMs: finite, ackWaitMs: finite })),
  },
);

const errorBody = struct({ name: str, message: str });

/** The leader's answer to a checkpoint request (`eddy.ctl.checkpoint`). */
const okReply = struct({ ok: literal(true), record: checkpointRecord });
const errorReply = struct({ ok: literal(false), error: errorBody });
export const checkpointReply: Check = (x, p) => (isObject(x) && x.ok === true ? okReply : errorReply)(x, p);

/**
 * `<job>.status` is read field by field and defensively (supervisor.ts `historyOf`), so that a
 * new leader keeps whatever history is still readable; here it only has to be an object.
 */
export const jobStatusObject = record(anything);

/** An object used as a map of at most `max` entries (a bound on what a reader walks and keeps). */
const boundedRecord =
  (value: Check, max: number): Check =>
  (x, p) => {
    if (isObject(x) && Object.keys(x).length > max) return at(p, `expected at most ${max} entries`);
    return record(value)(x, p);
  };

export const workerHeartbeat = struct(
  { id: str, pid: count, startedAt: millis, jobs: array(str) },
  { running: record(count), leaving: bool, progress: struct({ generation: count, beat: count, actors: boundedRecord(count, MAX_HEARTBEAT_PROGRESS) }) },
);


export const deploymentRecord = struct(
  {
    job: str,
    version: positive,
    digest: str,
    pipeline: str,
    source: str,
    deployedAt: millis,
    functions: array(
      struct(
        { name: str, partitions: positive, state: record(struct({ kind: str, version: count })) },
        { source: struct({ stream: str, subjects: array(str) }), upsert: str, chained: bool },
      ),
    ),
  },
  { partitions: positive },
);

/** The kinds of control input, as named in logs and in `eddy_rejected_messages_total{subject_kind}`. */
export type ControlKind =
  | "trigger"
  | "ack"
  | "failure"
  | "checkpoint-request"
  | "latest"
  | "assignment"
  | "end"
  | "spec"
  | "status"
  | "resume"
  | "deploy"
  | "heartbeat"
  | "checkpoint"
  | "checkpoint-reply";

// What each kind decodes to. A field added to a protocol type needs its check above.
interface Kinds {
  readonly trigger: TriggerMessage;
  readonly ack: SnapshotAck;
  readonly failure: ActorFailure;
  readonly "checkpoint-request": CheckpointRequest;
  readonly latest: CommittedCheckpoint;
  readonly assignment: Assignment;
  readonly end: EndOfInput;
  readonly spec: JobSpecRecord;
  readonly status: Readonly<Record<string, unknown>>;
  readonly resume: ResumeRequest;
  readonly deploy: DeploymentRecord;
  readonly heartbeat: WorkerHeartbeat;
  readonly checkpoint: CheckpointRecord;
  readonly "checkpoint-reply": CheckpointReply;
}

/** The decoded value of a `kind` input. */
export type ControlRecord<K extends ControlKind> = Kinds[K];

const checks: { readonly [K in ControlKind]: Check } = {
  trigger: triggerMessage,
  ack: snapshotAck,
  failure: actorFailure,
  "checkpoint-request": checkpointRequest,
  latest: committedCheckpoint,
  assignment,
  end: endOfInput,
  spec: jobSpecRecord,
  status: jobStatusObject,
  resume: resumeRequest,
  deploy: deploymentRecord,
  heartbeat: workerHeartbeat,
  checkpoint: checkpointRecord,
  "checkpoint-reply": checkpointReply,
};

/** Why a control input was refused: not JSON at all, or JSON of the wrong shape. */
export type RejectReason = "json" | "schema";

export type Decoded<T> = { readonly ok: true; readonly value: T } | { readonly ok: false; readonly reason: RejectReason; readonly message: string };

const textDecoder = new TextDecoder();

/** Validates an already parsed value as a `kind` record. Never throws. */
export function validateControl<K extends ControlKind>(kind: K, input: unknown): Decoded<Kinds[K]> {
  const e = checks[kind](input, "");
  return e === undefined ? { ok: true, value: input as Kinds[K] } : { ok: false, reason: "schema", message: `${kind}: ${oneLine(e)}` };
}

/** Decodes the bytes of a `kind` message or record (UTF-8 JSON). Never throws. */
export function decodeControl<K extends ControlKind>(kind: K, data: Uint8Array): Decoded<Kinds[K]> {
  let parsed: unknown;
  try {
    parsed = JSON.parse(textDecoder.decode(data));
  } catch (e) {
    return { ok: false, reason: "json", message: `${kind}: not JSON (${(e as Error).message.slice(0, 80)})` };
  }
  return validateControl(kind, parsed);
}

/** A control record that does not decode, where the caller needs an error (a restore, a CLI read). */
export class InvalidControlRecordError extends InputError {
  override readonly name = "InvalidControlRecordError";
}

/** Like {@link decodeControl}, but throws {@link InvalidControlRecordError}. */
export function decodeControlOrThrow<K extends ControlKind>(kind: K, data: Uint8Array, where: string): Kinds[K] {
  const d = decodeControl(kind, data);
  if (!d.ok) throw new InvalidControlRecordError(`${where}: ${d.message}`);
  return d.value;
}

const oneLine = (s: string) => {
  const line = s.replace(/\s+/g, " ").trim();
  return line.length > 200 ? `${line.slice(0, 200)}…` : line;
};

// ---- who sent it --------------------------------------------------------------------------------

/**
 * Whether a message on a core subject was put there by JetStream rather than published by a
 * client, and if so how; `undefined` for an ordinary publish.
 *
 * NATS checks who may *publish* on a subject, but a consumer's deliver subject and the reply
 * subject of a direct get are not checked against anything (docs/security.md): whoever may
 * create a push consumer on a stream, or direct-get from one, can have the server put that
 * stream's messages — bytes they wrote there themselves — on any control subject. eddy publishes
 * its control messages with core publishes, so what JetStream delivered is never eddy's own.
 * The marks, checked on nats-server 2.9.10: a consumer's deliveries carry a `$JS.ACK.…` reply
 * subject whatever the ack policy (none and all included, headers-only too), its flow-control
 * requests `$JS.FC.…`, its idle heartbeats a status line (100) and no reply; a direct get's
 * answer carries a `Nats-Stream` header and no reply.
 */
export function jetStreamOrigin(reply: string | undefined, header: (name: string) => string | undefined, status: number): string | undefined {
  if (reply !== undefined && reply.startsWith("$JS.")) return `delivered by a JetStream consumer (reply ${reply.split(".").slice(0, 4).join(".")}…)`;
  const stream = header("Nats-Stream");
  if (stream !== undefined && stream !== "") return `served from stream ${JSON.stringify(stream.slice(0, 64))} (a direct get)`;
  if (status !== 0) return `a JetStream status message (${status})`;
  return undefined;
}
