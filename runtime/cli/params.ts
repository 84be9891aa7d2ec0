/**
 * `eddy params set|ls <job> <fn>`: live job parameters (issue 16, design note ca) of a function
 * whose `parameters` input is a `windowParameters()` source `<fn>-params` (or of that source
 * itself). The source's stream and subject filter `<prefix>.>` are found in the job's spec, as
 * `eddy rules` finds a rule stream; a value is checked here with the job's own check
 * (`checkParameterChange`) before it is published to `<prefix>.<name>`. The job applies it at the
 * next checkpoint barrier in every partition, and keeps it across recovery: the broadcast state
 * holds it from that checkpoint on, and the stream keeps it for any replay before.
 */
import { withNats, type NatsConnection } from "../nats/connection.ts";
import { readJobView } from "../nats/job-views.ts";
import { stateClient } from "../nats/state-client.ts";
import { publishAll, readAll } from "../nats/streams.ts";
import { checkParameterChange, currentParameters, parameterSubject, parseParameterValue, PARAMETERS_STATE, type ParameterChange } from "../core/parameters.ts";
import type { ParameterValue } from "../core/triggers.ts";
import { InputError } from "../errors.ts";

/** The function has no parameters source, or its stream cannot be found. */
export class NoParametersError extends InputError {
  override readonly name = "NoParametersError";
}

interface Target {
  readonly job: string;
  readonly fn: string;
  readonly natsUrl: string | undefined;
  readonly json: boolean;
}

/** Where a function's parameters are published, and the function that holds them (undefined: `fn` is the source). */
interface ParameterStream {
  readonly stream: string;
  readonly prefix: string;
  readonly reader: string | undefined;
}

/** The parameters stream of `fn` (a function with a `<fn>-params` source beside it, or that source), from the job's spec. */
async function findParameterStream(nc: NatsConnection, job: string, fn: string): Promise<ParameterStream> {
  const view = await readJobView(nc, job);
  const none = () => new NoParametersError(`${job}/${fn} has no live parameters (it needs a windowParameters() source ${fn}-params beside it)`);
  let stream: string | undefined;
  let subject: unknown;
  let reader: string | undefined;
  if (view.spec !== null) {
    const fns = view.spec.functions;
    if (!fns.some((f) => f.name === fn)) throw new NoParametersError(`job ${job} has no function ${fn}`);
    const own = fns.find((f) => f.name === fn && fn.endsWith("-params") && f.isSource);
    const source = own ?? fns.find((f) => f.name === `${fn}-params` && f.isSource);
    if (source === undefined) throw none();
    reader = own === undefined ? fn : undefined;
    stream = source.stream;
    subject = source.subjects?.[0];
  } else {
    const { deployedFunction } = await import("../deploy/bootstrap.ts");
    const named = await deployedFunction(nc, job, fn);
    if (named === undefined) throw new NoParametersError(`job ${job} has no function ${fn}`);
    const own = fn.endsWith("-params") ? named : undefined;
    const source = own ?? (await deployedFunction(nc, job, `${fn}-params`).catch(() => undefined));
    const input = source?.input;
    if (input === undefined || Array.isArray(input) || (input as { kind: string }).kind !== "stream") throw none();
    reader = own === undefined ? fn : undefined;
    stream = (input as { stream: string }).stream;
    subject = (input as { subject?: unknown }).subject;
  }
  if (stream === undefined || typeof subject !== "string" || !subject.endsWith(".>")) throw none();
  return { stream, prefix: subject.slice(0, -2), reader };
}

/** The changes published on the parameters stream, in order (bad messages, which the job dead-letters, left out). */
async function published(nc: NatsConnection, ps: ParameterStream): Promise<ParameterChange[]> {
  const out: ParameterChange[] = [];
  for (const m of await readAll(nc, ps.stream, `${ps.prefix}.>`)) {
    try {
      out.push(checkParameterChange(JSON.parse(new TextDecoder().decode(m.data))));
    } catch {
      // the job refuses it too
    }
  }
  return out;
}

/** The functions of a job that read live parameters: those with a `<fn>-params` source beside them. */
export function parameterReaders(functions: ReadonlyArray<{ readonly name: string; readonly isSource?: boolean }>): string[] {
  const sources = new Set(functions.filter((f) => f.isSource === true && f.name.endsWith("-params")).map((f) => f.name));
  return functions.filter((f) => sources.has(`${f.name}-params`)).map((f) => f.name);
}

/** The parameters in force in the reading function (broadcast state `parameters`) as last committed. */
export async function activeParameters(nc: NatsConnection, job: string, fn: string): Promise<Record<string, ParameterValue>> {
  const client = await stateClient(nc, job, fn, { timeoutMs: 3_000 });
  const out: Record<string, ParameterValue> = {};
  for await (const e of client.scan({ state: PARAMETERS_STATE, broadcast: true, consistency: "committed" })) out[e.key] = e.value as ParameterValue;
  return out;
}

export async function runParamsSet(o: Target & { name: string; value: string }): Promise<number> {
  const change = checkParameterChange({ name: o.name, value: parseParameterValue(o.value) });
  return withNats(o.natsUrl, async (nc) => {
    const ps = await findParameterStream(nc, o.job, o.fn);
    const subject = parameterSubject(ps.prefix, change.name);
    await publishAll(nc, [{ subject, data: JSON.stringify(change) }]);
    const what = change.value === null ? `${change.name} removed` : `${change.name} = ${JSON.stringify(change.value)}`;
    console.log(o.json ? JSON.stringify({ published: change, subject }) : `${o.job}/${o.fn}: ${what}, published to ${subject} (in force from the next checkpoint)`);
    return 0;
  });
}

export async function runParamsLs(o: Target): Promise<number> {
  return withNats(o.natsUrl, async (nc) => {
    const ps = await findParameterStream(nc, o.job, o.fn);
    const pub = currentParameters(await published(nc, ps));
    const inForce = ps.reader === undefined ? undefined : await activeParameters(nc, o.job, ps.reader).catch(() => undefined);
    if (o.json) {
      console.log(JSON.stringify({ stream: ps.stream, prefix: ps.prefix, published: pub, ...(inForce === undefined ? {} : { active: inForce }) }));
      return 0;
    }
    const names = [...new Set([...Object.keys(pub), ...Object.keys(inForce ?? {})])].sort();
    if (names.length === 0) {
      console.log(`no parameters (set one with eddy params set ${o.job} ${o.fn} <name> <value>)`);
      return 0;
    }
    const show = (v: ParameterValue | undefined) => (v === undefined ? "-" : JSON.stringify(v));
    const rows = names.map((n) => [n, show(pub[n]), inForce === undefined ? "?" : show(inForce[n])]);
    const head = ["parameter", "published", "active"];
    const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
    for (const r of [head, ...rows]) console.log(r.map((c, i) => c.padEnd(widths[i]!)).join("  ").trimEnd());
    return 0;
  });
}
