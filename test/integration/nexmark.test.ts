/**
 * Every Nexmark query on eddy over a real nats-server gives exactly the rows of its reference
 * model (compared as multisets), on events spread over enough event time for many windows,
 * auction closings and sessions — with one event per message, and with batched ingest (100
 * events per JSON-lines message, design note ce), which must not change a single row.
 */
import { describe, expect, it } from "vitest";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { generateEvents } from "../../functions/nexmark/generator.ts";
import { benchQuery, canonicalRows, median, runQuery } from "../../functions/nexmark/harness.ts";
import { QUERIES } from "../../functions/nexmark/model.ts";
import { assertNoLateEvents, referenceResults } from "../../functions/nexmark/reference.ts";
import { WATERMARK_BOUND_MS } from "../../functions/nexmark/queries.ts";
import { natsServer } from "../support/nats-server.ts";
import { runEddy } from "../support/cli.ts";

// 4 000 events at 200 events/s span 20 s of event time: several tumbling and sliding windows.
const events = [...generateEvents({ seed: 3, firstEventRate: 200 }, 4000)];

describe("Nexmark queries on eddy", () => {
  it("uses input without late events, so every result is fixed by the input alone", () => {
    expect(() => assertNoLateEvents(events, WATERMARK_BOUND_MS)).not.toThrow();
  });

  for (const q of QUERIES) {
    it(`${q} matches its reference model`, async () => {
      await using server = await natsServer();
      const rows = await runQuery(q, events, server.url);
      const expected = referenceResults(q, events);
      expect(expected.length).toBeGreaterThan(0);
      expect(canonicalRows(rows)).toEqual(canonicalRows(expected));
    });
  }
});

describe("Nexmark queries on eddy with batched ingest", () => {
  for (const q of QUERIES) {
    it(`${q} gives the same rows from batches of 100 events per message`, async () => {
      await using server = await natsServer();
      const rows = await runQuery(q, events, server.url, "batched");
      expect(canonicalRows(rows)).toEqual(canonicalRows(referenceResults(q, events)));
    });
  }

  it("eddy nexmark bench --ingest batched reports the same figures, its run checked against the reference", async () => {
    await using server = await natsServer();
    const result = await benchQuery("q1", 3000, 5, server.url, 10_000, "batched");
    expect(result).toMatchObject({ query: "q1", ingest: "batched", events: 3000, correct: true });
    for (const k of ["wallSeconds", "cpuSeconds", "eventsPerSecond", "eventsPerCoreSecond", "ceilingEventsPerCoreSecond"] as const) expect(result[k]).toBeGreaterThan(0);
  });

  it("EDDY_CPU_PROFILE=<file> writes a CPU profile of the timed part, no longer than it", async () => {
    await using server = await natsServer();
    const dir = mkdtempSync(join(tmpdir(), "eddy-profile-"));
    const file = join(dir, "q0.cpuprofile");
    process.env.EDDY_CPU_PROFILE = file;
    try {
      const result = await benchQuery("q0", 2000, 5, server.url, 10_000);
      expect(result.correct).toBe(true);
      const profile = JSON.parse(readFileSync(file, "utf8")) as { nodes: unknown[]; samples: number[]; startTime: number; endTime: number };
      expect(profile.nodes.length).toBeGreaterThan(1);
      expect(profile.samples.length).toBeGreaterThan(0);
      // Microseconds; started after the clock and stopped right after it was read.
      expect(profile.endTime - profile.startTime).toBeLessThanOrEqual(result.wallSeconds * 1e6 + 100_000);
    } finally {
      delete process.env.EDDY_CPU_PROFILE;
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("eddy nexmark bench --rounds", () => {
  it("runs the query once per round, each run followed by a ceiling pass, and reports the medians", async () => {
    await using server = await natsServer();
    const result = await benchQuery("q2", 2000, 5, server.url, 10_000, "single", 3);
    expect(result.correct).toBe(true);
    expect(result.rounds).toHaveLength(3);
    for (const r of result.rounds!) {
      // Every round is a whole run of its own, checked against the reference on its own.
      expect(r.correct).toBe(true);
      for (const k of ["wallSeconds", "cpuSeconds", "eventsPerCoreSecond", "ceilingEventsPerCoreSecond", "ceilingRatio"] as const) expect(r[k]).toBeGreaterThan(0);
      expect(r.ceilingRatio).toBeCloseTo(r.eventsPerCoreSecond / r.ceilingEventsPerCoreSecond, 2);
    }
    // Odd count: each reported figure is the middle round's.
    expect(result.cpuSeconds).toBe(median(result.rounds!.map((r) => r.cpuSeconds)));
    expect(result.wallSeconds).toBe(median(result.rounds!.map((r) => r.wallSeconds)));
    expect(result.ceilingRatio).toBeCloseTo(median(result.rounds!.map((r) => r.ceilingRatio)), 2);
  });

  it("refuses a bad round count with one line and exit 2", async () => {
    for (const args of [["--query", "q0", "--rounds", "0"], ["--query", "q0", "--rounds", "51"], ["--query", "q5", "--rounds", "2", "--baseline"]]) {
      const r = await runEddy(["nexmark", "bench", "--events", "10", ...args]);
      expect(r.code, `${args.join(" ")}: ${r.output}`).toBe(2);
      expect(r.stderr.trimEnd().split("\n"), r.stderr).toHaveLength(1);
      expect(r.stderr).toMatch(/--rounds/);
    }
  });
});

describe("median", () => {
  it("is the middle value, or the mean of the two middle ones", () => {
    expect(median([3])).toBe(3);
    expect(median([5, 1, 3])).toBe(3);
    expect(median([4, 1, 3, 2])).toBe(2.5);
    expect(median([0.9, 0.8])).toBeCloseTo(0.85, 10);
  });
});
