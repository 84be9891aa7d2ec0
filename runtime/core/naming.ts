/**
 * Names of everything a job owns in NATS: streams, subjects and key-value buckets.
 *
 * Kept in one place so that the runtime, the CLI and tests agree, and so that an external
 * publisher or a monitoring tool can compute them too. Job and function names are validated as
 * subject tokens by the job graph before any of these are built.
 */

/** Stream holding the input of a non-source function (all its partitions). */
export function inputStream(job: string, fn: string): string {
  return `EDDY_${job}_${fn}`;
}

/** Subject of one partition's input. */
export function inputSubject(job: string, fn: string, partition: number): string {
  return `eddy.${job}.${fn}.in.${partition}`;
}

/** Wildcard covering every partition's input of a function. */
export function inputSubjects(job: string, fn: string): string {
  return `eddy.${job}.${fn}.in.*`;
}

/** Operations of the state service of a function (architecture.md §7). */
export type StateOperation = "get" | "scan" | "put" | "delete";

/** Subject of a state-service operation on one partition: `eddy.q.<job>.<fn>.<p>.<op>`. */
export function stateServiceSubject(job: string, fn: string, partition: number, op: StateOperation): string {
  return `eddy.q.${job}.${fn}.${partition}.${op}`;
}

/** Name of the NATS service (`$SRV.INFO.<name>`) of a function's state. */
export function stateServiceName(job: string, fn: string): string {
  return `eddy-state-${job}-${fn}`;
}

/** Dead-letter stream of a job. */
export function deadLetterStream(job: string): string {
  return `EDDY_${job}_DLQ`;
}

/** Dead-letter subject of one function of a job. */
export function deadLetterSubject(job: string, fn: string): string {
  return `eddy.${job}.dlq.${fn}`;
}

/**
 * Stream of a job's spilled exactly-once sink output (held for a commit, too much for memory;
 * docs/design/bb-spilled-sink-output.md).
 */
export function spillStream(job: string): string {
  return `EDDY_${job}_SPILL`;
}

/**
 * Subject of one partition's spilled sink output. Five tokens with `spill` fourth, so it never
 * overlaps a function's input subjects (`in` fourth) or the dead-letter subjects (four tokens).
 */
export function spillSubject(job: string, fn: string, partition: number): string {
  return `eddy.${job}.${fn}.spill.${partition}`;
}

/** Wildcard covering the spilled output of every partition of a function. */
export function spillSubjects(job: string, fn: string): string {
  return `eddy.${job}.${fn}.spill.*`;
}

/** Key-value bucket holding a function's state, timers, watermarks and input positions. */
export function stateBucket(job: string, fn: string): string {
  return `eddy_${job}_${fn}`;
}

/**
 * Object store of a job's snapshot deltas (objects `<job>/<id>/<fn>/<p>`). One per job, not one per
 * cluster: NATS permissions name stores, never objects (their subjects carry encoded names or
 * random ids), so only a store of its own keeps another job's workers from overwriting them.
 */
export function checkpointObjects(job: string): string {
  return `eddy_ckpt_${job}`;
}

/** Object store of a job's savepoints: full exports per (function, partition) and manifests, kept until deleted. */
export function savepointObjects(job: string): string {
  return `eddy_sp_${job}`;
}

/** Message headers of internal messages. */
export const HEADER = {
  kind: "Eddy-Kind",
  producer: "Eddy-Producer",
  generation: "Eddy-Generation",
  /** Handoff count within a generation (absent: 0); see Assignment.incarnation. */
  incarnation: "Eddy-Incarnation",
  epoch: "Eddy-Epoch",
  /** Number of an internal message among those its producer's run sent to the partition, from 1 (core/message-sequence.ts). */
  sequence: "Eddy-Seq",
  reason: "Eddy-Reason",
  fn: "Eddy-Function",
  sourceStream: "Eddy-Source-Stream",
  sourceSubject: "Eddy-Source-Subject",
  sourceSequence: "Eddy-Source-Sequence",
  /** Of a dead letter of one event of a batched source message: its index in the message, from 0 (design note ce). */
  sourceEvent: "Eddy-Source-Event",
  /** Of a dead letter about a state entry: its key. */
  key: "Eddy-Key",
  /** Of a dead letter whose payload was cut to fit: the original size in bytes. */
  originalSize: "Eddy-Original-Size",
  /** Of a dead letter whose payload was cut to fit: the sha256 (hex) of the original payload. */
  originalSha256: "Eddy-Original-Sha256",
  /** Of a `write` record: the inbox to answer once it is applied. */
  reply: "Eddy-Reply",
  /** Of a spill message: the actor run that wrote it (held-sink.ts). */
  spillRun: "Eddy-Spill-Run",
  /** Of a message of a changelog function's sink: the record's row kind, `+I`, `-U`, `+U` or `-D` (design note bv). */
  rowKind: "Eddy-Row-Kind",
} as const;
