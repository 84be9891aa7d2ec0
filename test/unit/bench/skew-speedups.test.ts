import { describe, expect, it } from "vitest";
import { medianSpeedups, skewSpeedups, type SkewRun } from "../../bench/skew.ts";

/** A run with only the figures the ratios read. */
const run = (mode: string, eventsPerSecond: number, afterStart: number | null = null, afterFirstRecord: number | null = null): SkewRun =>
  ({ mode, eventsPerSecond, eventsPerSecondAfterStart: afterStart, eventsPerSecondAfterFirstRecord: afterFirstRecord }) as SkewRun;

describe("the skew benchmark's ratios", () => {
  it("compare the fastest optimised run of a round with its plain run", () => {
    const s = skewSpeedups([run("plain", 50_000, 60_000, 55_000), run("local", 110_000, 150_000, 121_000), run("split-16", 40_000, 45_000, 42_000)]);
    expect(s).toEqual({ speedup: 2.2, speedupAfterStart: 2.5, speedupAfterFirstRecord: 2.2 });
  });

  it("are unknown without a plain run, without another mode, or without the plain run's figure", () => {
    expect(skewSpeedups([run("local", 100_000)]).speedup).toBeNull();
    expect(skewSpeedups([run("plain", 100_000)]).speedup).toBeNull();
    expect(skewSpeedups([run("plain", 50_000, null), run("local", 100_000, 120_000)]).speedupAfterStart).toBeNull();
  });

  it("over several rounds are the median of each round's own ratio, leaving out unknown ones", () => {
    const rounds = [
      { speedup: 1.6, speedupAfterStart: 2.4, speedupAfterFirstRecord: null },
      { speedup: 2.1, speedupAfterStart: 1.9, speedupAfterFirstRecord: 2.0 },
      { speedup: 1.9, speedupAfterStart: 2.2, speedupAfterFirstRecord: 1.8 },
    ];
    expect(medianSpeedups(rounds)).toEqual({ speedup: 1.9, speedupAfterStart: 2.2, speedupAfterFirstRecord: 1.9 });
    expect(medianSpeedups([]).speedup).toBeNull();
  });
});
