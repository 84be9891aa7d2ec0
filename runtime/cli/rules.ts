/**
 * `eddy rules put|ls|get|rm <job> <fn>`: manages the live rules of a function made by
 * `liveRules()` (design note bu). The function's rule stream is found in the job's spec (its
 * `<fn>-rules` source and that source's subject filter `<prefix>.>`); a rule is checked here with
 * the same function the job uses (`checkRuleChange`) before anything is published, so a bad
 * pattern or expression is refused with one line and changes nothing. What is published is read
 * back from the stream; what is active is the matcher's broadcast state as last committed.
 */
import { readFile } from "node:fs/promises";
import { withNats, type NatsConnection } from "../nats/connection.ts";
import { readJobView } from "../nats/job-views.ts";
import { stateClient } from "../nats/state-client.ts";
import { publishAll, readAll } from "../nats/streams.ts";
import { checkRuleChange, publishedRules, type PublishedRule } from "../core/rule-matcher.ts";
import { InvalidRuleError, RULE_ID, type Rule } from "../core/rules.ts";
import { InputError } from "../errors.ts";

/** The function is no live-rules matcher, or its rule stream cannot be found. */
export class NotLiveRulesError extends InputError {
  override readonly name = "NotLiveRulesError";
}

interface Target {
  readonly job: string;
  readonly fn: string;
  readonly natsUrl: string | undefined;
  readonly json: boolean;
}

/** Where a matcher's rules are published. */
export interface RuleStream {
  readonly stream: string;
  readonly prefix: string;
}

/**
 * The rule stream of matcher `fn` of `job`, from the job's spec: `fn`, `fn-keys` and the source
 * `fn-rules` whose filter ends in `.>`. A job that has no spec (never started) is looked up in its
 * deployed code.
 */
export async function findRuleStream(nc: NatsConnection, job: string, fn: string): Promise<RuleStream> {
  const view = await readJobView(nc, job);
  const notRules = () => new NotLiveRulesError(`${job}/${fn} is not a function made by liveRules() (it needs functions ${fn}-rules and ${fn}-keys beside it)`);
  let stream: string | undefined;
  let subject: unknown;
  if (view.spec !== null) {
    const fns = view.spec.functions;
    const source = fns.find((f) => f.name === `${fn}-rules`);
    if (!fns.some((f) => f.name === fn)) throw new NotLiveRulesError(`job ${job} has no function ${fn}`);
    if (source === undefined || !source.isSource || !fns.some((f) => f.name === `${fn}-keys`)) throw notRules();
    stream = source.stream;
    subject = source.subjects?.[0];
  } else {
    const { deployedFunction } = await import("../deploy/bootstrap.ts");
    // A job never deployed says so; a deployed one without `<fn>-rules` is no liveRules job.
    const matcher = await deployedFunction(nc, job, fn);
    const source = matcher === undefined ? undefined : await deployedFunction(nc, job, `${fn}-rules`).catch(() => undefined);
    const input = source?.input;
    if (input === undefined || Array.isArray(input) || (input as { kind: string }).kind !== "stream") throw notRules();
    stream = (input as { stream: string }).stream;
    subject = (input as { subject?: unknown }).subject;
  }
  if (stream === undefined || typeof subject !== "string" || !subject.endsWith(".>")) throw notRules();
  return { stream, prefix: subject.slice(0, -2) };
}

async function published(nc: NatsConnection, rs: RuleStream, id?: string): Promise<PublishedRule[]> {
  return publishedRules(await readAll(nc, rs.stream, id === undefined ? `${rs.prefix}.>` : `${rs.prefix}.${id}`), rs.prefix);
}

/**
 * The matcher's active rules (broadcast state `rules`) as last committed. Not partition 0's live
 * state: a change applied at a barrier whose checkpoint has not committed is undone by a
 * recovery, and its replay may feed events published after it to the version before (note bu),
 * so a rule counts as active only once a committed checkpoint holds it.
 */
async function activeRules(nc: NatsConnection, job: string, fn: string): Promise<Rule[]> {
  const client = await stateClient(nc, job, fn, { timeoutMs: 3_000 });
  const out: Rule[] = [];
  for await (const e of client.scan({ state: "rules", broadcast: true, consistency: "committed" })) out.push(e.value as Rule);
  return out;
}

/** The rule in a file: a rule object, or a `{ "op": "put", "rule": … }` change. */
export function ruleOfFile(text: string, file: string): Rule {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (e) {
    throw new InvalidRuleError(`${file}: not JSON: ${(e as Error).message.split("\n")[0]}`);
  }
  const change = typeof raw === "object" && raw !== null && "op" in raw ? raw : { op: "put", rule: raw };
  const checked = checkRuleChange(change);
  if (checked.op !== "put") throw new InvalidRuleError(`${file}: eddy rules put takes a rule (use eddy rules rm to remove one)`);
  return checked.rule;
}

export async function runRulesPut(o: Target & { file: string }): Promise<number> {
  let text: string;
  try {
    text = await readFile(o.file, "utf8");
  } catch (e) {
    throw new InputError(`cannot read ${o.file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  const rule = ruleOfFile(text, o.file);
  return withNats(o.natsUrl, async (nc) => {
    const rs = await findRuleStream(nc, o.job, o.fn);
    const before = (await published(nc, rs, rule.id))[0];
    if (before !== undefined && rule.version <= before.highestVersion) {
      throw new InvalidRuleError(`rule ${rule.id}: version ${rule.version} is not above the published ${before.highestVersion} (a put must raise the version)`);
    }
    await publishAll(nc, [{ subject: `${rs.prefix}.${rule.id}`, data: JSON.stringify({ op: "put", rule }) }]);
    console.log(o.json ? JSON.stringify({ published: rule, subject: `${rs.prefix}.${rule.id}` }) : `${o.job}/${o.fn}: rule ${rule.id} version ${rule.version} published to ${rs.prefix}.${rule.id} (active from the next checkpoint)`);
    return 0;
  });
}

export async function runRulesRm(o: Target & { id: string }): Promise<number> {
  if (!RULE_ID.test(o.id)) throw new InvalidRuleError(`rule id must match ${RULE_ID.source}`);
  return withNats(o.natsUrl, async (nc) => {
    const rs = await findRuleStream(nc, o.job, o.fn);
    const before = (await published(nc, rs, o.id))[0];
    if (before?.rule == null) throw new InvalidRuleError(`no rule ${o.id} is published on ${rs.stream} (eddy rules ls ${o.job} ${o.fn} lists them)`);
    await publishAll(nc, [{ subject: `${rs.prefix}.${o.id}`, data: JSON.stringify({ op: "remove", id: o.id }) }]);
    console.log(o.json ? JSON.stringify({ removed: o.id, subject: `${rs.prefix}.${o.id}` }) : `${o.job}/${o.fn}: rule ${o.id} removed (its state goes from the next checkpoint)`);
    return 0;
  });
}

export async function runRulesLs(o: Target): Promise<number> {
  return withNats(o.natsUrl, async (nc) => {
    const rs = await findRuleStream(nc, o.job, o.fn);
    const pub = await published(nc, rs);
    const active = await activeRules(nc, o.job, o.fn);
    if (o.json) {
      console.log(JSON.stringify({ stream: rs.stream, prefix: rs.prefix, published: pub.flatMap((p) => (p.rule === null ? [] : [p.rule])), removed: pub.filter((p) => p.rule === null).map((p) => p.id), active }));
      return 0;
    }
    const ids = [...new Set([...pub.map((p) => p.id), ...active.map((r) => r.id)])].sort();
    if (ids.length === 0) {
      console.log(`no rules (publish one with eddy rules put ${o.job} ${o.fn} <file.json>)`);
      return 0;
    }
    const rows = ids.map((id) => {
      const p = pub.find((x) => x.id === id);
      const a = active.find((r) => r.id === id);
      const from = (r: Rule | undefined) => (r?.activeFrom === undefined ? "-" : new Date(r.activeFrom).toISOString());
      return [id, p === undefined ? "-" : p.rule === null ? "removed" : `v${p.rule.version}`, a === undefined ? "-" : `v${a.version}`, from(a ?? p?.rule ?? undefined), (a ?? p?.rule)?.key.join(",") ?? "-"];
    });
    const head = ["rule", "published", "active", "active from (UTC)", "key"];
    const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
    for (const r of [head, ...rows]) console.log(r.map((c, i) => c.padEnd(widths[i]!)).join("  ").trimEnd());
    return 0;
  });
}

export async function runRulesGet(o: Target & { id: string }): Promise<number> {
  if (!RULE_ID.test(o.id)) throw new InvalidRuleError(`rule id must match ${RULE_ID.source}`);
  return withNats(o.natsUrl, async (nc) => {
    const rs = await findRuleStream(nc, o.job, o.fn);
    const p = (await published(nc, rs, o.id))[0];
    const active = (await activeRules(nc, o.job, o.fn)).find((r) => r.id === o.id) ?? null;
    if (p === undefined && active === null) {
      process.stderr.write(`eddy: ${o.job}/${o.fn}: no rule ${o.id}\n`);
      return 1;
    }
    const result = { published: p?.rule ?? null, removed: p !== undefined && p.rule === null, active };
    console.log(o.json ? JSON.stringify(result) : JSON.stringify(result, null, 2));
    return 0;
  });
}

/** The functions of a job's spec that liveRules() made: those with `<fn>-rules` (a source) and `<fn>-keys` beside them. */
export function liveRulesFunctions(functions: ReadonlyArray<{ readonly name: string; readonly isSource?: boolean }>): string[] {
  const names = new Set(functions.map((f) => f.name));
  return functions.filter((f) => names.has(`${f.name}-keys`) && functions.some((g) => g.name === `${f.name}-rules` && g.isSource === true)).map((f) => f.name);
}

/** The active rule set of a liveRules matcher, short, for `eddy status`: `id@version` sorted (as last committed). */
export async function activeRuleSummary(nc: NatsConnection, job: string, fn: string): Promise<string[]> {
  const rules = await activeRules(nc, job, fn);
  return rules.map((r) => `${r.id}@${r.version}`).sort();
}
