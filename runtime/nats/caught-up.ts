/**
 * Reading a consumer until it has caught up with its stream: a KV listing, a scan, the dead
 * letters.
 *
 * Each message a consumer delivers says how many more it has pending, and a reader that stops at
 * the one saying 0 has everything. But messages counted as pending can leave the stream before
 * they are delivered: a KV bucket keeps one message per key, so a key written twice while it is
 * listed loses the write the count included, and a purge or a limit removes messages too. The
 * consumer then moves past them and has nothing to send, while the last message it sent still
 * said 1 — and the reader waited for good. On nats-server 2.9 this stalled the map listings of a
 * state cache under materialization writes (the actor's read of a key never ended: 2 of 14
 * runs of state-cache.test.ts two at a time, and likely the rules chaos run that failed CI;
 * design note cp).
 *
 * So once no message has come for a while, the reader asks the consumer: nothing pending and
 * everything delivered received means caught up; messages in flight mean wait; pending messages
 * that are not delivered for long mean stalled, and the caller reads again. A KV listing that
 * caught up only this way is read again too: nats-server 2.9's "last per subject" consumers
 * also repeat a subject, and skip the one written, when a listed key is written while they list
 * (test/integration/caught-up.test.ts), so such a listing is not trusted to be whole.
 */
import type { Consumer, ConsumerMessages, JsMsg } from "@nats-io/jetstream";

/**
 * How a read ended: a message said nothing more is pending; the consumer said so after a silence
 * (some message counted as pending left the stream before it was delivered); its messages ended
 * (stopped); or it stalled.
 */
export type CatchUpEnd = "caught-up" | "caught-up-when-idle" | "ended" | "stalled";

/** What the reader does when no message came for a while. Pure. */
export function judgeIdleConsumer(c: { readonly pending: number; readonly delivered: number }, received: number, idleMs: number, stallMs: number): "caught-up" | "wait" | "stalled" {
  if (c.delivered > received) return "wait"; // sent, not read yet
  if (c.pending === 0) return "caught-up";
  return idleMs >= stallMs ? "stalled" : "wait";
}

export interface CatchUpOptions {
  /** No message for this long: ask the consumer (default 1 s). */
  readonly idleMs?: number;
  /** Pending messages not delivered for this long: stalled (default 30 s). */
  readonly stallMs?: number;
}

/**
 * The messages of `messages` (a `consume()` of `consumer`) until the consumer has caught up;
 * `end.reason` says why the iteration ended. A caller that breaks out of it ends it too.
 */
export async function* untilCaughtUp(consumer: Consumer, messages: ConsumerMessages, end: { reason?: CatchUpEnd }, options: CatchUpOptions = {}): AsyncGenerator<JsMsg, void, undefined> {
  const idleMs = options.idleMs ?? 1000;
  const stallMs = options.stallMs ?? 30_000;
  const it = messages[Symbol.asyncIterator]();
  // One timer for the whole read: each wait races the next message with its next tick.
  let tick!: Promise<undefined>;
  let fire!: () => void;
  const arm = () => (tick = new Promise<undefined>((r) => (fire = () => r(undefined))));
  arm();
  const timer = setInterval(() => {
    fire();
    arm();
  }, Math.max(10, Math.floor(idleMs / 2)));
  let next: Promise<IteratorResult<JsMsg>> | undefined;
  let received = 0;
  let lastAt = performance.now();
  try {
    for (;;) {
      next ??= it.next();
      const r = await Promise.race([next, tick]);
      if (r === undefined) {
        const idle = performance.now() - lastAt;
        if (idle < idleMs) continue;
        // An unanswered question (a busy server, an election) is no answer: wait, up to the stall bound.
        const info = await consumer.info(false).catch(() => undefined);
        const verdict = info === undefined ? (idle >= stallMs ? "stalled" : "wait") : judgeIdleConsumer({ pending: info.num_pending, delivered: info.delivered.consumer_seq }, received, idle, stallMs);
        if (verdict === "wait") continue;
        end.reason = verdict === "caught-up" ? "caught-up-when-idle" : verdict;
        return;
      }
      next = undefined;
      if (r.done === true) {
        end.reason = "ended";
        return;
      }
      const m = r.value;
      received = Math.max(received, m.info.deliverySequence);
      lastAt = performance.now();
      yield m;
      if (m.info.pending === 0) {
        end.reason = "caught-up";
        return;
      }
    }
  } finally {
    clearInterval(timer);
  }
}
