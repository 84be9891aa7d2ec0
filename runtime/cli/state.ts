/**
 * `eddy state get|scan|put|delete`: the state service from the command line, through the same
 * `stateClient` applications use. Values are JSON on the command line and in the output.
 */
import { withNats } from "../nats/connection.ts";
import { stateClient, type WriteReceipt } from "../nats/state-client.ts";
import { InputError } from "../errors.ts";


/** A command-line value that is not JSON; quote strings as JSON ('"text"'). */
export class InvalidValueError extends InputError {
  override readonly name = "InvalidValueError";
}

interface Target {
  readonly job: string;
  readonly fn: string;
  readonly natsUrl: string | undefined;
  readonly timeoutMs?: number;
}

async function withClient<T>(t: Target, f: (client: Awaited<ReturnType<typeof stateClient>>) => Promise<T>): Promise<T> {
  return withNats(t.natsUrl, async (nc) => {
    // A write queued while the job is not running is checked against the deployed code, loaded
    // only then (the running job's service checks the others).
    const deployed = async () => {
      const { deployedFunction } = await import("../deploy/bootstrap.ts");
      return deployedFunction(nc, t.job, t.fn).catch(() => undefined);
    };
    return f(await stateClient(nc, t.job, t.fn, { deployed, ...(t.timeoutMs === undefined ? {} : { timeoutMs: t.timeoutMs }) }));
  });
}

/** Parses a value given on the command line as JSON. */
export function parseValue(text: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch {
    throw new InvalidValueError(`value ${JSON.stringify(text)} is not JSON (quote a string: '"${text}"')`);
  }
}

export async function runStateGet(o: Target & { state: string; key: string; subkey: string | undefined; committed: boolean; broadcast?: boolean; json: boolean }): Promise<number> {
  const value = await withClient(o, (c) => c.get(o.state, o.key, { consistency: o.committed ? "committed" : "live", ...(o.subkey === undefined ? {} : { subkey: o.subkey }), ...(o.broadcast === true ? { broadcast: true } : {}) }));
  if (o.json) {
    console.log(JSON.stringify(value === undefined ? { found: false } : { found: true, value }));
    return 0;
  }
  if (value === undefined) {
    const what = o.broadcast === true ? `no entry ${JSON.stringify(o.key)} in broadcast state ${o.state}` : `no ${o.state} for key ${JSON.stringify(o.key)}${o.subkey === undefined ? "" : ` entry ${JSON.stringify(o.subkey)}`}`;
    process.stderr.write(`eddy: ${o.job}/${o.fn}: ${what}\n`);
    return 1;
  }
  console.log(JSON.stringify(value, null, 2));
  return 0;
}

export async function runStateScan(o: Target & { state: string | undefined; prefix: string | undefined; committed: boolean; broadcast?: boolean; limit: number; json: boolean }): Promise<number> {
  const rows: Array<{ state: string; key: string; value: unknown }> = [];
  await withClient(o, async (c) => {
    for await (const e of c.scan({ ...(o.state === undefined ? {} : { state: o.state }), ...(o.prefix === undefined ? {} : { prefix: o.prefix }), consistency: o.committed ? "committed" : "live", ...(o.broadcast === true ? { broadcast: true } : {}) })) {
      rows.push(e);
      if (rows.length >= o.limit) break;
    }
  });
  if (o.json) {
    for (const r of rows) console.log(JSON.stringify(r));
    return 0;
  }
  if (rows.length === 0) {
    console.log("no entries");
    return 0;
  }
  const table = rows.map((r) => [r.state, r.key, JSON.stringify(r.value)]);
  const head = ["state", "key", "value"];
  const widths = head.map((h, i) => Math.min(60, Math.max(h.length, ...table.map((r) => r[i]!.length))));
  for (const r of [head, ...table]) console.log(r.map((c, i) => (i === 2 ? c : c.padEnd(widths[i]!))).join("  ").trimEnd());
  if (rows.length >= o.limit) console.log(`(first ${o.limit}; raise --limit for more)`);
  return 0;
}

/**
 * How a write ended, for people: `(applied)`, or `(queued: …)` when it waits in the input log for
 * the partition to run — both mean it is durable and will be applied exactly once, in order.
 */
function outcome(r: WriteReceipt): string {
  return r.applied ? "(applied)" : `(queued in the input log of partition ${r.partition}: ${r.queued ?? "not applied yet"}; applied in order when it runs)`;
}

export async function runStatePut(o: Target & { state: string; key: string; value: string; subkey: string | undefined; json: boolean }): Promise<number> {
  const value = parseValue(o.value);
  const r = await withClient(o, (c) => c.put(o.state, o.key, value, o.subkey === undefined ? {} : { subkey: o.subkey }));
  console.log(o.json ? JSON.stringify(r) : `${o.job}/${o.fn}: ${o.state}[${JSON.stringify(o.key)}]${o.subkey === undefined ? "" : `[${JSON.stringify(o.subkey)}]`} = ${JSON.stringify(value)} ${outcome(r)}`);
  return 0;
}

export async function runStateDelete(o: Target & { state: string; key: string; subkey: string | undefined; json: boolean }): Promise<number> {
  const r = await withClient(o, (c) => c.delete(o.state, o.key, o.subkey === undefined ? {} : { subkey: o.subkey }));
  console.log(o.json ? JSON.stringify(r) : `${o.job}/${o.fn}: ${o.state}[${JSON.stringify(o.key)}]${o.subkey === undefined ? "" : `[${JSON.stringify(o.subkey)}]`} deleted ${outcome(r)}`);
  return 0;
}

export async function runStateBootstrap(o: { job: string; fn: string; from: string; module: string; natsUrl: string | undefined; json: boolean }): Promise<number> {
  const { bootstrapState, parseSource } = await import("../deploy/bootstrap.ts");
  const source = parseSource(o.from);
  process.stderr.write(`eddy state bootstrap: running ${o.module} over ${o.from} ...\n`);
  const r = await withNats(o.natsUrl, (nc) => bootstrapState(nc, { job: o.job, fn: o.fn, source, module: o.module }));
  if (o.json) console.log(JSON.stringify(r));
  else console.log(`${o.job}/${o.fn}: ${r.items} items → ${r.operations} writes for ${r.keys} keys (${r.timers} timers), ${r.applied ? "applied" : "queued in the input log; applied when the job runs"}`);
  return 0;
}
