/**
 * The heap growth bound a worker sets (runtime/process/heap-growth.ts): set unless the process
 * was started with its own.
 */
import { describe, expect, it } from "vitest";
import { heapGrowthFlag, WORKER_HEAP_GROWING_PERCENT } from "../../../runtime/process/heap-growth.ts";

describe("heapGrowthFlag", () => {
  it("bounds the heap growth of a process started without a bound", () => {
    expect(heapGrowthFlag([])).toBe(`--heap-growing-percent=${WORKER_HEAP_GROWING_PERCENT}`);
    expect(heapGrowthFlag(["--max-old-space-size=512", "--enable-source-maps"], 40)).toBe("--heap-growing-percent=40");
  });

  it("leaves a bound given on the command line alone", () => {
    expect(heapGrowthFlag(["--heap-growing-percent=100"])).toBeUndefined();
    expect(heapGrowthFlag(["--heap_growing_percent=5"])).toBeUndefined();
  });
});
