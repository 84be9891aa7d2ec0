/**
 * Checkpoint objects written in one burst (runtime/nats/object-writes.ts) are object-store
 * objects like any other: nats.js finds, reads (checking size and digest), lists and deletes
 * them, whatever their size and name, and an attempt repeated after a lost acknowledgement
 * leaves no chunks behind.
 */
import { describe, expect, it } from "vitest";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { Objm } from "@nats-io/obj";
import { AckedPublisher, PublishAckTimeoutError } from "../../runtime/nats/acked-publisher.ts";
import { objectChunkSubject, putNewObject, type ObjectWriter } from "../../runtime/nats/object-writes.ts";
import { connect, natsServer } from "../support/nats-server.ts";
import { InputError } from "../../runtime/errors.ts";

const BUCKET = "objwrites";

/** Deterministic bytes that differ from chunk to chunk. */
const bytes = (n: number, seed = 7) => Uint8Array.from({ length: n }, (_, i) => (i * 31 + seed + (i >> 10)) & 0xff);

describe("objects written in one burst", () => {
  it("are read back by nats.js with their size and digest checked, for empty, one-chunk and many-chunk objects and any name nats.js can look up", async () => {
    await using server = await natsServer();
    const nc = await connect(server);
    try {
      const store = await new Objm(nc).create(BUCKET);
      const jsm = await jetstreamManager(nc);
      const publisher = new AckedPublisher(nc);
      const writer: ObjectWriter = { publisher, maxPayload: nc.info!.max_payload, purge: (subject) => jsm.streams.purge(`OBJ_${BUCKET}`, { filter: subject }) };
      const cases: Array<[string, Uint8Array]> = [
        ["job/1/count/0", bytes(1234)],
        ["job/seg/3/count/0/run-é+?.17", bytes(3 * 128 * 1024 + 5)],
        ["job/2/empty/0", new Uint8Array(0)],
        ["exactly-one-chunk", bytes(128 * 1024)],
      ];
      for (const [name, data] of cases) await putNewObject(writer, BUCKET, name, data);
      for (const [name, data] of cases) {
        const info = await store.info(name);
        expect(info).toMatchObject({ name, size: data.length, chunks: Math.ceil(data.length / (128 * 1024)), deleted: false });
        expect(new Uint8Array(await store.getBlob(name) ?? [])).toEqual(data);
      }
      expect((await store.list()).map((o) => o.name).sort()).toEqual(cases.map(([n]) => n).sort());
      // nats.js cannot look up a name beyond Latin-1 (it encodes one byte per character): refused.
      await expect(putNewObject(writer, BUCKET, "job/1/→/0", bytes(3))).rejects.toBeInstanceOf(InputError);
      // A corrupted chunk fails nats.js's digest check: the digest is the real one, not a placeholder.
      const info = await store.info("job/1/count/0");
      await jsm.streams.purge(`OBJ_${BUCKET}`, { filter: objectChunkSubject(BUCKET, info!.nuid) });
      await jetstream(nc).publish(objectChunkSubject(BUCKET, info!.nuid), bytes(1234, 8));
      await expect(store.getBlob("job/1/count/0")).rejects.toThrow(/digest/i);
      // And nats.js deletes one with its chunks.
      await store.delete("job/seg/3/count/0/run-é+?.17");
      expect(await store.info("job/seg/3/count/0/run-é+?.17")).toMatchObject({ deleted: true });
      publisher.close();
    } finally {
      await nc.close();
    }
  });

  it("repeats an attempt whose acknowledgement was lost with new chunks and purges the chunks of the abandoned one", async () => {
    await using server = await natsServer();
    const nc = await connect(server);
    try {
      const store = await new Objm(nc).create(BUCKET);
      const jsm = await jetstreamManager(nc);
      const real = new AckedPublisher(nc);
      let calls = 0;
      // The first burst is stored, but its acknowledgement "times out".
      const lossy = {
        publishAll: async (...args: Parameters<AckedPublisher["publishAll"]>) => {
          await real.publishAll(...args);
          if (++calls === 1) throw new PublishAckTimeoutError("timed out: no acknowledgement (simulated)");
        },
      } as unknown as AckedPublisher;
      const data = bytes(2 * 128 * 1024 + 10);
      await putNewObject({ publisher: lossy, maxPayload: nc.info!.max_payload, purge: (subject) => jsm.streams.purge(`OBJ_${BUCKET}`, { filter: subject }) }, BUCKET, "job/9/f/0", data);
      expect(calls).toBe(2);
      expect(new Uint8Array(await store.getBlob("job/9/f/0") ?? [])).toEqual(data);
      const info = await store.info("job/9/f/0");
      // Only the chunks of the version the meta record names are left: three, on its subject.
      const stream = await jsm.streams.info(`OBJ_${BUCKET}`, { subjects_filter: `$O.${BUCKET}.C.>` });
      expect(stream.state.subjects).toEqual({ [objectChunkSubject(BUCKET, info!.nuid)]: 3 });
      real.close();
    } finally {
      await nc.close();
    }
  });
});
