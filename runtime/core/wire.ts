/**
 * The body of messages between actors: record batches and watermark updates, in msgpack.
 *
 * One NATS message carries many records (`[key, ts, value]` flattened into one array), because a
 * JetStream publish costs far more than decoding a record. A batch also says how the producer's
 * watermark moved while the batch was filled: `marks` holds `(index, watermark)` pairs meaning
 * "before record `index`, the producer's watermark was `watermark`", and `watermark` is the value
 * after the last record. With that, a consumer sees every record under exactly the watermark the
 * producer had when it emitted it, however the runtime happened to cut batches — so window
 * firings and lateness are repeatable from the input alone.
 */
import { Packr } from "msgpackr";
import { InputError } from "../errors.ts";

/** Kinds of internal messages (carried in the `Eddy-Kind` header). */
export type MessageKind = "data" | "watermark" | "end" | "barrier";

export interface DataBatch {
  /** Flattened records: key, event time, value, key, event time, value, ... */
  readonly records: unknown[];
  /** Flattened (record index, producer watermark before that record) pairs. */
  readonly marks: number[];
  /** Producer watermark after the batch. */
  readonly watermark: number;
  /** The producer is idle: leave it out of the watermark minimum until it sends data again. */
  readonly idle?: boolean;
  /** Per record, the index of the consumer input it is for; absent means input 0 for all. */
  readonly inputs?: number[];
}

export interface WatermarkUpdate {
  readonly watermark: number;
  readonly idle?: boolean;
}

/** The message body could not be decoded; it is dead-lettered with this reason. */
export class MalformedMessageError extends InputError {
  override readonly name = "MalformedMessageError";
}

// Records inside a batch often share a shape, which msgpackr's record extension encodes once per
// message. Only eddy reads these bodies, so the non-standard extension is fine here.
const batchPackr = new Packr({ useRecords: true, mapsAsObjects: true });

export function encodeBatch(batch: DataBatch): Uint8Array {
  const body: Record<string, unknown> = { r: batch.records, w: batch.watermark };
  if (batch.marks.length > 0) body.m = batch.marks;
  if (batch.idle) body.i = true;
  if (batch.inputs !== undefined) body.n = batch.inputs;
  return batchPackr.pack(body);
}

export function decodeBatch(data: Uint8Array): DataBatch {
  let body: { r?: unknown; m?: unknown; w?: unknown; i?: unknown; n?: unknown };
  try {
    body = batchPackr.unpack(data);
  } catch (e) {
    throw new MalformedMessageError(`undecodable batch: ${(e as Error).message}`);
  }
  if (body === null || typeof body !== "object" || !Array.isArray(body.r) || body.r.length % 3 !== 0 || typeof body.w !== "number" || Number.isNaN(body.w)) {
    throw new MalformedMessageError("not an eddy record batch");
  }
  const marks = body.m ?? [];
  if (!Array.isArray(marks) || marks.length % 2 !== 0 || !marks.every((x) => typeof x === "number" && !Number.isNaN(x))) {
    throw new MalformedMessageError("eddy record batch with malformed watermark marks");
  }
  const inputs = body.n;
  if (inputs !== undefined && (!Array.isArray(inputs) || inputs.length * 3 !== body.r.length)) {
    throw new MalformedMessageError("eddy record batch with malformed input indexes");
  }
  return { records: body.r, marks: marks as number[], watermark: body.w, idle: body.i === true, ...(inputs === undefined ? {} : { inputs: inputs as number[] }) };
}

export function encodeWatermark(update: WatermarkUpdate): Uint8Array {
  return batchPackr.pack(update.idle ? { w: update.watermark, i: true } : { w: update.watermark });
}

export function decodeWatermark(data: Uint8Array): WatermarkUpdate {
  let body: { w?: unknown; i?: unknown };
  try {
    body = batchPackr.unpack(data);
  } catch (e) {
    throw new MalformedMessageError(`undecodable watermark: ${(e as Error).message}`);
  }
  if (body === null || typeof body !== "object" || typeof body.w !== "number" || Number.isNaN(body.w)) throw new MalformedMessageError("not an eddy watermark");
  return { watermark: body.w, idle: body.i === true };
}

// State values are plain msgpack so that any client can read committed state from KV.
const statePackr = new Packr({ useRecords: false, mapsAsObjects: true });

export function encodeValue(value: unknown): Uint8Array {
  return statePackr.pack(value);
}

export function decodeValue(data: Uint8Array): unknown {
  return statePackr.unpack(data);
}
