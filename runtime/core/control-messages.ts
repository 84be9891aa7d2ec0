/**
 * Schemas of everything eddy reads from its control plane — the JSON on `eddy.<job>.ctl.*` and
 * `eddy.ctl.checkpoint`, and the records in the jobs bucket — and one decoder that never throws.
 *
 * Anyone with publish rights on a control subject, or write rights on the jobs bucket, can put
 * any bytes there (docs/design/ax-untrusted-control-messages.md). Before these schemas the
 * readers cast `JSON.parse` output to the record types, so `null` or a string where an object was
 * expected threw inside a subscription callback or a watch loop, which silently ended it. Each
 * reader now decodes with {@link decodeControl}: a `Rejected` result says why (`json`: not JSON,
 * `schema`: not the record's shape), the reader counts and logs it and goes on. Numbers that
 * count or identify things must be safe integers and times must be finite, so `1e999`
 * (Infinity), `NaN`-like strings and `1e20` are refused. Properties the schemas do not name are
 * dropped from the decoded value.
 *
 * These are Effect Schemas (the `effect` dependency): declarative, and their messages say which
 * field is wrong. Control messages are a few per checkpoint, so their cost does not matter; the
 * per-record internal messages are checked by hand in wire.ts and the partition actor instead.
 */
import { Result, Schema } from "effect";
import type {
  ActorFailure,
  Assignment,
  CheckpointRequest,
  CommittedCheckpoint,
  EndOfInput,
  JobSpecRecord,
  ResumeRequest,
  SnapshotAck,
  TriggerMessage,
  WorkerHeartbeat,
} from "./protocol.ts";
import { InputError } from "../errors.ts";

/** A non-negative safe integer: ids, generations, counts, sequences, sizes. */
const Count = Schema.Int.check(Schema.isGreaterThanOrEqualTo(0), Schema.isLessThanOrEqualTo(Number.MAX_SAFE_INTEGER));
/** A positive safe integer: partition counts, versions. */
const Positive = Schema.Int.check(Schema.isGreaterThanOrEqualTo(1), Schema.isLessThanOrEqualTo(Number.MAX_SAFE_INTEGER));
/** A point in time or a duration in ms: finite. */
const Millis = Schema.Finite;
const opt = Schema.optionalKey;

export const TriggerMessageSchema = Schema.Struct({ id: Positive, generation: Count, stop: Schema.Boolean, savepoint: opt(Schema.String) });

export const SnapshotAckSchema = Schema.Struct({
  id: Positive,
  generation: Count,
  actor: Schema.String,
  worker: Schema.String,
  bytes: Count,
  keysChanged: Count,
  alignmentMs: Millis,
  finished: Schema.Boolean,
});

export const ActorFailureSchema = Schema.Struct({ generation: Count, actor: Schema.String, worker: Schema.String, reason: Schema.String });

export const CheckpointRequestSchema = Schema.Struct({ job: Schema.NonEmptyString, stop: opt(Schema.Boolean), savepoint: opt(Schema.Boolean) });

export const CommittedCheckpointSchema = Schema.Struct({
  id: Count,
  generation: Count,
  committedAt: Millis,
  stop: opt(Schema.Boolean),
  handoff: opt(Schema.Boolean),
  finished: opt(Schema.Boolean),
});

export const AssignmentSchema = Schema.Struct({
  generation: Count,
  incarnation: opt(Count),
  codeVersion: opt(Positive),
  owners: Schema.Record(Schema.String, Schema.String),
  updatedAt: Millis,
});

export const EndOfInputSchema = Schema.Struct({ streams: Schema.Record(Schema.String, Count), requestedAt: Millis });

export const JobSpecRecordSchema = Schema.Struct({
  job: Schema.String,
  functions: Schema.Array(
    Schema.Struct({
      name: Schema.String,
      partitions: Positive,
      isSource: Schema.Boolean,
      stream: opt(Schema.String),
      subjects: opt(Schema.Array(Schema.String)),
    }),
  ),
  restartStrategy: opt(Schema.Record(Schema.String, Schema.Number)),
  updatedAt: Millis,
});

export const ResumeRequestSchema = Schema.Struct({ requestedAt: Millis });

/**
 * `<job>.status` is read field by field and defensively (supervisor.ts `historyOf`), so that a
 * new leader keeps whatever history is still readable; here it only has to be an object.
 */
export const JobStatusObjectSchema = Schema.Record(Schema.String, Schema.Unknown);

export const WorkerHeartbeatSchema = Schema.Struct({
  id: Schema.String,
  pid: Count,
  startedAt: Millis,
  jobs: Schema.Array(Schema.String),
  running: opt(Schema.Record(Schema.String, Count)),
  leaving: opt(Schema.Boolean),
});

/** Mirrors `DeploymentRecord` in runtime/nats/deployments.ts (the type lives there). */
export const DeploymentRecordSchema = Schema.Struct({
  job: Schema.String,
  version: Positive,
  digest: Schema.String,
  pipeline: Schema.String,
  source: Schema.String,
  partitions: opt(Positive),
  deployedAt: Millis,
  functions: Schema.Array(
    Schema.Struct({
      name: Schema.String,
      partitions: Positive,
      state: Schema.Record(Schema.String, Schema.Struct({ kind: Schema.String, version: Count })),
      source: opt(Schema.Struct({ stream: Schema.String, subjects: Schema.Array(Schema.String) })),
    }),
  ),
});

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
  | "heartbeat";

// The `Type` of each schema is checked against the protocol type it stands for: a field added to
// one and not the other fails the typecheck here.
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
  readonly deploy: Schema.Schema.Type<typeof DeploymentRecordSchema>;
  readonly heartbeat: WorkerHeartbeat;
}

/** The decoded value of a `kind` input. */
export type ControlRecord<K extends ControlKind> = Kinds[K];

const decoders: { readonly [K in ControlKind]: (input: unknown) => Result.Result<Kinds[K], Schema.SchemaError> } = {
  trigger: Schema.decodeUnknownResult(TriggerMessageSchema),
  ack: Schema.decodeUnknownResult(SnapshotAckSchema),
  failure: Schema.decodeUnknownResult(ActorFailureSchema),
  "checkpoint-request": Schema.decodeUnknownResult(CheckpointRequestSchema),
  latest: Schema.decodeUnknownResult(CommittedCheckpointSchema),
  assignment: Schema.decodeUnknownResult(AssignmentSchema),
  end: Schema.decodeUnknownResult(EndOfInputSchema),
  spec: Schema.decodeUnknownResult(JobSpecRecordSchema),
  status: Schema.decodeUnknownResult(JobStatusObjectSchema),
  resume: Schema.decodeUnknownResult(ResumeRequestSchema),
  deploy: Schema.decodeUnknownResult(DeploymentRecordSchema),
  heartbeat: Schema.decodeUnknownResult(WorkerHeartbeatSchema),
};

/** Why a control input was refused: not JSON at all, or JSON of the wrong shape. */
export type RejectReason = "json" | "schema";

export type Decoded<T> = { readonly ok: true; readonly value: T } | { readonly ok: false; readonly reason: RejectReason; readonly message: string };

const textDecoder = new TextDecoder();

/** Validates an already parsed value as a `kind` record. Never throws. */
export function validateControl<K extends ControlKind>(kind: K, input: unknown): Decoded<Kinds[K]> {
  let r: Result.Result<Kinds[K], Schema.SchemaError>;
  try {
    r = decoders[kind](input);
  } catch (e) {
    // Schema only throws on inputs it cannot even walk (a getter that throws); still a rejection.
    return { ok: false, reason: "schema", message: `${kind}: ${(e as Error)?.message ?? String(e)}` };
  }
  if (Result.isSuccess(r)) return { ok: true, value: r.success };
  return { ok: false, reason: "schema", message: `${kind}: ${oneLine(r.failure.message)}` };
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
