/**
 * How many messages one pull of `readAll` asks for (runtime/nats/streams.ts): few enough that what
 * is in flight stays near 8 MiB, which nats-server's per-client buffer takes with room to spare.
 */
import { describe, expect, it } from "vitest";
import { readAllBatch } from "../../../runtime/nats/streams.ts";

describe("a readAll pull", () => {
  it("asks for 1 024 small messages", () => {
    expect(readAllBatch(100 * 1000, 1000, 1024 * 1024)).toBe(1024);
  });

  it("asks for about 8 MiB of large ones (a thousand 30 kB sink batches: 279, not all)", () => {
    expect(readAllBatch(931 * 30_000, 931, 1024 * 1024)).toBe(279);
  });

  it("asks for at least as many of the server's largest messages as fit in 8 MiB", () => {
    // Averages of 10 MiB (beyond the default limit: as if the server allowed it) and 1 MiB.
    expect(readAllBatch(10 * 1024 * 1024 * 1024, 1024, 1024 * 1024)).toBe(8);
    expect(readAllBatch(10 * 1024 * 1024 * 1024, 1024, 8 * 1024 * 1024)).toBe(1);
    expect(readAllBatch(1024 * 1024 * 1024, 1024, 64 * 1024)).toBe(128);
  });

  it("takes a stream that reports no bytes or no messages as one of small ones", () => {
    expect(readAllBatch(0, 0, undefined)).toBe(1024);
    expect(readAllBatch(0, 10, undefined)).toBe(1024);
  });
});
