/**
 * Each job has its own checkpoint and savepoint object stores (design note ba): `eddy deploy`
 * creates them with the job's streams, so that workers, which may not create streams, find them;
 * `eddy start` creates them for a job deployed before stores were per job (its streams exist, its
 * stores do not), and listing a job without a savepoint store creates nothing.
 */
import { describe, expect, it } from "vitest";
import { resolve } from "node:path";
import { jetstreamManager } from "@nats-io/jetstream";
import { checkpointObjects, savepointObjects } from "../../runtime/core/naming.ts";
import { deployModule, start, undeploy } from "../../runtime/deploy/deploy.ts";
import { listSavepoints } from "../../runtime/nats/savepoints.ts";
import { ensureStream } from "../../runtime/nats/streams.ts";
import { connect, natsServer } from "../support/nats-server.ts";

const COUNTER = resolve(import.meta.dirname, "../../test/fixtures/counter.ts");

describe("per-job object stores", () => {
  it("are created by eddy deploy, and again by eddy start for a job that has none", async () => {
    await using server = await natsServer();
    await using nc = await connect(server);
    const jsm = await jetstreamManager(nc);
    const streams = async () => (await jsm.streams.names().next()).filter((n) => n.startsWith("OBJ_")).sort();
    await ensureStream(nc, "COUNTER_IN", ["counter.in"]);
    await ensureStream(nc, "COUNTER_OUT", ["counter.out"]);

    // Another job's savepoints listed: none, and no store made for it.
    expect(await listSavepoints(nc, "unknown")).toEqual([]);
    await deployModule(nc, COUNTER);
    const mine = [`OBJ_${checkpointObjects("counter")}`, `OBJ_${savepointObjects("counter")}`];
    expect(await streams()).toEqual(["OBJ_eddy_code", ...mine].sort());

    // As left by an eddy that kept every job's snapshots in one store.
    await undeploy(nc, "counter");
    for (const s of mine) await jsm.streams.delete(s);
    expect(await streams()).toEqual(["OBJ_eddy_code"]);
    expect(await start(nc, "counter")).toMatchObject({ started: true });
    expect(await streams()).toEqual(["OBJ_eddy_code", ...mine].sort());
  });
});
