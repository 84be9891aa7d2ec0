/**
 * `eddy savepoint delete <job> <id>` against a real savepoint store: it removes the savepoint
 * (manifest and exports), `eddy savepoints` no longer lists it, and an unknown id is one line and exit 1.
 */
import { describe, expect, it } from "vitest";
import { spawnSync } from "node:child_process";
import { resolve } from "node:path";
import { listSavepoints, writeSavepoint } from "../../runtime/nats/savepoints.ts";
import { connect, natsServer } from "../support/nats-server.ts";

const ROOT = resolve(import.meta.dirname, "../..");
const eddy = (...args: string[]) => spawnSync(process.execPath, [resolve(ROOT, "runtime/cli/main.mjs"), ...args], { cwd: ROOT, encoding: "utf8", timeout: 60_000 });

describe("eddy savepoint delete", () => {
  it("deletes a savepoint and refuses an unknown one", async () => {
    await using server = await natsServer();
    await using nc = await connect(server);
    const manifest = (id: string) => ({
      format: 1 as const,
      id,
      job: "orders",
      checkpoint: 7,
      generation: 1,
      createdAt: Date.UTC(2026, 0, 1),
      functions: [{ name: "count", partitions: 2, isSource: false, state: { n: { kind: "value", version: 1 } } }],
    });
    const exports = [0, 1].map((partition) => ({ fn: "count", partition, entries: [] }));
    await writeSavepoint(nc, manifest("sp-a"), exports);
    await writeSavepoint(nc, manifest("sp-b"), exports);

    const del = eddy("savepoint", "delete", "orders", "sp-a", "--nats", server.url, "--json");
    expect(del.stderr).toBe("");
    expect(del.status).toBe(0);
    expect(JSON.parse(del.stdout)).toEqual({ job: "orders", deleted: "sp-a", objects: 3 });
    expect((await listSavepoints(nc, "orders")).map((s) => s.manifest.id)).toEqual(["sp-b"]);

    const text = eddy("savepoint", "delete", "orders", "sp-b", "--nats", server.url);
    expect(text.status).toBe(0);
    expect(text.stdout.trim()).toBe("orders: deleted savepoint sp-b (3 objects)");
    expect(await listSavepoints(nc, "orders")).toEqual([]);

    const unknown = eddy("savepoint", "delete", "orders", "sp-a", "--nats", server.url);
    expect(unknown.status).toBe(1);
    expect(unknown.stderr.trim().split("\n")).toEqual(['eddy: job "orders" has no savepoint sp-a (list them with eddy savepoints orders)']);
  });
});
