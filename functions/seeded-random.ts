/**
 * A tiny seeded pseudo-random generator (mulberry32) for test data and fault schedules: the same
 * seed always gives the same sequence, so generated inputs and chaos runs are reproducible. Also
 * a Zipf sampler over it, for skewed keys (a few hot ones and a long tail).
 */

/** Returns a function yielding numbers in [0, 1), determined by `seed`. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Returns a function yielding indexes in [0, n) drawn from Zipf(s = 1), by inverting the cumulative weights. */
export function zipfSampler(n: number, random: () => number): () => number {
  const cdf = new Float64Array(n);
  let sum = 0;
  for (let i = 0; i < n; i++) cdf[i] = sum += 1 / (i + 1);
  return () => {
    const x = random() * sum;
    let lo = 0;
    let hi = n - 1;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (cdf[mid]! < x) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  };
}
