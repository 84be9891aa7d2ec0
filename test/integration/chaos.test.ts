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
    expect(result, lines.join("\n")).toMatchObject({ workerKills: 2, supervisorKills: 1, natsRestarts: 1, missing: 0, duplicated: 0, exact: true });
    expect(result.actual).toBe(result.expected);
  }, 300_000);
});
