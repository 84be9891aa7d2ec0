/**
 * Compare-and-set writes to a KV bucket that survive a leader election of the bucket's stream.
 *
 * While a replicated bucket elects a leader (a server of the cluster died), a write times out or
 * finds no responder, and whether it was stored is unknown. Repeating a plain put is harmless,
 * but a compare-and-set is not: if the first attempt was stored, the repeat is refused ("wrong
 * last sequence") although the write happened — a supervisor would give up a lease it holds, or
 * abort a checkpoint it committed. So after an unacknowledged attempt, a refusal is checked
 * against the entry: if it holds exactly the bytes written, at a later revision than expected,
 * the write was ours and its revision is returned (design note bl). Anything else is a real
 * conflict and fails as before.
 */
import type { KV, KvEntry } from "@nats-io/kv";

/** What a write's failure means: maybe stored (repeat it), refused as a conflict, or something else. */
export function casFailureKind(e: unknown): "unacknowledged" | "conflict" | "other" {
  const name = (e as Error)?.name;
  const message = String((e as Error)?.message ?? e);
  if (/wrong last sequence|key exists|already exists/i.test(message)) return "conflict";
  if (name === "TimeoutError" || name === "JetStreamNotEnabled" || /\btimeout\b|timed out|no responders|jetstream is not enabled|disconnect|connection (closed|draining)|temporarily unavailable/i.test(message)) {
    return "unacknowledged";
  }
  return "other";
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/**
 * The revision of our own earlier write, if `current` (the entry read after a refused repeat)
 * is it: the bytes written, stored after `expectedRevision`. Undefined: someone else wrote.
 */
export function ownWriteRevision(written: Uint8Array, expectedRevision: number, current: Pick<KvEntry, "revision" | "value" | "operation"> | null): number | undefined {
  if (current === null || current.operation !== "PUT" || current.revision <= expectedRevision) return undefined;
  return sameBytes(current.value, written) ? current.revision : undefined;
}

/** Options of {@link casWrite}. */
export interface CasWriteOptions {
  /** Give up repeating after this long in all (default 20 s: an election took up to 9 s on a loaded 2-core machine). */
  readonly timeoutMs?: number;
}

const encoder = new TextEncoder();
/** The longest one attempt of an update waits for its acknowledgement. */
const ATTEMPT_MS = 2000;
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/**
 * Writes `data` to `key` if the key is still at `revision` (0: if it does not exist), repeating
 * unacknowledged attempts until `timeoutMs`; resolves with the new revision. Rejects with the
 * server's refusal if someone else wrote the key, and with the last error if time runs out.
 */
export async function casWrite(kv: Pick<KV, "create" | "update" | "get">, key: string, data: Uint8Array | string, revision: number, options: CasWriteOptions = {}): Promise<number> {
  const bytes = typeof data === "string" ? encoder.encode(data) : data;
  const deadline = Date.now() + (options.timeoutMs ?? 20_000);
  let unacknowledged = false;
  for (let pause = 50; ; pause = Math.min(1000, pause * 2)) {
    try {
      // Short attempts: a request that went to a leader that died meanwhile is never answered,
      // and waiting for it would use up the time in which the new leader could have taken a repeat.
      const attemptMs = Math.max(100, Math.min(ATTEMPT_MS, deadline - Date.now()));
      return revision === 0 ? await kv.create(key, bytes) : await kv.update(key, bytes, revision, attemptMs);
    } catch (e) {
      const kind = casFailureKind(e);
      if (kind === "conflict" && unacknowledged) {
        const own = ownWriteRevision(bytes, revision, await readBack(kv, key, deadline));
        if (own !== undefined) return own;
      }
      if (kind !== "unacknowledged" || Date.now() + pause > deadline) throw e;
      unacknowledged = true;
      await sleep(pause);
    }
  }
}

// The entry after a refused repeat; the bucket may still be electing, so reads are repeated too.
async function readBack(kv: Pick<KV, "get">, key: string, deadline: number): Promise<KvEntry | null> {
  for (let pause = 50; ; pause = Math.min(1000, pause * 2)) {
    try {
      return await kv.get(key);
    } catch (e) {
      if (casFailureKind(e) !== "unacknowledged" || Date.now() + pause > deadline) throw e;
      await sleep(pause);
    }
  }
}

/**
 * Runs `op` again while it fails as unacknowledged, for `timeoutMs` in all: for writes that are
 * the same whether they land once or twice (a put of a key's value, a delete, an object stored
 * under its name) and for reads. Not for compare-and-set writes: {@link casWrite}.
 */
export async function repeatUnacknowledged<T>(op: () => Promise<T>, timeoutMs = 30_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (let pause = 50; ; pause = Math.min(1000, pause * 2)) {
    try {
      return await op();
    } catch (e) {
      if (casFailureKind(e) !== "unacknowledged" || Date.now() + pause > deadline) throw e;
      await sleep(pause);
    }
  }
}
