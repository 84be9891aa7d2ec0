/**
 * The incompatible-upgrade scenario (scenarios.md §1, docs/state.md), end to end with the CLI on
 * a real nats-server and worker processes: a page-view window aggregation changes its accumulator
 * from a count to { count, users }. Its savepoint is refused by the new version (schema version 1
 * → 2, no migration) and nothing changes; the new version is deployed from the savepoint with the
 * windows started empty, they are bootstrapped from the savepoint with a transform, and they fire
 * with the right results — every event counted once, the sources resuming where the savepoint
 * left them. A savepoint of the upgraded job is then repartitioned and restored with 3 partitions.
 */
import { describe, expect, it } from "vitest";
import { resolve } from "node:path";
import { ensureStream, publishAll, readAll } from "../../runtime/nats/streams.ts";
import { startSupervisor } from "../../runtime/supervisor/supervisor.ts";
import { connect, natsServer } from "../support/nats-server.ts";
import { eddyOk, runEddy } from "../support/cli.ts";
import { startEddy, type EddyProcess } from "../support/processes.ts";
import { waitFor } from "../support/wait.ts";

const ROOT = resolve(import.meta.dirname, "../..");
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const decoder = new TextDecoder();

interface View {
  readonly page: string;
  readonly user: string;
  readonly ts: number;
}
const MINUTE = 60_000;

describe("an incompatible upgrade with bootstrapped windows", () => {
  it("refuses the old savepoint, then bootstraps the open windows so they fire correctly, counting nothing twice", async () => {
    await using server = await natsServer();
    const nc = await connect(server);
    const supervisor = await startSupervisor(nc, { checkpointIntervalMs: 200 });
    const workers: EddyProcess[] = [startEddy(["worker", "--nats", server.url])];
    const logs = () => workers.map((w) => w.output()).join("\n---\n");
    const eddy = (...args: string[]) => runEddy([...args, "--nats", server.url]);
    const ok = (...args: string[]) => eddyOk([...args, "--nats", server.url], { logs });
    const patiently = { timeoutMs: 60_000, logs, retryErrors: true };
    const outputs = async () => (await readAll(nc, "VIEWS_OUT")).map((m) => JSON.parse(decoder.decode(m.data)) as { key: string; start: number; value: unknown });
    const send = (views: View[]) => publishAll(nc, views.map((v) => ({ subject: "views.in", data: JSON.stringify(v) })));
    try {
      await ensureStream(nc, "VIEWS_IN", ["views.in"]);
      await ensureStream(nc, "VIEWS_OUT", ["views.out"]);
      await ok("deploy", "test/fixtures/views/v1.ts");

      // Version 1: minute 0 fires (the watermark passes it); minute 1 is still open.
      const before: View[] = [
        { page: "/a", user: "u1", ts: 1_000 },
        { page: "/a", user: "u2", ts: 2_000 },
        { page: "/b", user: "u1", ts: 3_000 },
        { page: "/a", user: "u1", ts: 61_000 },
        { page: "/a", user: "u3", ts: 62_000 },
        { page: "/b", user: "u2", ts: 63_000 },
        { page: "/a", user: "u9", ts: 100_000 },
      ];
      await send(before);
      await waitFor("version 1's first minute", async () => (await outputs()).length === 2, patiently);

      const stopped = JSON.parse(await ok("stop", "views", "--savepoint", "--json")) as { savepoint: string };
      const sp = stopped.savepoint;
      expect(await ok("savepoints", "views")).toContain(sp);

      // The new accumulator cannot read the old one: refused, with names and versions, nothing changed.
      const refused = await eddy("deploy", "test/fixtures/views/v2.ts", "--from-savepoint", sp);
      expect(refused.code).not.toBe(0);
      expect(refused.stderr.trim().split("\n").filter((l) => l.startsWith("eddy:"))).toHaveLength(1);
      expect(refused.stderr).toMatch(/"counts"/);
      expect(refused.stderr).toMatch(/"windows"/);
      expect(refused.stderr).toMatch(/1.*2|version 1/);
      expect(JSON.parse(await ok("ls", "--json"))).toEqual([]); // still stopped, no new version
      expect(await ok("savepoints", "views")).toContain(sp);

      // Deployed from the savepoint with the windows empty, then the open windows bootstrapped.
      const deployed = await ok("deploy", "test/fixtures/views/v2.ts", "--from-savepoint", sp, "--skip-state", "counts.windows");
      expect(deployed).toMatch(/started empty \(--skip-state\): counts\.windows/);
      const boot = await ok("state", "bootstrap", "views", "counts", "--from", `savepoint:${sp}`, "--with", "test/fixtures/views/bootstrap.ts", "--json");
      expect(JSON.parse(boot)).toMatchObject({ items: 2, applied: true });
      expect(JSON.parse(await ok("state", "get", "views", "counts", "windows", "/a", "--json"))).toEqual({ found: true, value: { "60000": { count: 3, users: [] } } });

      const after: View[] = [
        { page: "/a", user: "u4", ts: 110_000 },
        { page: "/b", user: "u4", ts: 115_000 },
        { page: "/a", user: "u5", ts: 130_000 },
        { page: "/z", user: "u0", ts: 250_000 }, // moves the watermark past minutes 1 and 2
      ];
      await send(after);
      await waitFor("version 2's windows", async () => (await outputs()).length === 5, patiently);
      await sleep(500);

      // Computed from the events alone: a window open across the upgrade counts every event in it
      // once; its distinct users are those seen after the upgrade (a count kept none).
      const expected = new Map<string, { count: number; users: Set<string> }>();
      const firedBefore = new Set(["/a@0", "/b@0"]);
      for (const [phase, views] of [["before", before], ["after", after]] as const) {
        for (const v of views) {
          const id = `${v.page}@${Math.floor(v.ts / MINUTE) * MINUTE}`;
          if (firedBefore.has(id) || v.page === "/z") continue;
          const e = expected.get(id) ?? { count: 0, users: new Set<string>() };
          e.count++;
          if (phase === "after") e.users.add(v.user);
          expected.set(id, e);
        }
      }
      const out = await outputs();
      expect(out.slice(0, 2).map((o) => [o.key, o.start, o.value]).sort()).toEqual([["/a", 0, 2], ["/b", 0, 1]]);
      expect(out.slice(2).map((o) => [`${o.key}@${o.start}`, o.value]).sort()).toEqual(
        [...expected].map(([id, e]) => [id, { count: e.count, distinctUsers: e.users.size }]).sort(),
      );

      // Repartitioning: a savepoint of the upgraded job, rewritten for 3 partitions, restored.
      const sp2 = (JSON.parse(await ok("stop", "views", "--savepoint", "--json")) as { savepoint: string }).savepoint;
      const sp3 = (JSON.parse(await ok("state", "repartition", "views", "counts", "--partitions", "3", "--from-savepoint", sp2, "--json")) as { savepoint: string }).savepoint;
      await ok("deploy", "test/fixtures/views/v2.ts", "--partitions", "3", "--from-savepoint", sp3);
      await waitFor("three partitions of counts", async () => JSON.parse(await ok("state", "get", "views", "counts", "windows", "/z", "--json")).found === true, patiently);
      await send([{ page: "/z", user: "u7", ts: 251_000 }, { page: "/q", user: "u1", ts: 400_000 }]);
      await waitFor("the /z window", async () => (await outputs()).length === 6, patiently);
      expect((await outputs())[5]).toMatchObject({ key: "/z", start: 240_000, value: { count: 2, distinctUsers: 2 } });
    } finally {
      for (const w of workers) await w.kill();
      await supervisor.stop();
      await nc.close();
    }
  }, 180_000);
});
