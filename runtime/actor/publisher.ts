/**
 * Pipelined, acknowledged publishing with a bound on what is in flight, that rides out a stream's
 * leader election.
 *
 * An acked JetStream publish takes a round trip; waiting for each one would cap an actor at a
 * few thousand messages a second. The publisher keeps up to `maxInFlight` publishes outstanding,
 * remembers the first failure, and `drain()` waits for every acknowledgement — the runtime drains
 * before it records an input position, so nothing before that position can be silently lost.
 *
 * On a JetStream cluster a publish is not acknowledged for a few seconds while the stream elects
 * a new leader (a server died): it times out or finds no responder ({@link WriteUnacknowledgedError}).
 * Failing the actor then would restart the whole job from its last checkpoint at every server
 * loss. Instead every publish carries a message id (the caller's, or one unique to this
 * publisher), and once everything in flight has settled the unacknowledged ones are published
 * again, one at a time and in their original order, with growing pauses: a copy that was stored
 * after all is dropped by JetStream's duplicate detection. Order is what consumers rely on (a
 * barrier after its epoch's batches, watermarks rising), so the publisher checks it with the
 * acknowledgements' stream sequences: if a publish made before an unacknowledged one was stored
 * after it, or the stream stays unavailable past `retryForMs`, the publisher fails as before and
 * the job recovers from its checkpoint (design note bl).
 */
import type { PublishReceipt, Transport } from "./ports.ts";
import { WriteUnacknowledgedError } from "./ports.ts";
import { TransientError } from "../errors.ts";

/** A publish was not acknowledged; the actor must restart from its last durable position. */
export class PublishFailedError extends TransientError {
  override readonly name = "PublishFailedError";
}

/** How long unacknowledged publishes are repeated before the publisher gives up (well inside JetStream's 2 min duplicate window). */
export const PUBLISH_RETRY_FOR_MS = 30_000;

interface Pending {
  readonly seq: number;
  readonly subject: string;
  readonly data: Uint8Array;
  readonly headers: Readonly<Record<string, string>> | undefined;
  readonly msgId: string;
}

/** Options of a {@link Publisher}. */
export interface PublisherOptions {
  /** Give up repeating unacknowledged publishes after this long (default {@link PUBLISH_RETRY_FOR_MS}). */
  readonly retryForMs?: number;
  /** First pause before repeating (doubles up to 2 s; default 100 ms). */
  readonly retryPauseMs?: number;
  /** Prefix of the message ids of publishes without one (default: random, unique to this publisher). */
  readonly idPrefix?: string;
  /** Called once per repeat round with how many publishes it repeats (for logs and metrics). */
  readonly onRetry?: (count: number, attempt: number) => void;
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/**
 * Whether the publishes were stored in the order they were made: `receipts` by publish sequence,
 * `floor` the highest stream sequence per stream of earlier publishes whose receipts were let go.
 */
export function keptOrder(receipts: ReadonlyMap<number, PublishReceipt>, floor: ReadonlyMap<string, number> = new Map()): boolean {
  const highest = new Map(floor);
  for (const k of [...receipts.keys()].sort((a, b) => a - b)) {
    const r = receipts.get(k)!;
    const before = highest.get(r.stream);
    if (before !== undefined && r.seq < before) return false;
    highest.set(r.stream, r.seq);
  }
  return true;
}

export class Publisher {
  private readonly transport: Transport;
  private readonly maxInFlight: number;
  private readonly retryForMs: number;
  private readonly retryPauseMs: number;
  private readonly idPrefix: string;
  private readonly onRetry: ((count: number, attempt: number) => void) | undefined;
  private inFlight = 0;
  private sequence = 0;
  /** Sequence numbers of publishes not yet settled, in publish order (Sets keep insertion order). */
  private readonly unsettled = new Set<number>();
  private failure: Error | undefined;
  private waiters: Array<() => void> = [];
  /** Sent and not answered yet. */
  private sending = 0;
  /** Not acknowledged, to be repeated once nothing is being sent. */
  private unacknowledged: Pending[] = [];
  /** Published while a repeat round is due or running: sent after it, in order. */
  private held: Pending[] = [];
  private repeating = false;
  /** Acknowledgements by publish sequence, down to the oldest unsettled publish (a repeat could still be stored out of order with them). */
  private readonly receipts = new Map<number, PublishReceipt>();
  /** The highest stream sequence per stream of the receipts let go. */
  private readonly floor = new Map<string, number>();
  /** Messages acknowledged so far (for metrics). */
  acknowledged = 0;
  /** Publishes repeated after they went unacknowledged (for metrics and tests). */
  repeated = 0;
  /**
   * Called after a publish settled (acknowledged or failed): the output router sends a batch that
   * waited for it (core/output-flush.ts, design note cj).
   */
  onSettled: (() => void) | undefined;

  constructor(transport: Transport, maxInFlight = 256, options: PublisherOptions = {}) {
    this.transport = transport;
    this.maxInFlight = maxInFlight;
    this.retryForMs = options.retryForMs ?? PUBLISH_RETRY_FOR_MS;
    this.retryPauseMs = options.retryPauseMs ?? 100;
    this.idPrefix = options.idPrefix ?? `${Math.random().toString(36).slice(2, 10)}${Date.now().toString(36)}.`;
    this.onRetry = options.onRetry;
  }

  get full(): boolean {
    return this.inFlight >= this.maxInFlight;
  }

  /** Starts a publish and returns its sequence number (for `drainUpTo`). */
  publish(subject: string, data: Uint8Array, headers?: Readonly<Record<string, string>>, msgId?: string): number {
    this.inFlight++;
    const seq = ++this.sequence;
    this.unsettled.add(seq);
    const p: Pending = { seq, subject, data, headers, msgId: msgId ?? `${this.idPrefix}${seq}` };
    if (this.repeating || this.unacknowledged.length > 0) this.held.push(p);
    else this.send(p);
    return seq;
  }

  private send(p: Pending): void {
    this.sending++;
    this.transport.publish(p.subject, p.data, p.headers, p.msgId).then(
      (receipt) => {
        this.sending--;
        if (receipt !== undefined) this.receipts.set(p.seq, receipt);
        this.acknowledged++;
        this.settle(p.seq);
        this.maybeRepeat();
      },
      (e: unknown) => {
        this.sending--;
        if (e instanceof WriteUnacknowledgedError && this.failure === undefined) {
          this.unacknowledged.push(p);
          this.maybeRepeat();
          return;
        }
        this.fail(p, e);
        this.maybeRepeat();
      },
    );
  }

  private fail(p: Pending, e: unknown): void {
    this.failure ??= new PublishFailedError(`publish to ${p.subject} failed: ${(e as Error)?.message ?? e}`, { cause: e });
    this.settle(p.seq);
  }

  // Repeats once nothing is on the wire: a publish still in flight could otherwise be stored
  // after a repeated one that was made before it.
  private maybeRepeat(): void {
    if (this.repeating || this.sending > 0 || this.unacknowledged.length === 0) return;
    this.repeating = true;
    void this.repeat().finally(() => {
      this.repeating = false;
      const held = this.held;
      this.held = [];
      if (this.failure !== undefined) {
        for (const p of held) this.fail(p, this.failure);
        return;
      }
      for (const p of held) this.send(p);
    });
  }

  private async repeat(): Promise<void> {
    const started = Date.now();
    let pause = this.retryPauseMs;
    let last: unknown;
    for (let attempt = 1; this.unacknowledged.length > 0; attempt++) {
      const batch = this.unacknowledged.sort((a, b) => a.seq - b.seq);
      this.unacknowledged = [];
      if (this.failure !== undefined || Date.now() - started > this.retryForMs) {
        const why = this.failure ?? new WriteUnacknowledgedError(`not acknowledged for ${Math.round((Date.now() - started) / 1000)} s${last === undefined ? "" : `: ${(last as Error)?.message ?? last}`}`);
        for (const p of batch) this.fail(p, why);
        return;
      }
      await sleep(pause);
      pause = Math.min(2000, pause * 2);
      this.onRetry?.(batch.length, attempt);
      for (let i = 0; i < batch.length; i++) {
        const p = batch[i]!;
        let receipt: PublishReceipt | void;
        try {
          receipt = await this.transport.publish(p.subject, p.data, p.headers, p.msgId);
        } catch (e) {
          if (!(e instanceof WriteUnacknowledgedError)) {
            for (const q of batch.slice(i)) this.fail(q, e);
            return;
          }
          // This one and every later one go again next round, in order.
          last = e;
          this.unacknowledged = batch.slice(i);
          break;
        }
        this.repeated++;
        if (receipt !== undefined) this.receipts.set(p.seq, receipt);
        if (!keptOrder(this.receipts, this.floor)) {
          this.fail(p, new Error(`a publish to ${p.subject} repeated after a lost acknowledgement was stored after later ones`));
          for (const q of batch.slice(i + 1)) this.fail(q, this.failure);
          return;
        }
        this.acknowledged++;
        this.settle(p.seq);
      }
    }
  }

  /** Sequence number of the last publish started. */
  get lastSequence(): number {
    return this.sequence;
  }

  /** Whether publish `seq` is acknowledged or failed (0, no publish: settled). */
  isSettled(seq: number): boolean {
    return !this.unsettled.has(seq);
  }

  /**
   * Waits until every publish up to sequence `mark` is acknowledged (later ones may still be in
   * flight, so a busy actor is not starved); throws the first failure.
   */
  async drainUpTo(mark: number): Promise<void> {
    for (;;) {
      this.check();
      const oldest = this.unsettled.values().next();
      if (oldest.done || oldest.value > mark) return;
      await new Promise<void>((r) => this.waiters.push(r));
    }
  }

  /** Waits until fewer than `maxInFlight` publishes are outstanding. */
  async capacity(): Promise<void> {
    while (this.inFlight >= this.maxInFlight) await new Promise<void>((r) => this.waiters.push(r));
    this.check();
  }

  /** Waits for every outstanding acknowledgement; throws the first failure. */
  async drain(): Promise<void> {
    while (this.inFlight > 0) await new Promise<void>((r) => this.waiters.push(r));
    this.check();
  }

  private check(): void {
    if (this.failure !== undefined) throw this.failure;
  }

  private settle(seq: number): void {
    if (!this.unsettled.delete(seq)) return;
    this.inFlight--;
    // A receipt matters only while an earlier publish may still be repeated; below that, the
    // highest stream sequence per stream is enough to check order against.
    const oldest = this.unsettled.values().next();
    for (const [k, r] of this.receipts) {
      if (!oldest.done && k >= oldest.value) continue;
      this.receipts.delete(k);
      if (r.seq > (this.floor.get(r.stream) ?? 0)) this.floor.set(r.stream, r.seq);
    }
    const waiters = this.waiters;
    this.waiters = [];
    for (const w of waiters) w();
    this.onSettled?.();
  }
}
