/**
 * Proves that eddy's partition hash equals nats-server's `{{partition(P,i)}}` subject mapping, so
 * external publishers can let the server partition their messages (architecture §2). Runs a real
 * server with mappings and compares the partition token it chose with `partitionOf` for every key.
 */
import type { NatsConnection } from "@nats-io/transport-node";
import { describe, expect, it } from "vitest";
import { partitionOf } from "../../runtime/core/hash.ts";
import { connect, natsServer } from "../support/nats-server.ts";

// nats-server 2.9 syntax: a top-level `mappings` block; partition tokens are 1-based wildcard indexes.
const CONFIG = `
mappings = {
  "pv.*": "pvp.{{partition(8,1)}}.{{wildcard(1)}}"
  "pw.*": "pwp.{{partition(32,1)}}.{{wildcard(1)}}"
  "pm.*.*": "pmp.{{partition(16,1,2)}}.{{wildcard(1)}}.{{wildcard(2)}}"
}
`;

/** Deterministic pseudo-random keys (mulberry32) so a failure is reproducible. */
function makeKeys(count: number): string[] {
  let seed = 0x5eed;
  const rand = () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = seed;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_";
  const keys = new Set<string>([
    "a", "0", "-", "_", "user-1", "user_2", "ORDER-0001",
    "ü-straße", "日本", "Ωmega", "ça-va", "naïve_café", "😀", "emoji-🚀-key", "Москва", "한국어", "שלום",
  ]);
  while (keys.size < count) {
    const len = 1 + Math.floor(rand() * 24);
    let k = "";
    for (let i = 0; i < len; i++) k += alphabet[Math.floor(rand() * alphabet.length)];
    keys.add(k);
  }
  return [...keys];
}

/** Publishes one message per subject and returns the mapped subjects, in arrival order per input. */
async function roundTrip(
  nc: NatsConnection,
  outPrefix: string,
  subjects: string[],
): Promise<Map<string, string>> {
  // The original subject travels in the payload so each mapped subject can be matched to its input.
  const mapped = new Map<string, string>();
  const sub = nc.subscribe(`${outPrefix}.>`);
  const done = (async () => {
    for await (const m of sub) {
      mapped.set(m.string(), m.subject);
      if (mapped.size === subjects.length) break;
    }
  })();
  await nc.flush();
  for (const s of subjects) nc.publish(s, s);
  await nc.flush();
  const timeout = new Promise<never>((_, reject) =>
    setTimeout(() => reject(new Error(`only ${mapped.size}/${subjects.length} mapped messages arrived`)), 10_000).unref(),
  );
  await Promise.race([done, timeout]);
  sub.unsubscribe();
  return mapped;
}

describe("partitionOf matches nats-server {{partition(P,i)}} mappings", () => {
  const keys = makeKeys(400);

  it.each([
    { p: 8, inPrefix: "pv", outPrefix: "pvp" },
    { p: 32, inPrefix: "pw", outPrefix: "pwp" },
  ])("P=$p over 400 keys, including non-ASCII UTF-8", async ({ p, inPrefix, outPrefix }) => {
    await using server = await natsServer({ configText: CONFIG });
    await using nc = await connect(server);
    const mapped = await roundTrip(nc, outPrefix, keys.map((k) => `${inPrefix}.${k}`));
    const seen = new Set<number>();
    for (const key of keys) {
      const subject = mapped.get(`${inPrefix}.${key}`);
      expect(subject, key).toBeDefined();
      const [prefix, token, ...rest] = subject!.split(".");
      expect(prefix).toBe(outPrefix);
      expect(rest.join("."), key).toBe(key);
      expect({ key, partition: Number(token) }).toEqual({ key, partition: partitionOf(key, p) });
      seen.add(Number(token));
    }
    // Sanity: the keys really spread over every partition, so the comparison is not vacuous.
    expect(seen.size).toBe(p);
  });

  it("hashes several tokens as their concatenation", async () => {
    await using server = await natsServer({ configText: CONFIG });
    await using nc = await connect(server);
    const pairs = keys.slice(0, 100).map((k, i) => [k, keys[(i * 7 + 3) % keys.length]] as const);
    const mapped = await roundTrip(nc, "pmp", pairs.map(([a, b]) => `pm.${a}.${b}`));
    for (const [a, b] of pairs) {
      const subject = mapped.get(`pm.${a}.${b}`);
      expect(subject, `${a}.${b}`).toBeDefined();
      expect(Number(subject!.split(".")[1]), `${a}.${b}`).toBe(partitionOf(a + b, 16));
    }
  });
});
