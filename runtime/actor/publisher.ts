/**
 * Pipelined, acknowledged publishing with a bound on what is in flight.
 *
 * An acked JetStream publish takes a round trip; waiting for each one would cap an actor at a
 * few thousand messages a second. The publisher keeps up to `maxInFlight` publishes outstanding,
 * remembers the first failure, and `drain()` waits for every acknowledgement — the runtime drains
 * before it records an input position, so nothing before that position can be silently lost.
 */
import type { Transport } from "./ports.ts";
import { TransientError } from "../errors.ts";

/** A publish was not acknowledged; the actor must restart from its last durable position. */
export class PublishFailedError extends TransientError {
  override readonly name = "PublishFailedError";
}

export class Publisher {
  private readonly transport: Transport;
  private readonly maxInFlight: number;
  private inFlight = 0;
  private sequence = 0;
  /** Sequence numbers of publishes not yet settled, in publish order (Sets keep insertion order). */
  private readonly unsettled = new Set<number>();
  private failure: Error | undefined;
  private waiters: Array<() => void> = [];
  /** Messages acknowledged so far (for metrics). */
  acknowledged = 0;

  constructor(transport: Transport, maxInFlight = 256) {
    this.transport = transport;
    this.maxInFlight = maxInFlight;
  }

  get full(): boolean {
    return this.inFlight >= this.maxInFlight;
  }

  /** Starts a publish and returns its sequence number (for `drainUpTo`). */
  publish(subject: string, data: Uint8Array, headers?: Readonly<Record<string, string>>, msgId?: string): number {
    this.inFlight++;
    const seq = ++this.sequence;
    this.unsettled.add(seq);
    this.transport.publish(subject, data, headers, msgId).then(
      () => {
        this.acknowledged++;
        this.settle(seq);
      },
      (e: unknown) => {
        this.failure ??= new PublishFailedError(`publish to ${subject} failed: ${(e as Error)?.message ?? e}`, { cause: e });
        this.settle(seq);
      },
    );
    return seq;
  }

  /** Sequence number of the last publish started. */
  get lastSequence(): number {
    return this.sequence;
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
    this.inFlight--;
    this.unsettled.delete(seq);
    const waiters = this.waiters;
    this.waiters = [];
    for (const w of waiters) w();
  }
}
