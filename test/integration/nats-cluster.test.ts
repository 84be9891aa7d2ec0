/**
 * Local JetStream clusters (design note bl): `eddy nats-server --cluster 3` and `eddy dev --cluster 3`
 * start three routed nats-servers, clients connect with every URL, and what eddy creates there has
 * three replicas, which `eddy status` reports with their leader.
 */
import { describe, expect, it } from "vitest";
import { resolve } from "node:path";
import { jetstreamManager } from "@nats-io/jetstream";
import { connect as natsConnect } from "@nats-io/transport-node";
import { deployModule } from "../../runtime/deploy/deploy.ts";
import { jobStatus } from "../../runtime/cli/status.ts";
import { ensureStream, publishAll, readAll } from "../../runtime/nats/streams.ts";
import { ensureControlPlane } from "../../runtime/nats/topology.ts";
import { JOBS_BUCKET } from "../../runtime/core/protocol.ts";
import { startEddy } from "../support/processes.ts";
import { waitFor } from "../support/wait.ts";

const ROOT = resolve(import.meta.dirname, "../..");
const CLUSTER_URL = /nats:\/\/127\.0\.0\.1:\d+(,nats:\/\/127\.0\.0\.1:\d+){2}/;

const isAlive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

describe("eddy nats-server --cluster 3", () => {
  it("runs three routed servers whose buckets get three replicas, and stops all of them", async () => {
    await using proc = startEddy(["nats-server", "--cluster", "3"]);
    const url = await waitFor("the cluster's URLs", () => CLUSTER_URL.exec(proc.output())?.[0], { timeoutMs: 40_000, logs: proc.output });
    // The URL goes to stdout and the servers' pids to stderr after it: the pids may come a moment later.
    const pids = await waitFor("the servers' pids", () => {
      const found = [...proc.output().matchAll(/eddy-\d pid (\d+)/g)].map((m) => Number(m[1]));
      return found.length >= 3 && found;
    }, { logs: proc.output });
    expect(pids).toHaveLength(3);
    const nc = await natsConnect({ servers: url.split(",") });
    try {
      expect(nc.info?.cluster).toBe("eddy");
      await ensureControlPlane(nc);
      const info = await (await jetstreamManager(nc)).streams.info(`KV_${JOBS_BUCKET}`);
      expect(info.config.num_replicas).toBe(3);
      expect([info.cluster?.leader, ...(info.cluster?.replicas ?? []).map((r) => r.name)].sort()).toEqual(["eddy-0", "eddy-1", "eddy-2"]);
    } finally {
      await nc.close();
    }
    await proc.stop(20_000);
    expect(proc.output()).toMatch(/nats-server stopped/);
    expect(pids.filter(isAlive)).toEqual([]);
  });

  it("refuses a cluster of one as a usage error", async () => {
    await using proc = startEddy(["nats-server", "--cluster", "1"]);
    const code = await new Promise<number | null>((r) => proc.child.once("exit", (c) => r(c)));
    expect(code).toBe(2);
    expect(proc.output()).toMatch(/eddy: --cluster must be in 2\.\.5/);
  });
});

describe("eddy dev --cluster 3", () => {
  it("runs what is deployed to it on three replicas of every stream, which eddy status shows", async () => {
    await using dev = startEddy(["dev", "--cluster", "3", "--checkpoint-interval", "300"]);
    const url = await waitFor("eddy dev to print its URLs", () => CLUSTER_URL.exec(dev.output())?.[0], { timeoutMs: 40_000, logs: dev.output });
    const nc = await natsConnect({ servers: url.split(",") });
    try {
      await ensureStream(nc, "COUNTER_IN", ["counter.in"]);
      await ensureStream(nc, "COUNTER_OUT", ["counter.out"]);
      await deployModule(nc, resolve(ROOT, "test/fixtures/counter.ts"));
      await publishAll(nc, [{ subject: "counter.in", data: JSON.stringify({ user: "ann" }) }]);
      const out = await waitFor("the count", async () => {
        const o = (await readAll(nc, "COUNTER_OUT")).map((m) => JSON.parse(new TextDecoder().decode(m.data)) as unknown);
        return o.length > 0 && o;
      }, { timeoutMs: 60_000, logs: dev.output });
      expect(out, dev.output()).toEqual([{ user: "ann", n: 1 }]);

      const status = await waitFor("every stream of the job to be replicated", async () => {
        const s = await jobStatus(url, "counter");
        return s.streams.every((x) => x.health === "ok") && s.streams;
      }, { timeoutMs: 20_000 });
      expect(status.length).toBeGreaterThanOrEqual(6);
      for (const s of status) {
        expect(s.replicas, s.stream).toBe(3);
        expect(s.leader, s.stream).toMatch(/^eddy-[0-2]$/);
        expect(s.current, s.stream).toHaveLength(2);
      }
    } finally {
      await nc.close();
      await dev.stop(20_000);
    }
  });
});
