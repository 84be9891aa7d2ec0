/**
 * An actor's input reader keeps its position while a 3-node JetStream cluster loses servers
 * (issue 13 item 4, design note bn): opened at a position, it delivers exactly the messages of its
 * subject after that position, in order, none twice and none missed, while the stream's leader
 * and other servers (the one holding the reader's consumer among them) are SIGKILLed and
 * restarted with their stores, one after the other, with messages published meanwhile and the
 * reader sometimes in the middle of a backlog.
 *
 * Every wait is for a condition, with limits generous enough for a loaded 2-core machine: an
 * election took 4.6–7.5 s there, and a lost consumer is noticed after 8 s without heartbeats. It
 * runs in `npm test`: unlike the failover tests in test/cluster, its outcome does not depend on
 * how fast the cluster elects (fifteen runs in a row passed on the loaded machine, design note bn).
 */
import { describe, expect, it } from "vitest";
import { JetStreamTransport } from "../../runtime/nats/transport.ts";
import { repeatUnacknowledged } from "../../runtime/nats/kv-cas.ts";
import { ensureStream } from "../../runtime/nats/streams.ts";
import type { PositionedReader } from "../../runtime/nats/positioned-reader.ts";
import { rejectedCounts } from "../../runtime/metrics/rejections.ts";
import { sharedCluster } from "../support/nats-server.ts";
import { waitFor } from "../support/wait.ts";

const shared = sharedCluster();

const STREAM = "INPUT_FAILOVER";
const text = (d: Uint8Array) => new TextDecoder().decode(d);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe("an input reader on a 3-node cluster losing servers", () => {
  it("delivers exactly the sequences after its position, in order, across SIGKILLs of the stream's leader and of other servers", async () => {
    await repeatUnacknowledged(() => ensureStream(shared.nc, STREAM, ["input.failover.*"]), 60_000);
    expect((await shared.jsm.streams.info(STREAM)).config.num_replicas).toBe(3);
    const transport = new JetStreamTransport(shared.nc);

    // Every message of partition 1 the stream stored, by sequence, from the publishes' acknowledgements.
    const stored = new Map<number, string>();
    let published = 0;
    // One at a time, each with a message id: repeated through an election, stored once.
    const publish = async (count: number) => {
      for (let i = 0; i < count; i++, published++) {
        const subject = `input.failover.${published % 2}`;
        const body = `m${published}`;
        const receipt = await repeatUnacknowledged(() => transport.publish(subject, new TextEncoder().encode(body), undefined, `input-failover-${published}`), 90_000);
        if (published % 2 === 1 && receipt !== undefined) stored.set(receipt.seq, body);
      }
    };
    await publish(400);
    // Partition 1 from its 101st message on, as an actor resuming at position 201.
    const reader = (await transport.openInput(STREAM, "input.failover.1", 202)) as PositionedReader;
    const seen: Array<{ seq: number; body: string }> = [];
    let slow = false;
    let readError: unknown;
    const reading = (async () => {
      for await (const m of reader) {
        seen.push({ seq: m.seq, body: text(m.data) });
        // A reader busy with its messages: a kill finds it in the middle of a backlog.
        if (slow) await sleep(3);
      }
    })().catch((e: unknown) => {
      readError = e;
    });
    const lastStored = () => Math.max(...stored.keys());
    const caughtUp = (what: string) =>
      waitFor(`the reader to deliver up to sequence ${lastStored()} (${what})`, () => {
        if (readError !== undefined) throw readError;
        return seen.length > 0 && seen.at(-1)!.seq >= lastStored();
      }, { timeoutMs: 180_000, intervalMs: 100 });

    const log: string[] = [];
    try {
      await caughtUp("before any kill");
      for (const [round, target] of (["leader", "consumer", "follower", "leader", "consumer"] as const).entries()) {
        const info = await repeatUnacknowledged(() => shared.jsm.streams.info(STREAM), 60_000);
        const leader = info.cluster?.leader;
        const followers = (info.cluster?.replicas ?? []).map((r) => r.name);
        let victim: string | undefined;
        if (target === "leader") victim = leader;
        else {
          const consumer = reader.consumer;
          const host = consumer === undefined ? undefined : (await repeatUnacknowledged(() => shared.jsm.consumers.info(STREAM, consumer), 30_000).catch(() => undefined))?.cluster?.leader;
          // The server holding the reader's consumer, or else a follower of the stream.
          victim = target === "consumer" && host !== undefined ? host : (followers.find((f) => f === host) ?? followers[0]);
        }
        const index = shared.indexOf(victim);
        // Half the rounds kill while the reader works through a backlog, half while it waits.
        const midRead = round % 2 === 1;
        if (midRead) {
          slow = true;
          await publish(600);
          await waitFor("the reader to be inside the backlog", () => seen.at(-1)!.seq > lastStored() - 900, { timeoutMs: 60_000, intervalMs: 20 });
        }
        const resumesBefore = reader.stats.resumes;
        const killedAt = Date.now();
        await shared.cluster.servers[index]!.kill();
        await publish(200);
        await caughtUp(`after killing ${victim} (${target}${victim === leader ? ", the stream's leader" : ""})`);
        const resumedMs = Date.now() - killedAt;
        slow = false;
        await shared.restore(index, STREAM);
        await publish(100);
        await caughtUp(`after ${victim} came back`);
        log.push(`${target} ${victim}${victim === leader ? " (leader)" : ""}${midRead ? " mid-read" : ""}: caught up ${resumedMs} ms after the kill, consumers re-created ${reader.stats.resumes - resumesBefore}`);
      }
    } finally {
      await reader.stop();
      await reading;
    }
    const drops = rejectedCounts().filter((c) => c.kind === "input").map((c) => `${c.reason}: ${c.count}`);
    console.log(`input reader across failovers:\n  ${log.join("\n  ")}\n  stats ${JSON.stringify(reader.stats)}${drops.length === 0 ? "" : `, dropped as ${drops.join(", ")}`}`);

    const expected = [...stored.entries()].filter(([seq]) => seq >= 202).sort((a, b) => a[0] - b[0]);
    expect(expected.length).toBeGreaterThan(1000);
    // Exactly the stored sequences from the position on, in order: nothing repeated, nothing missed.
    expect(seen.map((m) => m.seq)).toEqual(expected.map(([seq]) => seq));
    expect(seen.map((m) => m.body)).toEqual(expected.map(([, body]) => body));
    // Some kills took the reader's consumer with them: it was re-created at its position.
    expect(reader.stats.resumes).toBeGreaterThan(0);
    // What a failure's message says of the reader (an input gap's, message-intake.ts).
    expect(reader.describe()).toContain(`at stream sequence ${seen.at(-1)!.seq}, ${reader.stats.resumes} consumer(s) re-created`);
  }, 900_000);
});
