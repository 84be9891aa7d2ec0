/**
 * `eddy state bootstrap`: runs a bootstrap module (sdk/bootstrap.ts) over old items and sends
 * what it writes to the function as state writes through its input log.
 *
 * The module runs here, in the tool, against an in-memory store with the target function's
 * declarations — the deployed code's, loaded from the code store — through the same `Operator`
 * the runtime runs the function with. What it leaves in the store and timer queue becomes
 * `put` and `timer` operations, grouped by partition and sent in batches with `stateClient.write`.
 * With the job stopped they wait in the log and are applied when it runs, before any data that
 * follows them; with the job running they are applied in order with the data.
 */
import { createReadStream } from "node:fs";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { pathToFileURL } from "node:url";
import { Operator } from "../core/operator.ts";
import { parseKvKey } from "../core/kv-keys.ts";
import type { StateWriteOp } from "../core/state-writes.ts";
import { unwrapStored } from "../core/state-ttl.ts";
import { decodeValue } from "../core/wire.ts";
import { CorruptSavepointError } from "../core/savepoint.ts";
import type { FunctionSpec } from "../sdk/function.ts";
import type { BootstrapSpec, SavepointEntry } from "../sdk/index.ts";
import { windowWriter } from "../sdk/internal.ts";
import type { NatsConnection } from "../nats/connection.ts";
import { currentDeployment, getCode, lastVersion, openDeployments } from "../nats/deployments.ts";
import { readSavepoint } from "../nats/savepoints.ts";
import { readAll } from "../nats/streams.ts";
import { stateClient } from "../nats/state-client.ts";
import { bundleModule, InvalidModuleError, loadPipelines, withDefaultPartitions } from "./bundle.ts";
import { InputError } from "../errors.ts";

/** The bootstrap itself failed on an item (the module threw); nothing was sent. Fix the module. */
export class BootstrapFailedError extends InputError {
  override readonly name = "BootstrapFailedError";
}

/** Where old items come from: `savepoint:<id>`, `file:<path.ndjson>` or `stream:<name>`. */
export type BootstrapSource = { readonly kind: "savepoint"; readonly id: string; readonly fn?: string } | { readonly kind: "file"; readonly path: string } | { readonly kind: "stream"; readonly name: string };

/** Parses `--from`; throws a one-line error for anything else. */
export function parseSource(text: string): BootstrapSource {
  const i = text.indexOf(":");
  const kind = i < 0 ? "" : text.slice(0, i);
  const rest = text.slice(i + 1);
  if (rest !== "") {
    if (kind === "savepoint") return { kind, id: rest };
    if (kind === "file") return { kind, path: rest };
    if (kind === "stream") return { kind, name: rest };
  }
  throw new InvalidModuleError(`--from ${JSON.stringify(text)}: use savepoint:<id>, file:<path.ndjson> or stream:<name>`);
}

/**
 * Runs `spec` over `items` against an empty in-memory state of `target` and returns the writes it
 * made, in a deterministic order (puts, then timers). Pure: no NATS.
 */
export function bootstrapWrites(spec: BootstrapSpec, target: FunctionSpec, items: Iterable<unknown>): StateWriteOp[] {
  const operator = new Operator(target, { emit: () => {}, side: () => {} });
  const keyOf = spec.key ?? ((item: unknown) => (item as { key?: unknown })?.key);
  let n = 0;
  for (const item of items) {
    n++;
    const key = keyOf(item);
    if (typeof key !== "string") throw new BootstrapFailedError(`item ${n}: its key is ${key === undefined ? "missing" : typeof key}, not a string (give the bootstrap a key(item) function)`);
    try {
      operator.withKey(key, (ctx) => {
        const windows = windowWriter(target.windowing, target.name, () => ctx.state as never, ctx.timers);
        spec.bootstrap({ key, state: ctx.state as never, timers: ctx.timers, windows }, item);
      });
    } catch (e) {
      throw new BootstrapFailedError(`item ${n} (key ${JSON.stringify(key)}): ${(e as Error).message}`, { cause: e });
    }
  }
  const ops: StateWriteOp[] = [];
  for (const c of operator.store.takeDelta()) {
    if (c.value === undefined) continue; // written and removed again: nothing to send
    // The plain value: the actor applying the write stamps its TTL, if the state has one.
    ops.push({ op: "put", state: c.state, key: c.key, ...(c.subkey === undefined ? {} : { subkey: c.subkey }), value: unwrapStored(c.value).value });
  }
  for (const t of operator.timers.takeChanges().added) ops.push({ op: "timer", key: t.key, name: t.name, ts: t.ts, domain: t.domain });
  return ops;
}

/** Imports a bootstrap module (bundled with esbuild, like deployed code) and returns its spec. */
export async function loadBootstrapModule(path: string): Promise<BootstrapSpec> {
  const { code } = await bundleModule(path);
  const dir = await mkdtemp(join(tmpdir(), "eddy-bootstrap-"));
  try {
    const file = join(dir, "bootstrap.mjs");
    await writeFile(file, code);
    let mod: Record<string, unknown>;
    try {
      mod = await import(pathToFileURL(file).href);
    } catch (e) {
      throw new InvalidModuleError(`${path} fails to load: ${(e as Error).message}`, { cause: e });
    }
    const spec = (mod.default ?? mod.bootstrap) as BootstrapSpec | undefined;
    if (typeof spec?.bootstrap !== "function") throw new InvalidModuleError(`${path} does not export a bootstrap (export default defineBootstrap({ bootstrap(ctx, item) { ... } }))`);
    return spec;
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** The function as the job's deployed code (current version, else the last one) defines it. */
export async function deployedFunction(nc: NatsConnection, job: string, fn: string): Promise<FunctionSpec> {
  const store = await openDeployments(nc);
  const record = (await currentDeployment(store, job))?.record ?? (await lastVersion(store, job));
  if (record === undefined) throw new InvalidModuleError(`job "${job}" was never deployed with eddy deploy: deploy the new version first, then bootstrap its state`);
  const loaded = await loadPipelines(await getCode(store, record.digest), `job ${job} version ${record.version}`);
  const found = loaded.find((l) => l.pipeline.name === record.pipeline);
  const spec = found === undefined ? undefined : withDefaultPartitions(found.pipeline, record.partitions).functions.find((f) => f.name === fn);
  if (spec === undefined) throw new InvalidModuleError(`job "${job}" version ${record.version} has no function "${fn}"`);
  return spec;
}

/** Reads the old items of a source. */
export async function readItems(nc: NatsConnection, job: string, fn: string, source: BootstrapSource): Promise<unknown[]> {
  switch (source.kind) {
    case "savepoint": {
      const from = source.fn ?? fn;
      const { manifest, exports } = await readSavepoint(nc, job, source.id, new Set([from]));
      if (!manifest.functions.some((x) => x.name === from)) throw new InvalidModuleError(`savepoint ${source.id} has no function "${from}" (it has ${manifest.functions.map((x) => x.name).join(", ")})`);
      const items: SavepointEntry[] = [];
      for (const exp of exports.get(from) ?? []) {
        for (const [key, value] of exp.entries) {
          const parsed = parseKvKey(key);
          if (parsed?.kind !== "state") continue;
          let decoded: unknown;
          try {
            decoded = decodeValue(value);
          } catch (e) {
            throw new CorruptSavepointError(`savepoint ${source.id}: the value of ${key} in ${from}/${exp.partition} does not decode (${(e as Error).message})`);
          }
          items.push({ fn: from, state: parsed.state, key: parsed.key, ...(parsed.subkey === undefined ? {} : { subkey: parsed.subkey }), value: unwrapStored(decoded).value });
        }
      }
      return items;
    }
    case "file": {
      const items: unknown[] = [];
      let line = 0;
      for await (const text of createInterface({ input: createReadStream(source.path), crlfDelay: Infinity })) {
        line++;
        if (text.trim() === "") continue;
        try {
          items.push(JSON.parse(text));
        } catch {
          throw new InvalidModuleError(`${source.path}:${line}: not JSON`);
        }
      }
      return items;
    }
    case "stream": {
      const decoder = new TextDecoder();
      return (await readAll(nc, source.name)).map((m, i) => {
        try {
          return JSON.parse(decoder.decode(m.data)) as unknown;
        } catch {
          throw new InvalidModuleError(`stream ${source.name}: message ${i + 1} is not JSON`);
        }
      });
    }
  }
}

export interface BootstrapResult {
  readonly items: number;
  readonly operations: number;
  readonly keys: number;
  readonly timers: number;
  readonly applied: boolean;
}

/**
 * Whole `eddy state bootstrap`: load, run, send. Waits until the writes are applied when the job
 * is deployed (running); with the job stopped they wait in the log for its start.
 */
export async function bootstrapState(nc: NatsConnection, o: { job: string; fn: string; source: BootstrapSource; module: string; batch?: number }): Promise<BootstrapResult> {
  const spec = await loadBootstrapModule(o.module);
  const wait = (await currentDeployment(await openDeployments(nc), o.job)) !== undefined;
  const target = await deployedFunction(nc, o.job, o.fn);
  const items = await readItems(nc, o.job, o.fn, o.source);
  const ops = bootstrapWrites(spec, target, items);
  const client = await stateClient(nc, o.job, o.fn, { timeoutMs: 60_000 });
  const batch = o.batch ?? 500;
  // One key's operations stay in one write record where possible; order is kept either way.
  for (let i = 0; i < ops.length; i += batch) await client.write(ops.slice(i, i + batch), { wait });
  return {
    items: items.length,
    operations: ops.length,
    keys: new Set(ops.map((x) => x.key)).size,
    timers: ops.filter((x) => x.op === "timer").length,
    applied: wait,
  };
}
