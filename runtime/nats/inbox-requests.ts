/**
 * Requests in bulk over one inbox: what acknowledged publishes (acked-publisher.ts) and state
 * reads (leader-gets.ts) are made of.
 *
 * nats.js makes each request a subscription entry with two stack-traced error objects (kept in
 * case it fails or times out) and a timer, and a caller that awaits each request before issuing
 * the next sends one socket write per request. Profiles put that at ~35 % of a process's CPU for
 * KV writes (design note bm) and ~40 % for the reads of cold keys (note bf). Here one wildcard
 * subscription receives the replies of every request of a connection, a single sweep times out
 * the ones that get none, and requests issued without yielding leave in a few socket writes.
 */
import { createInbox, type MsgHdrs, type NatsConnection, type Subscription } from "@nats-io/transport-node";
import { TransientError } from "../errors.ts";

/** Turns a reply into the request's result, or throws why it is not one; `subject` is the request's. */
export type ReplyParser<T> = (data: Uint8Array, headers: MsgHdrs | undefined, subject: string) => T;

interface Pending {
  readonly subject: string;
  readonly sentAt: number;
  readonly parse: ReplyParser<unknown>;
  readonly resolve: (value: unknown) => void;
  readonly reject: (e: unknown) => void;
}

export class InboxRequests {
  private readonly nc: NatsConnection;
  private readonly timeoutMs: number;
  private readonly timedOut: (subject: string, timeoutMs: number) => Error;
  private readonly prefix: string;
  private sub: Subscription | undefined;
  private next = 0;
  private readonly pending = new Map<string, Pending>();
  private sweeper: ReturnType<typeof setInterval> | undefined;
  private statusWatch: { stop(): void } | undefined;

  /** `timedOut` makes the error of a request that got no reply within `timeoutMs`. */
  constructor(nc: NatsConnection, timeoutMs: number, timedOut: (subject: string, timeoutMs: number) => Error) {
    this.nc = nc;
    this.timeoutMs = timeoutMs;
    this.timedOut = timedOut;
    const inboxPrefix = (nc as { options?: { inboxPrefix?: string } }).options?.inboxPrefix;
    this.prefix = createInbox(inboxPrefix);
  }

  /** Sends `data` to `subject` and resolves with what `parse` makes of the reply. */
  request<T>(subject: string, data: Uint8Array, headers: MsgHdrs | undefined, parse: ReplyParser<T>): Promise<T> {
    if (this.sub === undefined) {
      this.sub = this.nc.subscribe(`${this.prefix}.*`, { callback: (err, msg) => (err === null ? this.settle(msg.subject, msg.data, msg.headers) : this.failAll(err)) });
      this.watchPermissions();
    }
    const token = (this.next++).toString(36);
    const promise = new Promise<T>((resolve, reject) => this.pending.set(token, { subject, sentAt: Date.now(), parse, resolve: resolve as (v: unknown) => void, reject }));
    try {
      this.nc.publish(subject, data, headers === undefined ? { reply: `${this.prefix}.${token}` } : { reply: `${this.prefix}.${token}`, headers });
    } catch (e) {
      this.pending.get(token)?.reject(e);
      this.pending.delete(token);
    }
    if (this.sweeper === undefined) {
      this.sweeper = setInterval(() => this.sweep(), Math.max(50, Math.floor(this.timeoutMs / 4)));
      this.sweeper.unref?.();
    }
    return promise;
  }

  /** Stops listening; requests still waiting fail with `e`. */
  close(e: unknown): void {
    this.failAll(e);
    this.sub?.unsubscribe();
    this.sub = undefined;
    this.statusWatch?.stop();
    this.statusWatch = undefined;
  }

  /**
   * A publish the connection's permissions forbid is dropped by the server, which says so on the
   * connection, not to the inbox: nats.js reports it as a status event naming the subject. The
   * oldest request to that subject fails with it (one error per refused publish), at once and as
   * what it is, instead of timing out as if the server were electing a leader.
   */
  private watchPermissions(): void {
    const status = this.nc.status();
    // nats.js's iterator can be stopped, which removes it from the connection's listeners.
    this.statusWatch = { stop: () => (status as { stop?: () => void }).stop?.() };
    void (async () => {
      for await (const s of status) {
        if (s.type !== "error") continue;
        const e = (s as { error?: { name?: string; operation?: string; subject?: string } }).error;
        if (e?.name === "PermissionViolationError" && e.operation === "publish" && typeof e.subject === "string") this.failOne(e.subject, e);
      }
    })().catch(() => undefined);
  }

  private failOne(subject: string, e: unknown): void {
    for (const [token, p] of this.pending) {
      if (p.subject !== subject) continue;
      this.pending.delete(token);
      p.reject(e);
      break;
    }
    this.idle();
  }

  private settle(subject: string, data: Uint8Array, headers: MsgHdrs | undefined): void {
    const token = subject.slice(this.prefix.length + 1);
    const p = this.pending.get(token);
    if (p === undefined) return; // late (timed out) or not ours
    this.pending.delete(token);
    let value: unknown;
    try {
      value = p.parse(data, headers, p.subject);
    } catch (e) {
      p.reject(e);
      this.idle();
      return;
    }
    p.resolve(value);
    this.idle();
  }

  private sweep(): void {
    const oldest = Date.now() - this.timeoutMs;
    for (const [token, p] of this.pending) {
      // Insertion order is send order: the first one still in time ends the sweep.
      if (p.sentAt > oldest) break;
      this.pending.delete(token);
      p.reject(this.timedOut(p.subject, this.timeoutMs));
    }
    this.idle();
  }

  private failAll(e: unknown): void {
    for (const p of this.pending.values()) p.reject(e);
    this.pending.clear();
    this.idle();
  }

  /** Without anything pending the sweeper stops, so an idle requester keeps no timer. */
  private idle(): void {
    if (this.pending.size === 0 && this.sweeper !== undefined) {
      clearInterval(this.sweeper);
      this.sweeper = undefined;
    }
  }
}


/**
 * Issues `issue(item)` for every item, at most `window` unsettled at a time, and resolves once
 * all settled; rejects with the first failure once all have settled (none is issued after it).
 * Items go in bursts without yielding in between (one socket write per burst), refilled once half
 * the window is free rather than one at a time.
 */
export async function inBursts<T>(items: Iterable<T>, window: number, issue: (item: T) => Promise<unknown>): Promise<void> {
  let inFlight = 0;
  let failure: unknown;
  let wake: (() => void) | undefined;
  const settled = () => {
    inFlight--;
    if (wake !== undefined && inFlight <= window / 2) {
      const w = wake;
      wake = undefined;
      w();
    }
  };
  for (const item of items) {
    if (inFlight >= window) await new Promise<void>((r) => (wake = r));
    if (failure !== undefined) break;
    inFlight++;
    issue(item).then(settled, (e: unknown) => {
      failure ??= e;
      settled();
    });
  }
  while (inFlight > 0) await new Promise<void>((r) => (wake = r));
  if (failure !== undefined) throw failure;
}
