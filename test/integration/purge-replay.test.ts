/**
 * Removing a subject's messages from a replicated stream must leave every other message on every
 * replica, also on a server that restarts afterwards. nats-server before 2.9.18 (Debian ships
 * 2.9.10) replays a purge from its Raft log at a restart as "remove everything up to the stream's
 * last sequence at the time": a filtered purge there silently emptied the restarted replica of the
 * other subjects — a job's spec in the jobs bucket, other partitions' unread records in an input
 * log — and the loss showed once that replica led the stream (design note bo). So eddy deletes
 * message by message where the purge is unsafe (subject-removal.ts).
 *
 * Each test removes a subject, SIGKILLs a server that holds a replica and restarts it with its
 * store, makes that server the stream's leader (leader step-downs until it is) and reads there.
 */
import { describe, expect, it } from "vitest";
import { Kvm } from "@nats-io/kv";
import { JetStreamTransport } from "../../runtime/nats/transport.ts";
import { repeatUnacknowledged } from "../../runtime/nats/kv-cas.ts";
import { ensureStream, publishAll } from "../../runtime/nats/streams.ts";
import { ensureControlStores, purgeKey } from "../../runtime/nats/control-store.ts";
import { JOBS_BUCKET } from "../../runtime/core/protocol.ts";
import { sharedCluster } from "../support/nats-server.ts";
import { waitFor } from "../support/wait.ts";

const shared = sharedCluster();

const leaderOf = async (stream: string) => (await repeatUnacknowledged(() => shared.jsm.streams.info(stream))).cluster?.leader;

/** SIGKILLs a server holding a replica of `stream` other than its leader, restarts it with its store once the others go on. */
async function restartFollowerOf(stream: string): Promise<string> {
  const leader = await leaderOf(stream);
  const index = shared.cluster.servers.findIndex((_, i) => shared.cluster.serverName(i) !== leader);
  const name = shared.cluster.serverName(index);
  await shared.cluster.servers[index]!.kill();
  await shared.restore(index, stream, 60_000);
  return name;
}

/** Asks `stream`'s leader to step down until `server` leads it. */
async function makeLeader(stream: string, server: string): Promise<void> {
  await waitFor(`${server} to lead ${stream}`, async () => {
    const leader = await leaderOf(stream);
    if (leader === server) return true;
    if (leader !== undefined) await shared.nc.request(`$JS.API.STREAM.LEADER.STEPDOWN.${stream}`, "", { timeout: 5000 }).catch(() => undefined);
    await new Promise((r) => setTimeout(r, 1000));
    return false;
  }, { timeoutMs: 90_000, retryErrors: true });
}

/** Publishes one message to each subject in turn, each acknowledged before the next. */
async function publishMore(subjects: readonly string[]): Promise<void> {
  for (const [i, subject] of subjects.slice(0, 40).entries()) await publishAll(shared.nc, [{ subject, data: `more ${i}` }]);
}

/** Sequences of `subject`'s messages in `stream`, as its leader has them. */
async function sequencesOf(stream: string, subject: string): Promise<number[]> {
  const out: number[] = [];
  for (let next = 1; ; ) {
    const m = await repeatUnacknowledged(() => shared.jsm.streams.getMessage(stream, { seq: next, next_by_subj: subject } as unknown as { seq: number })).catch((e: unknown) => {
      if (/not found/i.test(String(e))) return null;
      throw e;
    });
    if (m === null) return out;
    out.push(m.seq);
    next = m.seq + 1;
  }
}

describe("removing a subject's messages from a replicated stream", () => {
  it("keeps the other subjects' messages on a replica that restarts afterwards (an input log trimmed below a position)", async () => {
    await ensureStream(shared.nc, "REPLAY_IN", ["replay.in.*"]);
    // Partitions 0 and 1 interleaved; partition 0's reader has read its first 30 messages.
    const batch = Array.from({ length: 120 }, (_, i) => ({ subject: `replay.in.${i % 2}`, data: String(i) }));
    await publishAll(shared.nc, batch);
    const first = await sequencesOf("REPLAY_IN", "replay.in.0");
    await new JetStreamTransport(shared.nc).purgeBelow("REPLAY_IN", "replay.in.0", first[30]!);
    // Writes after the removal: a restarting server replays the removal from its Raft log only
    // once later entries there say it was committed.
    await publishMore(batch.map((m) => m.subject));
    const p0 = await sequencesOf("REPLAY_IN", "replay.in.0");
    const p1 = await sequencesOf("REPLAY_IN", "replay.in.1");
    expect(p0[0]).toBe(first[30]);
    expect(p1.length).toBe(80);

    const restarted = await restartFollowerOf("REPLAY_IN");
    await makeLeader("REPLAY_IN", restarted);
    expect(await sequencesOf("REPLAY_IN", "replay.in.1")).toEqual(p1);
    expect(await sequencesOf("REPLAY_IN", "replay.in.0")).toEqual(p0);
  });

  it("keeps the other keys of a KV bucket on a replica that restarts afterwards (a checkpoint record deleted from the jobs bucket)", async () => {
    const stores = await ensureControlStores(shared.nc);
    const jobs = await new Kvm(shared.nc).open(JOBS_BUCKET);
    await jobs.put("replayjob.spec", "the spec");
    for (let i = 1; i <= 20; i++) await jobs.put(`replayjob.ckpt.${i}`, `record ${i}`);
    await purgeKey(stores, "replayjob.ckpt.1");
    await publishMore(Array.from({ length: 20 }, () => "$KV.eddy_jobs.replayjob.latest"));

    const stream = `KV_${JOBS_BUCKET}`;
    const restarted = await restartFollowerOf(stream);
    await makeLeader(stream, restarted);
    const spec = await repeatUnacknowledged(() => jobs.get("replayjob.spec"));
    expect(spec === null ? null : new TextDecoder().decode(spec.value)).toBe("the spec");
    expect(await repeatUnacknowledged(() => jobs.get("replayjob.ckpt.1"))).toBeNull();
    const last = await repeatUnacknowledged(() => jobs.get("replayjob.ckpt.20"));
    expect(last === null ? null : new TextDecoder().decode(last.value)).toBe("record 20");
  });
});
