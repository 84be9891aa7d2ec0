/**
 * Counts of control-plane input eddy refused, per kind and reason, for `/metrics`
 * (`eddy_rejected_messages_total{subject_kind,reason}`) and for logs.
 *
 * A refused message is otherwise invisible: the subscription or watch that got it just goes on.
 * Someone publishing garbage on a control subject (docs/design/ax-untrusted-control-messages.md)
 * shows up here. The counts are per process — a worker and a supervisor in one process share
 * them — because the metrics endpoints are per process too.
 */
import { MetricsText } from "./prometheus.ts";

const counts = new Map<string, { readonly kind: string; readonly reason: string; n: number }>();

/**
 * Counts one refused input and logs it: the first ten of a kind and reason, then every power of
 * two, so a flood of garbage cannot flood the log.
 */
export function countRejected(kind: string, reason: string, message: string, log?: (line: string) => void): void {
  const id = `${kind}\u0000${reason}`;
  let c = counts.get(id);
  if (c === undefined) counts.set(id, (c = { kind, reason, n: 0 }));
  c.n++;
  if (log !== undefined && (c.n <= 10 || (c.n & (c.n - 1)) === 0)) log(`rejected ${kind} (${reason}, ${c.n} so far): ${message}`);
}

/** Refused inputs so far, per kind and reason. */
export function rejectedCounts(): Array<{ readonly kind: string; readonly reason: string; readonly count: number }> {
  return [...counts.values()].map((c) => ({ kind: c.kind, reason: c.reason, count: c.n }));
}

/** Adds `eddy_rejected_messages_total` samples (none before the first rejection). */
export function addRejectionMetrics(m: MetricsText): void {
  for (const c of counts.values()) {
    m.add("eddy_rejected_messages_total", "counter", "Control-plane messages and records refused as malformed or not matching what is in flight.", { subject_kind: c.kind, reason: c.reason }, c.n);
  }
}

/** The samples alone, as exposition text. */
export function rejectionMetrics(): string {
  const m = new MetricsText();
  addRejectionMetrics(m);
  return counts.size === 0 ? "" : m.render();
}
