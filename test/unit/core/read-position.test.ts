/**
 * An input reader's position (runtime/core/read-position.ts): where a new consumer must start,
 * which new consumers may be read, which delivered messages are the next ones and which are
 * repeats or follow a gap, and when a silent consumer counts as lost — on plain numbers.
 */
import { describe, expect, it } from "vitest";
import { consumerLost, judgeMessage, listingCurrent, listingStep, judgeStart, lostInFlight, resumePauseMs, resumeSeq, startPosition, withNewConsumer, type ReadPosition } from "../../../runtime/core/read-position.ts";

/**
 * Feeds (stream sequence, consumer sequence) pairs to a reader at `start` ("new consumer" where
 * the reader replaced its consumer): what it delivers and drops. After a drop it replaces it too.
 */
function read(start: number, messages: ReadonlyArray<readonly [number, number] | "new consumer">): { delivered: number[]; dropped: string[]; position: ReadPosition } {
  let position = startPosition(start);
  const delivered: number[] = [];
  const dropped: string[] = [];
  for (const m of messages) {
    if (m === "new consumer") {
      position = withNewConsumer(position);
      continue;
    }
    const [seq, dseq] = m;
    const v = judgeMessage(position, seq, dseq);
    if (v.kind === "deliver") {
      position = v.position;
      delivered.push(seq);
    } else {
      dropped.push(`${seq}:${v.kind}`);
      position = withNewConsumer(position);
    }
  }
  return { delivered, dropped, position };
}

describe("a reader's position", () => {
  it("starts before its start sequence (at least 1) and resumes after the last delivered", () => {
    expect(resumeSeq(startPosition(202))).toBe(202);
    expect(resumeSeq(startPosition(0))).toBe(1);
    expect(resumeSeq(startPosition(-5))).toBe(1);
    expect(resumeSeq(startPosition(Number.NaN))).toBe(1);
    expect(resumeSeq({ delivered: 340, consumerSeq: 70 })).toBe(341);
    expect(withNewConsumer({ delivered: 340, consumerSeq: 70 })).toEqual({ delivered: 340, consumerSeq: 0 });
  });

  it("delivers the messages of a filtered consumer in order, whatever the stream sequences between them", () => {
    const r = read(202, [
      [202, 1],
      [204, 2],
      [210, 3],
    ]);
    expect(r.delivered).toEqual([202, 204, 210]);
    expect(r.dropped).toEqual([]);
    expect(r.position).toEqual({ delivered: 210, consumerSeq: 3 });
  });

  it("drops what a consumer started at the stream's start repeats (the failover that read sequence 2 instead of 202)", () => {
    expect(judgeMessage(startPosition(202), 2, 1)).toEqual({ kind: "repeat" });
    expect(judgeMessage({ delivered: 400, consumerSeq: 0 }, 400, 1)).toEqual({ kind: "repeat" });
  });

  it("drops a message after a consumer sequence was skipped, and one from a consumer that started over", () => {
    expect(judgeMessage({ delivered: 204, consumerSeq: 2 }, 208, 4)).toEqual({ kind: "gap" });
    expect(judgeMessage({ delivered: 204, consumerSeq: 2 }, 206, 1)).toEqual({ kind: "gap" });
    expect(judgeMessage({ delivered: 204, consumerSeq: 0 }, 206, 2)).toEqual({ kind: "gap" });
  });

  it("after a drop goes on with the next consumer exactly where it was: nothing repeated, nothing skipped", () => {
    const r = read(202, [
      [202, 1],
      [204, 2],
      // The consumer is lost; the new one was started at the stream's start by a recovering replica.
      "new consumer",
      [2, 1],
      // The one after it starts at 205 as asked.
      [206, 1],
      [208, 2],
    ]);
    expect(r.delivered).toEqual([202, 204, 206, 208]);
    expect(r.dropped).toEqual(["2:repeat"]);
  });

  it("refuses malformed sequences as gaps or repeats", () => {
    expect(judgeMessage(startPosition(1), 5, Number.NaN).kind).toBe("gap");
    expect(judgeMessage(startPosition(1), Number.NaN, 1).kind).toBe("repeat");
    expect(judgeMessage(startPosition(1), 1.5, 1).kind).toBe("repeat");
  });
});

describe("a new consumer's start", () => {
  it("is read when it starts where asked", () => {
    expect(judgeStart(202, 202)).toBe("ok");
  });

  it("is replaced when it starts earlier: it would repeat what was delivered", () => {
    expect(judgeStart(202, 1)).toBe("retry");
    expect(judgeStart(202, 150)).toBe("retry");
    expect(judgeStart(202, Number.NaN)).toBe("retry");
  });

  it("when it starts later, is read only if the stream holds nothing in between", () => {
    expect(judgeStart(202, 300)).toBe("check");
    expect(judgeStart(202, 300, 300)).toBe("ok");
    expect(judgeStart(202, 300, 450)).toBe("ok");
    expect(judgeStart(202, 300, 1)).toBe("retry");
    expect(judgeStart(202, 300, 250)).toBe("retry");
  });
});

describe("pauses and lost consumers", () => {
  it("pauses 100 ms doubling to 2 s between attempts to create a consumer", () => {
    expect([0, 1, 2, 3, 4, 5, 50].map(resumePauseMs)).toEqual([100, 200, 400, 800, 1600, 2000, 2000]);
  });

  it("gives a consumer up only while waiting for a message, after a stall without messages or heartbeats", () => {
    expect(consumerLost(100_000, undefined, 0, 8000)).toBe(false);
    expect(consumerLost(100_000, 95_000, 0, 8000)).toBe(false);
    expect(consumerLost(100_000, 91_000, 0, 8000)).toBe(true);
    // A heartbeat 3 s ago: the consumer is alive, however long the wait.
    expect(consumerLost(100_000, 50_000, 97_000, 8000)).toBe(false);
    expect(consumerLost(100_000, 50_000, 91_999, 8000)).toBe(true);
  });

  it("gives a consumer up when a heartbeat that came while the reader waited names messages that never reached it", () => {
    const position: ReadPosition = { delivered: 3495, consumerSeq: 307 };
    // The consumer sent through 931; the reader has 307 and waits: 624 were lost with a connection.
    expect(lostInFlight(position, 10_000, { consumerSeq: 931, at: 12_000 })).toBe(true);
    // Everything sent reached it.
    expect(lostInFlight(position, 10_000, { consumerSeq: 307, at: 12_000 })).toBe(false);
    // Not waiting (it is handling a message; more may be queued), no heartbeat yet, or a heartbeat
    // from before the wait began (the messages it names may have arrived since).
    expect(lostInFlight(position, undefined, { consumerSeq: 931, at: 12_000 })).toBe(false);
    expect(lostInFlight(position, 10_000, undefined)).toBe(false);
    expect(lostInFlight(position, 10_000, { consumerSeq: 931, at: 9_000 })).toBe(false);
    expect(lostInFlight(position, 10_000, { consumerSeq: Number.NaN, at: 12_000 })).toBe(false);
  });
});

describe("listings", () => {
  it("are current when the stream's leader held nothing of the filter after the last listed sequence when they began", () => {
    expect(listingCurrent(340, undefined, 500)).toBe(true);
    expect(listingCurrent(0, undefined, 500)).toBe(true);
    // The consumer's copy was behind (or empty): the leader held a later message already.
    expect(listingCurrent(340, 341, 500)).toBe(false);
    expect(listingCurrent(0, 12, 500)).toBe(false);
    expect(listingCurrent(340, 500, 500)).toBe(false);
    // A write that landed while the listing ran does not make it wrong: no listing again for it.
    expect(listingCurrent(340, 501, 500)).toBe(true);
  });

  it("start over when a subject comes twice (the consumer was re-created mid-way)", () => {
    const listed = new Set(["$KV.b.0.a", "$KV.b.0.b"]);
    expect(listingStep(listed, "$KV.b.0.c")).toBe("keep");
    expect(listingStep(listed, "$KV.b.0.a")).toBe("redo");
  });
});
