/**
 * When a partly filled output batch goes out (design note cj): at once when nothing more is
 * coming and nothing to that partition awaits an acknowledgement; behind an unacknowledged
 * publish or under a backlog only when full or at the buffer timeout.
 */
import { describe, expect, it } from "vitest";
import { bufferTimeoutProblem, flushNow, MAX_BUFFER_TIMEOUT_MS } from "../../../runtime/core/output-flush.ts";

const batch = { buffered: 3, waitedMs: 0, inFlight: false, inputIdle: false };

describe("flushNow", () => {
  it("sends a batch at once when the input is idle and no publish to its partition is in flight", () => {
    expect(flushNow({ ...batch, inputIdle: true }, 5)).toBe(true);
  });

  it("lets records gather behind an unacknowledged publish while the timeout allows", () => {
    expect(flushNow({ ...batch, inputIdle: true, inFlight: true, waitedMs: 4.9 }, 5)).toBe(false);
    expect(flushNow({ ...batch, inputIdle: true, inFlight: true, waitedMs: 5 }, 5)).toBe(true);
  });

  it("under a backlog fills the batch until the buffer timeout, acknowledged or not", () => {
    expect(flushNow({ ...batch, waitedMs: 4 }, 5)).toBe(false);
    expect(flushNow({ ...batch, waitedMs: 6 }, 5)).toBe(true);
    expect(flushNow({ ...batch, waitedMs: 99 }, 100)).toBe(false);
  });

  it("with a buffer timeout of 0 sends whatever is buffered whenever asked", () => {
    expect(flushNow({ ...batch, inFlight: true }, 0)).toBe(true);
  });

  it("never sends an empty batch", () => {
    expect(flushNow({ buffered: 0, waitedMs: 1e9, inFlight: false, inputIdle: true }, 0)).toBe(false);
  });
});

describe("bufferTimeoutProblem", () => {
  it("accepts 0 to a minute", () => {
    for (const ok of [0, 0.5, 5, 100, MAX_BUFFER_TIMEOUT_MS]) expect(bufferTimeoutProblem(ok)).toBeUndefined();
  });

  it("refuses what is not a duration in range, naming the value", () => {
    for (const bad of [-1, MAX_BUFFER_TIMEOUT_MS + 1, Number.NaN, Infinity, "5", null, undefined, {}]) {
      expect(bufferTimeoutProblem(bad)).toMatch(/^bufferTimeoutMs must be a number of milliseconds from 0 to 60000, got /);
    }
    expect(bufferTimeoutProblem("5")).toContain('got "5"');
  });
});
