/**
 * Writing a new object to a JetStream object store in one pipelined burst: what an actor's
 * checkpoint (its delta manifest and change segments) stores on the path of every barrier.
 *
 * nats.js's `put` looks the name up first (one request, to purge the chunks of an object it
 * replaces), publishes the chunks, waits for their acknowledgements and only then publishes the
 * meta record: three round trips in a row. Checkpoint objects get names never used before (a
 * checkpoint id, a run's segment sequence), so the lookup finds nothing, and the chunks and the
 * meta record can go out together: the stream stores one connection's publishes in order, and
 * the object counts as written once all are acknowledged. With 100 ms checkpoints that took a
 * third of the time from the barrier to the acknowledgement off every checkpoint.
 *
 * The format is the object store's (NATS ADR-20), so nats.js reads, lists, checks and deletes
 * these objects like its own: chunks of at most 128 KiB on `$O.<bucket>.C.<nuid>`, then the
 * meta record (JSON with size, chunk count and SHA-256 digest) on `$O.<bucket>.M.<name in
 * base64url>` with a subject roll-up, so the newest meta record is the object.
 */
import { createHash } from "node:crypto";
import { headers as makeHeaders, nuid } from "@nats-io/transport-node";
import type { AckedMessage, AckedPublisher } from "./acked-publisher.ts";
import { repeatUnacknowledged } from "./kv-cas.ts";
import { InputError } from "../errors.ts";

/** The object store's default chunk size (nats.js, ADR-20). */
export const OBJECT_CHUNK_BYTES = 128 * 1024;
/** Chunks in flight at once: 4 MiB of a large segment. */
const CHUNK_WINDOW = 32;

/**
 * The subject an object's meta record is stored under: its name in padded base64url (ADR-20).
 * nats.js encodes each character as one byte (`btoa`, so names beyond Latin-1 are refused),
 * and it is nats.js that reads these objects, so the same is done here.
 */
export function objectMetaSubject(bucket: string, name: string): string {
  if (/[^\u0000-\u00ff]/.test(name)) throw new InputError(`object name ${JSON.stringify(name)}: only Latin-1 characters can be stored`);
  const b64 = Buffer.from(name, "latin1").toString("base64").replace(/\+/g, "-").replace(/\//g, "_");
  return `$O.${bucket}.M.${b64}`;
}

/** The subject of the chunks of the object version `id`. */
export const objectChunkSubject = (bucket: string, id: string) => `$O.${bucket}.C.${id}`;

/** The meta record of object `name` stored as chunks `id` of `chunkBytes` each (ADR-20). Pure. */
export function objectMetaRecord(bucket: string, name: string, id: string, data: Uint8Array, chunkBytes: number, mtime: Date): Record<string, unknown> {
  const digest = createHash("sha256").update(data).digest("base64").replace(/\+/g, "-").replace(/\//g, "_");
  return {
    name,
    description: "",
    options: { max_chunk_size: chunkBytes },
    bucket,
    nuid: id,
    size: data.length,
    chunks: Math.ceil(data.length / chunkBytes),
    mtime: mtime.toISOString(),
    digest: `SHA-256=${digest}`,
    deleted: false,
  };
}

/** What {@link putNewObject} needs from the connection. */
export interface ObjectWriter {
  readonly publisher: AckedPublisher;
  /** The server's largest payload: chunks are no larger. */
  readonly maxPayload: number;
  /** Purges the messages of `subject` from the store's stream (`OBJ_<bucket>`). */
  purge(subject: string): Promise<unknown>;
}

/**
 * Stores `data` as object `name` of `bucket`, a name not written before: chunks and meta record
 * in one burst, resolved once all are acknowledged. An attempt left unacknowledged (a timeout, a
 * leader election) is repeated whole with new chunks, and the chunks of attempts that did not
 * make the object are purged afterwards; a name written twice would leave the first version's
 * chunks behind.
 */
export async function putNewObject(w: ObjectWriter, bucket: string, name: string, data: Uint8Array): Promise<void> {
  const chunkBytes = Math.max(1, Math.min(OBJECT_CHUNK_BYTES, w.maxPayload));
  const meta = objectMetaSubject(bucket, name);
  const rollup = makeHeaders();
  rollup.set("Nats-Rollup", "sub");
  const abandoned: string[] = [];
  try {
    await repeatUnacknowledged(async () => {
      const id = nuid.next();
      const chunks = objectChunkSubject(bucket, id);
      const messages: AckedMessage[] = [];
      for (let at = 0; at < data.length; at += chunkBytes) messages.push({ subject: chunks, data: data.subarray(at, at + chunkBytes) });
      const record = objectMetaRecord(bucket, name, id, data, chunkBytes, new Date());
      messages.push({ subject: meta, data: Buffer.from(JSON.stringify(record)), headers: rollup });
      try {
        await w.publisher.publishAll(messages, CHUNK_WINDOW);
      } catch (e) {
        abandoned.push(chunks);
        throw e;
      }
    });
  } finally {
    // Best effort: an abandoned attempt's chunks are garbage whether or not they are purged now.
    // Had the last attempt failed, its meta record may still name its chunks (an object that no
    // checkpoint commits, as its actor never acknowledges it); the purge breaks it for good.
    for (const subject of abandoned) await w.purge(subject).catch(() => undefined);
  }
}
