/**
 * A KV bucket used the plain way, JSON values read and written one awaited call at a time: what a
 * straightforward service without eddy does, and so what the benchmark's naive baseline measures
 * eddy against (functions/nexmark/harness.ts). Nothing in eddy's runtime keeps state like this.
 */
import { Kvm, type KV } from "@nats-io/kv";
import type { NatsConnection } from "@nats-io/transport-node";
import { replicasOf } from "./replicas.ts";
import { createRacing } from "./racing-creation.ts";

/** JSON values by key. */
export interface JsonBucket {
  /** The value of `key`; `undefined` if it has none. */
  get(key: string): Promise<unknown>;
  put(key: string, value: unknown): Promise<void>;
  /** Every key with a value, and the value. */
  entries(): Promise<Array<[string, unknown]>>;
}

const decoder = new TextDecoder();

/** Creates (or opens) bucket `name`, keeping only each key's latest value. */
export async function openJsonBucket(nc: NatsConnection, name: string): Promise<JsonBucket> {
  const kv: KV = await createRacing(() => new Kvm(nc).create(name, { history: 1, replicas: replicasOf(nc) }));
  const get = async (key: string): Promise<unknown> => {
    const entry = await kv.get(key);
    return entry === null || entry.length === 0 ? undefined : JSON.parse(decoder.decode(entry.value));
  };
  return {
    get,
    put: async (key, value) => {
      await kv.put(key, JSON.stringify(value));
    },
    entries: async () => {
      const keys: string[] = [];
      for await (const k of await kv.keys()) keys.push(k);
      const out: Array<[string, unknown]> = [];
      for (const k of keys) {
        const value = await get(k);
        if (value !== undefined) out.push([k, value]);
      }
      return out;
    },
  };
}
