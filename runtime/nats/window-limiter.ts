/**
 * A bound on concurrent promises: `add` waits while `limit` are pending. Used to pipeline
 * acknowledged publishes without queueing unboundedly. O(1) per operation (a `Promise.race` over
 * the pending set would cost O(limit) per call).
 */
export class WindowLimiter {
  private readonly limit: number;
  private pending = 0;
  private failure: unknown;
  private waiters: Array<() => void> = [];

  constructor(limit: number) {
    this.limit = limit;
  }

  /** Starts tracking `p`; resolves once fewer than `limit` are pending. Throws an earlier failure. */
  async add(p: Promise<unknown>): Promise<void> {
    this.pending++;
    p.then(
      () => this.settle(),
      (e: unknown) => {
        this.failure ??= e;
        this.settle();
      },
    );
    while (this.pending >= this.limit) await new Promise<void>((r) => this.waiters.push(r));
    if (this.failure !== undefined) throw this.failure;
  }

  /** Waits for everything added; throws the first failure. */
  async drain(): Promise<void> {
    while (this.pending > 0) await new Promise<void>((r) => this.waiters.push(r));
    if (this.failure !== undefined) throw this.failure;
  }

  private settle(): void {
    this.pending--;
    const waiters = this.waiters;
    this.waiters = [];
    for (const w of waiters) w();
  }
}
