import { describe, expect, it } from "vitest";
import { seededRandom, zipfSampler } from "../../../functions/seeded-random.ts";

describe("zipfSampler", () => {
  it("draws indexes in [0, n), the same ones for the same seed", () => {
    const a = zipfSampler(1000, seededRandom(5));
    const b = zipfSampler(1000, seededRandom(5));
    const xs = Array.from({ length: 2000 }, () => a());
    expect(xs).toEqual(Array.from({ length: 2000 }, () => b()));
    expect(xs.every((x) => Number.isInteger(x) && x >= 0 && x < 1000)).toBe(true);
  });

  it("draws index i about 1/(i+1) as often as index 0 (s = 1)", () => {
    const n = 100;
    const draw = zipfSampler(n, seededRandom(9));
    const counts = new Array<number>(n).fill(0);
    const draws = 200_000;
    for (let i = 0; i < draws; i++) counts[draw()]!++;
    let harmonic = 0;
    for (let i = 1; i <= n; i++) harmonic += 1 / i;
    // Expected share of index i is 1 / ((i + 1) * H(n)); within 0.005 of it (sampling noise).
    for (const i of [0, 1, 4, 9]) expect(counts[i]! / draws).toBeCloseTo(1 / ((i + 1) * harmonic), 2);
    expect(counts[0]!).toBeGreaterThan(counts[1]!);
    expect(counts[1]!).toBeGreaterThan(counts[9]!);
  });
});
