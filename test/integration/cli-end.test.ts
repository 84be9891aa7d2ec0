/**
 * `eddy end <job>`: a bounded run from the command line. A supervisor and a worker process run
 * test/fixtures/late-windows.ts (clicks counted in 10 s tumbling windows); `eddy end --wait` ends
 * the input at what the stream holds, the open window fires, the job becomes FINISHED, and the
 * windows equal a plain count of the clicks. The end never moves: clicks published afterwards
 * are not read, and asking again reports the end already recorded.
 */
import { describe, expect, it } from "vitest";
import { ensureStream, publishAll, readAll } from "../../runtime/nats/streams.ts";
import { requestEndOfInput } from "../../runtime/nats/control.ts";
import { ensureControlStores } from "../../runtime/nats/control-store.ts";
import { endKey, jobSpecKey } from "../../runtime/core/protocol.ts";
import { runEddy } from "../support/cli.ts";
import { connect, natsServer } from "../support/nats-server.ts";
import { startEddy, startWorkerProcess } from "../support/processes.ts";
import { waitFor } from "../support/wait.ts";

const decoder = new TextDecoder();

describe("eddy end", () => {
  it("ends a running job's input where its stream is now: every window fires, the job is FINISHED, later input is not read", async () => {
    await using server = await natsServer();
    const nc = await connect(server);
    await ensureStream(nc, "LATE_CLICKS", ["late.clicks"]);
    await ensureStream(nc, "LATE_OUT", ["late.out.>"]);
    await using supervisor = startEddy(["supervisor", "--nats", server.url, "--checkpoint-interval", "300"]);
    await using worker = startWorkerProcess("test/fixtures/late-windows.ts", server.url);
    const logs = () => `--- supervisor\n${supervisor.output()}\n--- worker\n${worker.output()}`;
    const windows = async () => (await readAll(nc, "LATE_OUT", "late.out.windows")).map((m) => JSON.parse(decoder.decode(m.data)) as { start: number; clicks: number });
    const click = (id: number, ts: number) => ({ subject: "late.clicks", data: JSON.stringify({ id, ts }) });
    try {
      // 25 clicks over 0..24 s: [0,10) and [10,20) close as the watermark passes them; [20,30) stays open.
      const clicks = Array.from({ length: 25 }, (_, i) => ({ id: i, ts: i * 1000 + (i % 3) * 100 }));
      await publishAll(nc, clicks.map((c) => click(c.id, c.ts)));
      await waitFor("the two closed windows", async () => (await windows()).length >= 2, { timeoutMs: 60_000, logs });

      const ended = await runEddy(["end", "latewin", "--wait", "--json", "--nats", server.url], { timeoutMs: 120_000 });
      expect(ended.code, `${ended.output}\n${logs()}`).toBe(0);
      const said = JSON.parse(ended.stdout) as { streams: Record<string, number>; recordedBefore: boolean; finished: { checkpoint: number } };
      expect(said).toMatchObject({ streams: { LATE_CLICKS: 25 }, recordedBefore: false, finished: { checkpoint: expect.any(Number) } });
      // Every window, the one open at the end too, once each, as a plain count says.
      const expected = new Map<number, number>();
      for (const c of clicks) expected.set(Math.floor(c.ts / 10_000) * 10_000, (expected.get(Math.floor(c.ts / 10_000) * 10_000) ?? 0) + 1);
      const fired = await windows();
      expect(fired.map((w) => [w.start, w.clicks]).sort((a, b) => a[0]! - b[0]!)).toEqual([...expected].sort((a, b) => a[0] - b[0]));
      expect((await runEddy(["status", "latewin", "--nats", server.url])).stdout).toMatch(/^state FINISHED,/m);

      // Input after the end is not read, and the end does not move when asked again.
      await publishAll(nc, [click(100, 31_000), click(101, 45_000)]);
      const again = await runEddy(["end", "latewin", "--nats", server.url]);
      expect(again.code, again.output).toBe(0);
      expect(again.stdout.trim()).toBe("latewin: input already ends at LATE_CLICKS at message 25");
      await new Promise((r) => setTimeout(r, 1_500));
      expect(await windows()).toHaveLength(fired.length);
      expect(await readAll(nc, "LATE_OUT", "late.out.late")).toHaveLength(0);
    } finally {
      await nc.close();
    }
  }, 180_000);

  it("records one end when asked several times at once, and replaces a record that does not decode", async () => {
    await using server = await natsServer();
    const nc = await connect(server);
    try {
      await ensureStream(nc, "ENDS_IN", ["ends.in"]);
      await publishAll(nc, Array.from({ length: 7 }, (_, i) => ({ subject: "ends.in", data: String(i) })));
      const { jobs } = await ensureControlStores(nc);
      await jobs.put(jobSpecKey("ends"), JSON.stringify({ job: "ends", functions: [{ name: "src", partitions: 1, isSource: true, stream: "ENDS_IN" }], updatedAt: 1 }));
      await jobs.put(endKey("ends"), "not an end");
      const answers = await Promise.all(Array.from({ length: 8 }, () => requestEndOfInput(nc, "ends")));
      expect(answers.filter((a) => !a.recordedBefore)).toHaveLength(1);
      expect(new Set(answers.map((a) => JSON.stringify(a.end))).size).toBe(1);
      expect(answers[0]!.end.streams).toEqual({ ENDS_IN: 7 });
      // Later input does not move it.
      await publishAll(nc, [{ subject: "ends.in", data: "8" }]);
      expect(await requestEndOfInput(nc, "ends")).toEqual({ end: answers[0]!.end, recordedBefore: true });
    } finally {
      await nc.close();
    }
  });

  it("refuses an unknown job with one line and exit code 1, bad arguments with exit code 2", async () => {
    await using server = await natsServer();
    const unknown = await runEddy(["end", "nope", "--nats", server.url]);
    expect(unknown.code, unknown.output).toBe(1);
    expect(unknown.stderr.trim().split("\n")).toEqual([expect.stringMatching(/^eddy: .*job "nope" is not known/)]);
    for (const args of [["end"], ["end", "x", "--bogus"], ["end", "a.b", "c"]]) {
      const r = await runEddy([...args, "--nats", server.url]);
      expect(r.code, `${args.join(" ")}: ${r.output}`).toBe(2);
      expect(r.stderr.trim().split("\n"), args.join(" ")).toHaveLength(1);
    }
  });
});
