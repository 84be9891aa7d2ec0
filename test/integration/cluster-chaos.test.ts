/**
 * The reduced chaos run on a 3-node JetStream cluster (issue 13): while two jobs with exactly-once
 * sinks run, worker processes are SIGKILLed, the active supervisor is killed, and two
 * nats-servers are SIGKILLed one after the other — the leader of the source stream, then the
 * leader of the jobs bucket — each restarted with its store two seconds later. Every expected
 * output record must be there exactly once. The longer runs (three server losses, a server
 * restarted with an empty store) are `npm run chaos -- --nats-cluster 3 …`; results in
 * docs/reliability.md.
 */
import { describe, expect, it } from "vitest";
import { runChaos } from "../chaos/run-chaos.ts";

describe("chaos on a 3-node cluster", () => {
  it("loses nothing and duplicates nothing while workers, the supervisor and the leaders of the source stream and the jobs bucket fail", async () => {
    const lines: string[] = [];
    const result = await runChaos({ seed: 9, events: 10_000, kills: 2, publishSeconds: 12, timeoutSeconds: 300, natsCluster: 3, natsRestarts: 2, log: (l) => lines.push(l) });
    expect(result, lines.join("\n")).toMatchObject({ workerKills: 2, supervisorKills: 1, natsRestarts: 2, missing: 0, duplicated: 0, deadLettered: 0, exact: true });
    expect(result.natsLosses?.map((l) => [l.role, l.emptyStore]), lines.join("\n")).toEqual([
      ["source-leader", false],
      ["jobs-leader", false],
    ]);
    expect(result.actual).toBe(result.expected);
  }, 360_000);
});
