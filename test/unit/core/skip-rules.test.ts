import { describe, expect, it } from "vitest";
import { judgeMessageRun } from "../../../runtime/core/skip-rules.ts";

const running = { generation: 3, incarnation: 1, restoredFrom: 10 };

describe("judgeMessageRun: which messages of another function an actor handles", () => {
  it("handles a message of its own generation and incarnation, after the restored checkpoint", () => {
    expect(judgeMessageRun(3, 11, 1, running)).toBe("current");
    expect(judgeMessageRun(3, 11, 2, running)).toBe("current");
  });

  it("skips epochs the restored snapshot covers", () => {
    expect(judgeMessageRun(3, 10, 1, running)).toBe("stale");
    expect(judgeMessageRun(3, 1, 1, running)).toBe("stale");
  });

  it("skips older generations and earlier incarnations of its own: the failed attempt's output comes again", () => {
    expect(judgeMessageRun(2, 50, 9, running)).toBe("stale");
    expect(judgeMessageRun(3, 50, 0, running)).toBe("stale");
  });

  it("tells a newer generation apart: the actor is being replaced", () => {
    expect(judgeMessageRun(4, 1, 0, running)).toBe("ahead");
  });

  it("refuses headers that are missing or not integers", () => {
    expect(judgeMessageRun(Number(undefined), 11, 1, running)).toBe("invalid");
    expect(judgeMessageRun(3, Number("x"), 1, running)).toBe("invalid");
    expect(judgeMessageRun(3.5, 11, 1, running)).toBe("invalid");
  });

  it("takes an incarnation that is not a number as no earlier incarnation", () => {
    expect(judgeMessageRun(3, 11, Number("x"), running)).toBe("current");
  });
});
