/**
 * The command line facing records that other processes — or anyone who can write the jobs bucket
 * or a state bucket — damaged: views (`status`, `ls`, `checkpoints`) show a damaged record as
 * absent and say which one it is; commands that would act on it (`start`, `state get`) stop with
 * one line, `eddy: <why>`, and exit 1. Never a TypeError or a stack trace.
 */
import { describe, expect, it } from "vitest";
import { Kvm } from "@nats-io/kv";
import { ensureControlStores } from "../../runtime/nats/control-store.ts";
import { assignmentKey, checkpointKey, endKey, jobSpecKey, latestKey, resumeKey, statusKey } from "../../runtime/core/protocol.ts";
import { deploymentKey, deploymentVersionKey } from "../../runtime/nats/deployments.ts";
import { stateKey } from "../../runtime/core/kv-keys.ts";
import { stateBucket } from "../../runtime/core/naming.ts";
import { connect, natsServer } from "../support/nats-server.ts";
import { runEddy, type CliResult } from "../support/cli.ts";
import { writeSavepoint } from "../../runtime/nats/savepoints.ts";
import { readItems } from "../../runtime/deploy/bootstrap.ts";
import { CorruptSavepointError } from "../../runtime/core/savepoint.ts";

const JOB = "g";

/** Exit 1 with exactly one line on stderr, `eddy: …` matching `why`, and nothing that looks like a stack. */
function expectOneLineError(r: CliResult, why: RegExp): void {
  expect(r.code, r.output).toBe(1);
  expect(r.stderr.trimEnd().split("\n"), r.stderr).toHaveLength(1);
  expect(r.stderr).toMatch(/^eddy: /);
  expect(r.stderr).toMatch(why);
  expect(r.output).not.toMatch(/TypeError|\n\s+at /);
}

describe("the CLI reading damaged records", () => {
  it("shows damaged records as such in views, and refuses to act on them with one line", async () => {
    await using server = await natsServer();
    const nc = await connect(server);
    const nats = ["--nats", server.url];
    try {
      const stores = await ensureControlStores(nc);
      // Garbage of each kind where each reader looks: not JSON, JSON null, and the wrong shape.
      const garbage: Record<string, string> = {
        [jobSpecKey(JOB)]: '{"job":"g","functions":[null],"updatedAt":1}',
        [latestKey(JOB)]: "null",
        [assignmentKey(JOB)]: '{"generation":"1","owners":[]}',
        [statusKey(JOB)]: "not json",
        [deploymentKey(JOB)]: '{"job":"g","version":1e999}',
        [deploymentVersionKey(JOB, 1)]: "[]",
        [checkpointKey(JOB, 3)]: '{"id":3,"generation":1,"status":"done","startedAt":1}',
        [endKey(JOB)]: '{"streams":null}',
        [resumeKey(JOB)]: "42",
      };
      for (const [key, value] of Object.entries(garbage)) await stores.jobs.put(key, value);

      const status = await runEddy(["status", JOB, ...nats]);
      expect(status.code, status.output).toBe(0);
      for (const key of [jobSpecKey(JOB), latestKey(JOB), assignmentKey(JOB), statusKey(JOB), deploymentKey(JOB), deploymentVersionKey(JOB, 1)]) {
        expect(status.stdout).toContain(`damaged record (shown as absent): ${key}: `);
      }
      expect(status.output).not.toMatch(/TypeError|\n\s+at /);
      const json = JSON.parse((await runEddy(["status", JOB, "--json", ...nats])).stdout) as { damaged: string[] };
      expect(json.damaged).toHaveLength(6);

      for (const args of [["ls", "--all"], ["checkpoints", JOB]]) {
        const r = await runEddy([...args, ...nats]);
        expect(r.code, r.output).toBe(0);
        expect(r.output).not.toMatch(/TypeError|\n\s+at /);
      }

      // Acting on a damaged deployment record or spec stops with one line naming the record.
      expectOneLineError(await runEddy(["start", JOB, ...nats]), /g\.deploy: deploy: version: expected a positive safe integer/);
      expectOneLineError(await runEddy(["state", "get", JOB, "count", "n", "k", "--committed", ...nats]), /g\.deploy\.1: deploy: expected an object/);

      // A state entry that is not msgpack, under a spec that reads well.
      await stores.jobs.put(jobSpecKey(JOB), JSON.stringify({ job: JOB, functions: [{ name: "count", partitions: 1, isSource: false }], updatedAt: 1 }));
      const bucket = await new Kvm(nc).create(stateBucket(JOB, "count"), { history: 1 });
      await bucket.put(stateKey(0, "n", "k"), new Uint8Array([0xc1, 0xc1, 0xc1]));
      await bucket.put("0._wm", new Uint8Array([0xc1]));
      expectOneLineError(await runEddy(["state", "get", JOB, "count", "n", "k", "--committed", ...nats]), /state entry .* is damaged \(not msgpack\)/);
      const again = await runEddy(["status", JOB, ...nats]);
      expect(again.code, again.output).toBe(0);
      // No owner, no watermark, and no worker to say what it awaits now.
      expect(again.stdout).toMatch(/^count\s+0\s+-\s+\d+\s+-\s+-\s+-$/m);
    } finally {
      await nc.close();
    }
  }, 120_000);

  it("a bootstrap from a savepoint whose stored value is not msgpack stops with a CorruptSavepointError naming it", async () => {
    await using server = await natsServer();
    const nc = await connect(server);
    try {
      const manifest = { format: 1 as const, id: "sp-bad", job: JOB, checkpoint: 7, generation: 1, createdAt: 1, functions: [{ name: "count", partitions: 1, isSource: false, state: { n: { kind: "value", version: 1 } } }] };
      await writeSavepoint(nc, manifest, [{ fn: "count", partition: 0, entries: [[stateKey(0, "n", "k"), new Uint8Array([0xd9, 0x10])]] }]);
      const read = readItems(nc, JOB, "count", { kind: "savepoint", id: "sp-bad" });
      await expect(read).rejects.toThrow(CorruptSavepointError);
      await expect(read).rejects.toThrow(`savepoint sp-bad: the value of ${stateKey(0, "n", "k")} in count/0 does not decode`);
    } finally {
      await nc.close();
    }
  }, 60_000);
});
