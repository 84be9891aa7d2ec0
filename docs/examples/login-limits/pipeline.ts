// Failed-login alerts whose limits change while the job runs: the limits arrive on their own
// stream and are broadcast to every partition of the keyed detector. Used by
// docs/guides/broadcast-state.md; its test is test/unit/sdk/broadcast-example.test.ts.
import { boundedOutOfOrderness, broadcast, defineFunction, definePipeline, defineSink, fromFunction, fromStream, mapState, valueState } from "../../../runtime/sdk/index.ts";

export interface Login {
  readonly user: string;
  readonly ok: boolean;
  readonly ts: number;
}

/** A limit: alert once a user has more than `maxFailures` failed logins in a row; `null` removes it. */
export interface Limit {
  readonly rule: string;
  readonly maxFailures: number | null;
}

export interface Alert {
  readonly user: string;
  readonly rule: string;
  readonly failures: number;
}

export const logins = defineFunction<Login, Login>({
  name: "logins",
  input: fromStream("LOGINS", { subject: "logins" }),
  timestamp: (l) => l.ts,
  watermark: boundedOutOfOrderness(5_000),
  process: (ctx, l) => ctx.emit(l),
});

// An unkeyed source with one partition reads the limits; its output is broadcast below.
export const limits = defineFunction<Limit, Limit>({
  name: "limits",
  input: fromStream("LIMITS", { subject: "limits" }),
  process: (ctx, l) => ctx.emit(l),
});

const failures = { failures: valueState<number>() };
const rules = { limits: mapState<number>() };

export const detect = defineFunction<Login, Alert, typeof failures, typeof rules>({
  name: "detect",
  input: [fromFunction(logins), broadcast(fromFunction(limits))], // input 1 is broadcast
  key: (l) => l.user,
  state: failures,
  broadcastState: rules,
  // Keyed records: read the limits (read-only here), count failures per user.
  process(ctx, l) {
    if (l.ok) return ctx.state.failures.clear();
    const n = ctx.state.failures.update((n) => (n ?? 0) + 1);
    for (const [rule, max] of ctx.broadcast.limits.entries()) if (n === max + 1) ctx.emit({ user: l.user, rule, failures: n });
  },
  // Broadcast records: called in every partition at the checkpoint barrier after they arrive.
  processBroadcast(ctx, l: Limit) {
    if (l.maxFailures === null) ctx.broadcast.limits.delete(l.rule);
    else ctx.broadcast.limits.set(l.rule, l.maxFailures);
  },
});

export default definePipeline({
  name: "login-limits",
  functions: [logins, limits, detect, defineSink({ name: "alerts", input: fromFunction(detect), subject: "alerts" })],
});
