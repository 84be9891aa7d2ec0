/**
 * The rule-detection pipeline (issue 14): security events checked against detection rules that
 * are published, changed and removed on a rule stream while the job runs; alerts go to an
 * exactly-once sink.
 *
 *   SECURITY stream ──> security-events (validate, event time, watermark; bad records dead-lettered)
 *                   ──> rules (liveRules: every active rule per its rule key; rule stream RULES, "rules.scenario.>")
 *                   └─> alerts sink (exactly-once: results.rules.alerts)
 *
 * The rules themselves are data (rules.ts, *.json), e.g.
 * `eddy rules put rules rules functions/rules/vpn-brute-force.json`.
 */
import { boundedOutOfOrderness, defineFunction, definePipeline, fromFunction, fromStream, liveRules } from "../../runtime/sdk/index.ts";
import { validateSecurityEvent, type SecurityEvent } from "./events.ts";
import { REMEMBER } from "./rules.ts";

/** The generator publishes no event more than 2 s after a later one (events.ts `maxDisorderMs`). */
export const MAX_OUT_OF_ORDERNESS_MS = 2_000;

/** A record is no security event; it is dead-lettered with this message. */
export class MalformedSecurityEventError extends Error {
  override readonly name = "MalformedSecurityEventError";
}

export interface RulesPipelineOptions {
  readonly job?: string;
  readonly sourceStream?: string;
  readonly sourceSubject?: string;
  readonly rulesStream?: string;
  readonly rulesSubject?: string;
  readonly alertsSubject?: string;
  readonly partitions?: number;
}

export function rulesPipeline(options: RulesPipelineOptions = {}) {
  const parse = defineFunction<unknown, SecurityEvent>({
    name: "security-events",
    input: fromStream(options.sourceStream ?? "SECURITY", { subject: options.sourceSubject ?? "security.>" }),
    timestamp: (e) => (e as { ts: number }).ts,
    watermark: boundedOutOfOrderness(MAX_OUT_OF_ORDERNESS_MS),
    process(ctx, record) {
      const e = validateSecurityEvent(record);
      if (typeof e === "string") throw new MalformedSecurityEventError(e);
      ctx.emit(e);
    },
  });

  const matcher = liveRules<SecurityEvent>({
    name: "rules",
    events: fromFunction(parse),
    rules: fromStream(options.rulesStream ?? "RULES", { subject: options.rulesSubject ?? "rules.scenario.>" }),
    timestamp: (e) => e.ts,
    partitions: options.partitions ?? 4,
    maxPartialMatches: 1_000,
    remember: REMEMBER,
    sink: { subject: options.alertsSubject ?? "results.rules.alerts" },
  });

  return definePipeline({ name: options.job ?? "rules", functions: [parse, ...matcher] });
}

export default rulesPipeline();
