/**
 * `eddy nexmark generate`: writes Nexmark events (functions/nexmark/generator.ts) as JSON lines to
 * a file or stdout. Streams: lines are encoded into 1 MiB buffers, at most 8 MiB are queued for
 * writing (generation waits for the stream to drain beyond that), so memory stays flat however
 * many events are asked for. A reader that goes away on stdout (`| head`) ends it quietly.
 */
import { createWriteStream } from "node:fs";
import type { Writable } from "node:stream";
import { eventToJson, generateEvents, type NexmarkConfig } from "../../functions/nexmark/generator.ts";
import { InvalidArgumentError } from "../errors.ts";

export interface NexmarkGenerateOptions {
  /** Number of events to write. */
  readonly events: number;
  readonly seed: number;
  /** File to write (created or truncated); undefined = stdout. */
  readonly out: string | undefined;
  /** Further generator settings (rate, base time, out-of-order groups, sizes, ...). */
  readonly config?: Omit<NexmarkConfig, "seed">;
  /** Position of the first event (to generate a slice of a longer stream). Default 0. */
  readonly firstEventId?: number;
}

/** Size of the buffers lines are encoded into; up to WRITE_AHEAD bytes are queued for writing. */
const CHUNK_BYTES = 1 << 20;
const WRITE_AHEAD = 8 << 20;
let stdoutGuarded = false;

/** Resolves on the first of these events (an "error" included), never rejects. */
function settle(stream: Writable, events: readonly string[]): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      for (const e of events) stream.off(e, done);
      resolve();
    };
    for (const e of events) stream.on(e, done);
  });
}

export async function runNexmarkGenerate(options: NexmarkGenerateOptions): Promise<number> {
  const { events, seed, out } = options;
  if (!Number.isSafeInteger(events) || events < 0) throw new InvalidArgumentError(`nexmark-generate: events must be a non-negative integer, got ${events}`);
  if (!Number.isSafeInteger(seed)) throw new InvalidArgumentError(`nexmark-generate: seed must be an integer, got ${seed}`);
  const config: NexmarkConfig = { ...options.config, seed };
  // Validates the configuration (on the first next()) before any file is created or truncated.
  const lines = generateEvents(config, events, options.firstEventId ?? 0);
  let first = lines.next();

  const stream: Writable = out === undefined ? process.stdout : createWriteStream(out, { highWaterMark: WRITE_AHEAD });
  let closed = false;
  let failure: Error | undefined;
  const onError = (e: Error) => {
    closed = true;
    // A closed pipe on stdout (e.g. `| head`) just means nobody wants more lines.
    if (!(out === undefined && (e as NodeJS.ErrnoException).code === "EPIPE")) failure ??= e;
  };
  const onClose = () => (closed = true);
  stream.on("error", onError);
  stream.on("close", onClose);

  const write = async (chunk: Uint8Array | string) => {
    if (!closed && !stream.write(chunk)) await settle(stream, ["drain", "close", "error"]);
  };
  try {
    // Lines are encoded straight into a buffer (no long strings to build and re-encode); a full
    // buffer is handed to the stream and a fresh one started.
    let buf = Buffer.allocUnsafe(CHUNK_BYTES);
    let used = 0;
    for (; !first.done && !closed; first = lines.next()) {
      const line = eventToJson(first.value);
      if (used + 3 * line.length + 1 > CHUNK_BYTES) {
        if (used > 0) await write(buf.subarray(0, used));
        buf = Buffer.allocUnsafe(CHUNK_BYTES);
        used = 0;
        if (3 * line.length + 1 > CHUNK_BYTES) {
          await write(line + "\n");
          continue;
        }
      }
      used += buf.write(line, used, "utf8");
      buf[used++] = 0x0a;
    }
    if (used > 0) await write(buf.subarray(0, used));
    if (out !== undefined && !closed) {
      const done = settle(stream, ["close", "error"]);
      stream.end();
      await done;
    }
  } finally {
    stream.off("close", onClose);
    stream.off("error", onError);
    if (out !== undefined) stream.destroy();
    else if (!stdoutGuarded) {
      stdoutGuarded = true;
      stream.on("error", () => {}); // a late EPIPE once we are done
    }
  }
  if (failure !== undefined) throw failure;
  return 0;
}
