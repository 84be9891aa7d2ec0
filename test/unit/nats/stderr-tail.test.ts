/**
 * What a failed nats-server's stderr shows (local-server.ts `StderrTail`): its last lines, and
 * the head of a Go crash report, which the goroutine dump after it would push out of the tail.
 */
import { describe, expect, it } from "vitest";
import { StderrTail } from "../../../runtime/nats/local-server.ts";

describe("StderrTail", () => {
  it("keeps the last lines of what the server wrote, across chunk boundaries", () => {
    const t = new StderrTail();
    t.push("one\ntw");
    t.push("o\nthree");
    expect(t.text()).toBe("one\ntwo\nthree");
    for (let i = 0; i < 100; i++) t.push(`line ${i}\n`);
    expect(t.text().split("\n")).toEqual(Array.from({ length: 12 }, (_, i) => `line ${88 + i}`));
  });

  it("keeps the head of a crash report before the tail of its goroutine dump", () => {
    const t = new StderrTail();
    t.push("[1] starting\nfatal error: concurrent map writes\n\ngoroutine 42 [running]:\n");
    for (let i = 0; i < 200; i++) t.push(`\tframe ${i}\n`);
    const lines = t.text().split("\n");
    expect(lines[0]).toBe("fatal error: concurrent map writes");
    expect(lines).toContain("goroutine 42 [running]:");
    expect(lines.at(-1)).toBe("\tframe 199");
  });
});
