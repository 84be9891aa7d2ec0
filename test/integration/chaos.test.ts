/**
 * A reduced chaos run as part of the test suite: worker processes SIGKILLed, the active
 * supervisor killed, nats-server restarted, and still every expected output record exactly once.
 * The full run (200k events, 10 kills) is `npm run chaos`; its result is in docs/reliability.md.
 */
import { describe, expect, it } from "vitest";
import { runChaos } from "../chaos/run-chaos.ts";

describe("chaos", () => {
  it("loses nothing and duplicates nothing while workers, the supervisor and nats-server fail", async () => {
    const lines: string[] = [];
    const result = await runChaos({ seed: 7, events: 15_000, kills: 2, publishSeconds: 12, timeoutSeconds: 240, log: (l) => lines.push(l) });
    expect(result, lines.join("\n")).toMatchObject({ workerKills: 2, supervisorKills: 1, natsRestarts: 1, missing: 0, duplicated: 0, deadLettered: 0, exact: true });
    expect(result.actual).toBe(result.expected);
  }, 300_000);

  it("also with state far larger than the workers' state cache: evicted keys are read back from KV under kills", async () => {
    const lines: string[] = [];
    // 3000 keys, Zipf: a few hot keys stay cached, the tail is evicted from a 256 KiB cache and
    // read back (corrected by the checkpoints KV does not have yet) before and after each kill. The
    // budget is split between the 8 actors with state: 32 KiB each, less than a totals partition needs.
    const result = await runChaos({ seed: 8, events: 15_000, kills: 2, publishSeconds: 12, timeoutSeconds: 240, keys: 3000, keyDistribution: "zipf", stateCacheMb: 0.25, log: (l) => lines.push(l) });
    expect(result, lines.join("\n")).toMatchObject({ workerKills: 2, supervisorKills: 1, natsRestarts: 1, missing: 0, duplicated: 0, deadLettered: 0, exact: true });
    expect(result.actual).toBe(result.expected);
  }, 300_000);
});
