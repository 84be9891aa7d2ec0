/**
 * `--state-cache-mb` and `$EDDY_STATE_CACHE_MB`: how much memory a worker gives actor state
 * (design note bf), and what it refuses.
 */
import { describe, expect, it } from "vitest";
import { checkStateCacheMb, UsageError } from "../../../runtime/cli/run.ts";
import { stateCacheBudgetOf, stateCacheMbFromEnv } from "../../../runtime/actor/worker.ts";
import { DEFAULT_STATE_CACHE_MB, StateCacheBudget } from "../../../runtime/core/state-cache.ts";

describe("the state cache budget of a worker", () => {
  it("is 256 MiB unless $EDDY_STATE_CACHE_MB holds a positive number (fractions allowed)", () => {
    expect(DEFAULT_STATE_CACHE_MB).toBe(256);
    expect(stateCacheMbFromEnv({})).toBe(256);
    expect(stateCacheMbFromEnv({ EDDY_STATE_CACHE_MB: "64" })).toBe(64);
    expect(stateCacheMbFromEnv({ EDDY_STATE_CACHE_MB: "0.5" })).toBe(0.5);
    for (const bad of ["", " ", "0", "-1", "lots", "NaN", "Infinity"]) expect(stateCacheMbFromEnv({ EDDY_STATE_CACHE_MB: bad })).toBe(256);
  });

  it("comes from the option in MiB, or is the one given to share", () => {
    expect(stateCacheBudgetOf({ stateCacheMb: 2 }).totalBytes).toBe(2 * 1024 * 1024);
    const shared = new StateCacheBudget(1000);
    expect(stateCacheBudgetOf({ stateCache: shared, stateCacheMb: 2 })).toBe(shared);
  });

  it("--state-cache-mb must be more than 0", () => {
    expect(checkStateCacheMb(undefined)).toBeUndefined();
    expect(checkStateCacheMb(0.25)).toBe(0.25);
    expect(() => checkStateCacheMb(0)).toThrow(UsageError);
    expect(() => checkStateCacheMb(-3)).toThrow("--state-cache-mb must be a number of MiB > 0");
  });
});
