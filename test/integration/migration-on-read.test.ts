/**
 * State schema migrations applied when state is read: a running counter is replaced by a version
 * whose state has a new shape and schema version 2 with a migration from 1. The deploy is
 * accepted as compatible, swapped in at a checkpoint, and the actors migrate the stored counts as
 * they restore them: counting goes on from the old values, and the migrated values (with the new
 * versions recorded) reach KV with the next checkpoint.
 */
import { describe, expect, it } from "vitest";
import { resolve } from "node:path";
import { Kvm } from "@nats-io/kv";
import { deployModule } from "../../runtime/deploy/deploy.ts";
import { versionsKey } from "../../runtime/core/kv-keys.ts";
import { decodeValue } from "../../runtime/core/wire.ts";
import { ensureStream, publishAll, readAll } from "../../runtime/nats/streams.ts";
import { stateClient } from "../../runtime/nats/state-client.ts";
import { startSupervisor } from "../../runtime/supervisor/supervisor.ts";
import { connect, natsServer } from "../support/nats-server.ts";
import { startEddy } from "../support/processes.ts";
import { waitFor } from "../support/wait.ts";

const ROOT = resolve(import.meta.dirname, "../..");
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe("state migrations", () => {
  it("migrate stored values when a compatible new version reads them", async () => {
    await using server = await natsServer();
    const nc = await connect(server);
    const supervisor = await startSupervisor(nc, { checkpointIntervalMs: 200 });
    await using worker = startEddy(["worker", "--nats", server.url]);
    const patiently = { timeoutMs: 60_000, logs: worker.output, retryErrors: true };
    const outputs = async () => (await readAll(nc, "COUNTER_OUT")).map((m) => JSON.parse(new TextDecoder().decode(m.data)) as { user: string; n: number; v?: number });
    const click = (users: string[]) => publishAll(nc, users.map((user) => ({ subject: "counter.in", data: JSON.stringify({ user }) })));
    try {
      await ensureStream(nc, "COUNTER_IN", ["counter.in"]);
      await ensureStream(nc, "COUNTER_OUT", ["counter.out"]);
      await deployModule(nc, resolve(ROOT, "test/fixtures/counter.ts"));
      await click(["ann", "bob", "ann"]);
      await waitFor("version 1's counts", async () => (await outputs()).length === 3, patiently);

      const [v2] = await deployModule(nc, resolve(ROOT, "test/fixtures/counter-migrated.ts"));
      expect(v2).toMatchObject({ version: 2, unchanged: false });
      const count = await stateClient(nc, "counter", "count");
      await waitFor("the migrated state, live", async () => JSON.stringify(await count.get("n", "ann")) === JSON.stringify({ clicks: 2 }), patiently);

      await click(["ann", "cid"]);
      await waitFor("version 2's counts", async () => (await outputs()).length === 5, patiently);
      expect((await outputs()).slice(3).sort((a, b) => a.user.localeCompare(b.user))).toEqual([
        { user: "ann", n: 3, v: 3 },
        { user: "cid", n: 1, v: 3 },
      ]);
      // With the next checkpoint the migrated values and their version are what KV holds.
      await waitFor("the migrated state, committed", async () => JSON.stringify(await count.get("n", "bob", { consistency: "committed" })) === JSON.stringify({ clicks: 1 }), patiently);
      const kv = await new Kvm(nc).open("eddy_counter_count");
      const p = count.partitionOf("bob");
      expect(decodeValue((await kv.get(versionsKey(p)))!.value)).toEqual({ n: 2 });
    } finally {
      await supervisor.stop();
      await nc.close();
    }
  }, 120_000);
});
