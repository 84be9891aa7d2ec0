/**
 * A job that keeps failing is restarted with growing delays, then given up on: its sink subject
 * is captured by no stream, so every attempt fails at the first publish. The supervisor waits
 * longer before each new generation, records every restart's cause in `<job>.status`, and after
 * more restarts than the pipeline's restart strategy allows marks the job FAILED and takes its
 * actors away. Once the stream exists, `eddy start` runs it again from its last checkpoint, and
 * its output is exactly that of an uninterrupted run.
 */
import { execFileSync } from "node:child_process";
import { resolve } from "node:path";
import { describe, expect, it } from "vitest";
import { Kvm } from "@nats-io/kv";
import { startSupervisor } from "../../runtime/supervisor/supervisor.ts";
import { startWorker } from "../../runtime/actor/worker.ts";
import { ensureStream, publishAll } from "../../runtime/nats/streams.ts";
import { requestEndOfInput, resumeFailedJob } from "../../runtime/nats/control.ts";
import { assignmentKey, JOBS_BUCKET, statusKey, type Assignment, type JobStatusRecord } from "../../runtime/core/protocol.ts";
import { generatePageViews } from "../../functions/pageviews/events.ts";
import { expectExactPageviews } from "../support/pageviews-output.ts";
import { pageviewsPipeline } from "../../functions/pageviews/pipeline.ts";
import { listJobViews } from "../../runtime/nats/job-views.ts";
import { jobStatus } from "../../runtime/cli/status.ts";
import { scalingLag } from "../../runtime/supervisor/job-metrics.ts";
import { connect, natsServer } from "../support/nats-server.ts";

const eddy = (url: string, ...args: string[]) => execFileSync(process.execPath, [resolve(import.meta.dirname, "../../runtime/cli/main.mjs"), ...args, "--nats", url], { encoding: "utf8" });

const decoder = new TextDecoder();
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe("restart strategy", () => {
  it("backs a failing job off, marks it FAILED with the cause recorded, and runs it exactly once it is started again", async () => {
    await using server = await natsServer();
    const nc = await connect(server);
    const supLog: string[] = [];
    await ensureStream(nc, "PAGEVIEWS", ["pageviews.>"]);
    const supervisor = await startSupervisor(nc, { checkpointIntervalMs: 200, log: (l) => void supLog.push(l) });
    // Delays 300, 600, 1200, 2000 ms; the fifth failure within a minute fails the job.
    const strategy = { initialDelayMs: 300, multiplier: 2, maxDelayMs: 2000, maxFailures: 4, windowMs: 60_000 };
    const worker = await startWorker(nc, { ...pageviewsPipeline(), restartStrategy: strategy });
    try {
      const jobs = await new Kvm(nc).open(JOBS_BUCKET);
      const read = async <T>(key: string) => {
        const e = await jobs.get(key);
        return e === null || e.length === 0 ? undefined : (JSON.parse(decoder.decode(e.value)) as T);
      };
      const messages = generatePageViews({ seed: 3, events: 3000 });
      await publishAll(nc, messages.slice(0, 2000).map((m) => ({ subject: "pageviews.site", data: m.payload })));

      // When each generation was first seen, until the job is FAILED.
      const seenAt = new Map<number, number>();
      let status: JobStatusRecord | undefined;
      const deadline = Date.now() + 60_000;
      while (Date.now() < deadline) {
        const a = await read<Assignment>(assignmentKey("pageviews"));
        if (a !== undefined && !seenAt.has(a.generation)) seenAt.set(a.generation, Date.now());
        status = await read<JobStatusRecord>(statusKey("pageviews"));
        if (status?.state === "FAILED") break;
        await sleep(25);
      }
      const context = supLog.join("\n");
      expect(status, context).toMatchObject({ state: "FAILED", generation: 5, restarts: 4 });
      // Not a restart every poll: each generation came at least its backoff delay after the previous one.
      const times = [...seenAt.entries()].sort((a, b) => a[0] - b[0]).map(([, t]) => t);
      expect(times, context).toHaveLength(5);
      const gaps = times.slice(1).map((t, i) => t - times[i]!);
      [300, 600, 1200, 2000].forEach((delay, i) => expect(gaps[i], `gaps ${gaps.join(", ")}\n${context}`).toBeGreaterThanOrEqual(delay - 50));
      // Every cause names what is wrong and where.
      expect(status!.recentRestarts).toHaveLength(5);
      for (const r of [...status!.recentRestarts, status!.lastException!, status!.failed!.cause]) {
        expect(r.reason, context).toMatch(/no stream captures subject results\.pageviews\.(windows|late)/);
        expect(r.reason).not.toMatch(/^[^(]*jetstream is not enabled/);
        expect(["window-results", "late-events"]).toContain(r.function);
        expect(r.partition).toBeTypeOf("number");
        expect(r.worker).toBe(worker.id);
      }
      expect(status!.failed!.cause.reason).toMatch(/failure 5 within 60 s, more than the 4 allowed/);
      // FAILED stays FAILED: no owners, the worker runs none of its actors, no new generation.
      const failed = (await read<Assignment>(assignmentKey("pageviews")))!;
      expect(failed.owners).toEqual({});
      await sleep(1500);
      expect(worker.actors()).toHaveLength(0);
      expect((await read<Assignment>(assignmentKey("pageviews")))!.generation).toBe(5);
      expect((await read<JobStatusRecord>(statusKey("pageviews")))!.state).toBe("FAILED");

      // eddy status, checkpoints and ls show the FAILED job, what failed, where and when.
      const shown = await jobStatus(server.url, "pageviews");
      expect(shown).toMatchObject({ state: "FAILED", mode: "pipeline", generation: 5, restarts: 4, failure: { function: expect.any(String), worker: worker.id } });
      // The restart history as the supervisor keeps it (the console lists it), oldest first.
      expect(shown.recentRestarts).toEqual(status!.recentRestarts);
      const statusText = eddy(server.url, "status", "pageviews");
      expect(statusText).toMatch(/^job pageviews: run with --pipeline \(not deployed\), generation 5, last checkpoint/);
      expect(statusText).toMatch(/^state FAILED, 4 restarts after failures$/m);
      expect(statusText).toMatch(/^failed: (window-results|late-events)\/\d+ on \S+, \d{4}-\d\d-\d\d [\d:.]+ \([\d.]+ s ago\): actor .* no stream captures subject results\.pageviews\./m);
      expect(eddy(server.url, "checkpoints", "pageviews")).toMatch(/^state FAILED, 4 restarts after failures$/m);
      expect((await listJobViews(nc)).map((v) => [v.job, v.state, v.mode])).toEqual([["pageviews", "FAILED", "pipeline"]]);
      expect(eddy(server.url, "ls")).toMatch(/^pageviews\s+pipeline\s+-\s+FAILED\s+5\s+4\s/m);
      // Input that arrives meanwhile waits, and wakes no worker: KEDA's figure leaves a FAILED job out.
      await publishAll(nc, messages.slice(2000, 2100).map((m) => ({ subject: "pageviews.site", data: m.payload })));
      const scaling = await scalingLag(nc);
      expect(scaling.jobs).toMatchObject([{ job: "pageviews", failed: true }]);
      expect(scaling.jobs[0]!.lag).toBeGreaterThan(0);
      expect(scaling.lag).toBe(0);

      // Fix the cause, then `eddy start`.
      await ensureStream(nc, "RESULTS", ["results.>"]);
      expect(await resumeFailedJob(nc, "pageviews")).toMatchObject({ cause: { function: expect.any(String) } });
      const actors = worker.graph.functions.reduce((n, f) => n + f.partitions, 0);
      await worker.running(actors, 6);
      await publishAll(nc, messages.slice(2100).map((m) => ({ subject: "pageviews.site", data: m.payload })));
      await requestEndOfInput(nc, "pageviews");
      await worker.finished();
      // The status follows at the supervisor's next polls.
      let after = (await read<JobStatusRecord>(statusKey("pageviews")))!;
      for (let i = 0; i < 100 && after.state !== "FINISHED"; i++) {
        await sleep(100);
        after = (await read<JobStatusRecord>(statusKey("pageviews")))!;
      }
      expect(after, supLog.join("\n")).toMatchObject({ state: "FINISHED", generation: 6, restarts: 0 });
      expect(await resumeFailedJob(nc, "pageviews")).toBeUndefined();

      await expectExactPageviews(nc, messages, { deadLetters: false });

      // Stopped at a checkpoint, then its spec removed as `eddy stop` does: STOPPED, listed with --all only.
      const stop = await supervisor.triggerCheckpoint("pageviews", { stop: true });
      expect(stop.status).toBe("committed");
      await worker.stop();
      await jobs.delete("pageviews.spec");
      const stopped = await jobStatus(server.url, "pageviews");
      expect(stopped).toMatchObject({ state: "STOPPED", mode: "none", lastCheckpoint: { id: stop.id, stop: true } });
      expect(stopped.partitions.map((p) => `${p.function}/${p.partition}`)).toHaveLength(actors);
      expect(await listJobViews(nc)).toEqual([]);
      expect((await listJobViews(nc, { all: true })).map((v) => [v.job, v.state])).toEqual([["pageviews", "STOPPED"]]);
      expect(eddy(server.url, "ls", "--all")).toMatch(/^pageviews\s+-\s+-\s+STOPPED\s/m);
      expect(eddy(server.url, "checkpoints", "pageviews")).toMatch(new RegExp(`^state STOPPED, 0 restarts after failures at checkpoint ${stop.id}$`, "m"));
    } finally {
      await worker.stop();
      await supervisor.stop();
      await nc.close();
    }
  }, 120_000);
});
