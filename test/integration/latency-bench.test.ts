/**
 * The latency benchmark as `npm run bench -- latency` runs it: a short run at a low rate through
 * a real worker and supervisor, once with an at-least-once and once with an exactly-once sink.
 * It checks the JSON the benchmark prints and that every event reached the sink exactly once —
 * never how fast (speed is measured by the benchmark, not asserted by tests).
 */
import { describe, expect, it } from "vitest";
import { resolve } from "node:path";
import { ROOT, runCommand } from "../support/cli.ts";

const RUN = resolve(ROOT, "test/bench/run.ts");
const bench = (args: readonly string[], timeoutMs = 60_000) => runCommand(process.execPath, [RUN, "latency", ...args], { timeoutMs }, `bench latency ${args.join(" ")}`);

const summary = { count: expect.any(Number), p50: expect.any(Number), p99: expect.any(Number), p999: expect.any(Number), max: expect.any(Number), mean: expect.any(Number) };

describe("npm run bench -- latency", () => {
  it("reports percentiles, rates, CPU and (--gc) the worker's garbage collections for both sink deliveries, every event published by the sink exactly once", async () => {
    const r = await bench(["--rate", "500", "--seconds", "2", "--checkpoint-interval", "100", "--gc", "--json"], 600_000);
    expect(r.code, r.output).toBe(0);
    const lines = r.stdout.trim().split("\n");
    expect(lines).toHaveLength(1);
    const result = JSON.parse(lines[0]!);
    expect(result).toMatchObject({ bench: "latency", rate: 500, seconds: 2 });
    expect(result.runs.map((run: { delivery: string; checkpointIntervalMs: number }) => [run.delivery, run.checkpointIntervalMs])).toEqual([
      ["at-least-once", 100],
      ["exactly-once", 100],
    ]);
    for (const run of result.runs) {
      expect(run, run.delivery).toEqual({
        delivery: run.delivery,
        checkpointIntervalMs: 100,
        rate: 500,
        seconds: 2,
        warmupSeconds: 2,
        events: 1000,
        achievedRate: expect.any(Number),
        lateSends: expect.any(Number),
        lateSendThresholdMs: 5,
        sendLagMs: { ...summary, count: 1000 },
        publishErrors: 0,
        dropped: 0,
        arrived: 1000,
        missing: 0,
        duplicates: 0,
        latencyMs: { ...summary, count: 1000 },
        ingestMs: { ...summary, count: 1000 },
        pipelineMs: { ...summary, count: 1000 },
        p99GoalMs: run.delivery === "at-least-once" ? 50 : 200,
        p99MeetsGoal: expect.any(Boolean),
        wallSeconds: expect.any(Number),
        cpuSeconds: { worker: expect.any(Number), supervisor: expect.any(Number), natsServer: expect.any(Number), publisher: expect.any(Number) },
        sender: { cpuSeconds: expect.any(Number), cores: expect.any(Number) },
        cores: { eddy: expect.any(Number), natsServer: expect.any(Number) },
        lastCheckpointsMs: expect.any(Array),
        loadAverage: expect.any(Number),
        gc: Object.fromEntries(["minor", "major", "incremental", "weakcb"].map((k) => [k, { count: expect.any(Number), totalMs: expect.any(Number), maxMs: expect.any(Number) }])),
      });
      // Consistency, not speed: the percentiles are ordered and the run used some CPU.
      expect(run.latencyMs.p50).toBeLessThanOrEqual(run.latencyMs.p99);
      expect(run.latencyMs.p99).toBeLessThanOrEqual(run.latencyMs.p999);
      expect(run.latencyMs.p999).toBeLessThanOrEqual(run.latencyMs.max);
      expect(run.cpuSeconds.worker).toBeGreaterThan(0);
      expect(run.cpuSeconds.natsServer).toBeGreaterThan(0);
      expect(run.sender.cpuSeconds).toBeGreaterThan(0);
      expect(run.sender.cpuSeconds).toBeLessThanOrEqual(run.cpuSeconds.publisher);
      // Exactly-once output exists only after commits.
      if (run.delivery === "exactly-once") expect(run.lastCheckpointsMs.length).toBeGreaterThan(0);
    }
  }, 660_000);

  it("refuses a bad rate or delivery with one line and exit code 2, before starting anything", async () => {
    for (const args of [["--rate", "fast"], ["--delivery", "twice"], ["--checkpoint-interval", "0"]]) {
      const r = await bench(args);
      expect(r.code, args.join(" ")).toBe(2);
      expect(r.stdout).toBe("");
      expect(r.stderr.trim().split("\n"), args.join(" ")).toHaveLength(1);
    }
  }, 300_000);
});
