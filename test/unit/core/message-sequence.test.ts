/**
 * Per-producer message numbers (core/message-sequence.ts): each producer run numbers its messages
 * to a partition from 1, and the consumer finds a message that never arrived at the next one.
 */
import { describe, expect, it } from "vitest";
import { ProducerSequences } from "../../../runtime/core/message-sequence.ts";

describe("ProducerSequences", () => {
  it("takes each producer's messages 1, 2, 3… whatever the others send in between", () => {
    const s = new ProducerSequences();
    const seen = [
      s.observe("a/0", "1.0", 1),
      s.observe("b/0", "1.0", 1),
      s.observe("a/0", "1.0", 2),
      s.observe("a/0", "1.0", 3),
      s.observe("b/0", "1.0", 2),
    ];
    expect(seen.every((v) => v.kind === "next")).toBe(true);
  });

  it("finds a message that never arrived, and a message that came twice, at the next one", () => {
    const s = new ProducerSequences();
    s.observe("a/0", "1.0", 1);
    expect(s.observe("a/0", "1.0", 3)).toEqual({ kind: "gap", expected: 2 });
    const t = new ProducerSequences();
    t.observe("a/0", "1.0", 1);
    t.observe("a/0", "1.0", 2);
    expect(t.observe("a/0", "1.0", 2)).toEqual({ kind: "gap", expected: 3 });
  });

  it("says where the producer's previous message of the run was read, when the reader said", () => {
    const s = new ProducerSequences();
    s.observe("a/0", "1.0", 1, 10);
    s.observe("a/0", "1.0", 2, 33);
    expect(s.observe("a/0", "1.0", 4, 53)).toEqual({ kind: "gap", expected: 3, previousAt: 33 });
    // Not for another run's message, nor when the sequence was not given.
    s.observe("b/0", "1.0", 1, 40);
    expect(s.observe("b/0", "2.0", 2, 60)).toEqual({ kind: "gap", expected: 1 });
    const t = new ProducerSequences();
    t.observe("a/0", "1.0", 1);
    expect(t.observe("a/0", "1.0", 3)).toEqual({ kind: "gap", expected: 2 });
  });

  it("starts over at 1 for a producer's next run (a generation or a handoff), and only there", () => {
    const s = new ProducerSequences();
    s.observe("a/0", "1.0", 1);
    s.observe("a/0", "1.0", 2);
    expect(s.observe("a/0", "2.0", 1)).toEqual({ kind: "next" });
    expect(s.observe("a/0", "2.1", 1)).toEqual({ kind: "next" });
    // A new run seen first at 3: its first two messages never arrived.
    expect(s.observe("b/0", "2.0", 3)).toEqual({ kind: "gap", expected: 1 });
  });

  it("does not check a message without a number (a producer from before numbers)", () => {
    const s = new ProducerSequences();
    expect(s.observe("a/0", "1.0", NaN)).toEqual({ kind: "next" });
    expect(s.observe("a/0", "1.0", 1)).toEqual({ kind: "next" });
    expect(s.observe("a/0", "1.0", NaN)).toEqual({ kind: "next" });
    expect(s.observe("a/0", "1.0", 2)).toEqual({ kind: "next" });
  });
});
