/**
 * Processes that start together create the same streams, KV buckets and object stores at the same
 * moment (runtime/nats/racing-creation.ts): nats-server 2.9 refuses one of two such creations now
 * and then with "subjects overlap with an existing stream" instead of returning the stream, and a
 * worker died of it at its start in a chaos run. Every creation of a pair succeeds now; a stream
 * that really overlaps another is still refused.
 */
import { describe, expect, it } from "vitest";
import { jetstreamManager } from "@nats-io/jetstream";
import { ensureStream } from "../../runtime/nats/streams.ts";
import { ensureDeadLetterStream, ensureJobStores, ensureUpsertBuckets } from "../../runtime/nats/topology.ts";
import { createRacing, lostCreationRace } from "../../runtime/nats/racing-creation.ts";
import { connect, natsServer } from "../support/nats-server.ts";

/** Runs `create(i)` from two connections at once for `pairs` names; the refusals, if any. */
async function racePairs(pairs: number, create: (nc: Awaited<ReturnType<typeof connect>>, i: number) => Promise<unknown>, a: Awaited<ReturnType<typeof connect>>, b: Awaited<ReturnType<typeof connect>>): Promise<string[]> {
  const refused: string[] = [];
  for (let i = 0; i < pairs; i++) {
    for (const r of await Promise.allSettled([create(a, i), create(b, i)])) if (r.status === "rejected") refused.push(String(r.reason));
  }
  return refused;
}

describe("creating what another process creates at the same moment", () => {
  it("succeeds for both creators of a stream, a dead-letter stream, a KV bucket and an object store", async () => {
    await using server = await natsServer();
    await using a = await connect(server);
    await using b = await connect(server);
    // Without the repeat, 2 of 200 pairs of each kind failed on this machine.
    expect(await racePairs(300, (nc, i) => ensureStream(nc, `RACE_${i}`, [`race.${i}.*`]), a, b)).toEqual([]);
    expect(await racePairs(150, (nc, i) => ensureDeadLetterStream(nc, `racejob${i}`, { maxAgeMs: 60_000, maxBytes: 0 }), a, b)).toEqual([]);
    expect(await racePairs(300, (nc, i) => ensureUpsertBuckets(nc, [`race_kv_${i}`]), a, b)).toEqual([]);
    expect(await racePairs(150, (nc, i) => ensureJobStores(nc, `raceobj${i}`), a, b)).toEqual([]);
    const jsm = await jetstreamManager(a);
    expect((await jsm.streams.info("RACE_299")).config.subjects).toEqual(["race.299.*"]);
  }, 120_000);

  it("still refuses a stream whose subjects another stream captures", async () => {
    await using server = await natsServer();
    await using nc = await connect(server);
    await ensureStream(nc, "FIRST", ["shared.*"]);
    const jsm = await jetstreamManager(nc);
    const refusal = await createRacing(() => jsm.streams.add({ name: "SECOND", subjects: ["shared.*"] })).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(lostCreationRace(refusal)).toBe(true);
    await expect(ensureStream(nc, "SECOND", ["shared.*"])).rejects.toThrow(/subjects overlap/);
  });
});
