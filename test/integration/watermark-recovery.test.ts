/**
 * Watermarks and timers survive a crash. A worker process is SIGKILLed after its windows fired;
 * after recovery from the last checkpoint an event that was already late before the crash is
 * still late (Flink's FLINK-5601 forgot the watermark and accepted it), the window that was open
 * at the crash fires exactly once, and no window fires twice.
 */
import { describe, expect, it } from "vitest";
import { ensureStream, publishAll, readAll } from "../../runtime/nats/streams.ts";
import { requestEndOfInput } from "../../runtime/nats/control.ts";
import { startSupervisor } from "../../runtime/supervisor/supervisor.ts";
import { connect, natsServer } from "../support/nats-server.ts";
import { startWorkerProcess } from "../support/processes.ts";
import { waitFor } from "../support/wait.ts";

const decoder = new TextDecoder();

describe("recovery after a worker is killed", () => {
  it("restores the watermark and timers: late stays late, open windows fire exactly once", async () => {
    await using server = await natsServer();
    const nc = await connect(server);
    const supervisor = await startSupervisor(nc, { checkpointIntervalMs: 300, checkpointTimeoutMs: 3000 });
    try {
      await ensureStream(nc, "LATE_CLICKS", ["late.clicks"]);
      await ensureStream(nc, "LATE_OUT", ["late.out.>"]);
      const click = (id: number, ts: number) => ({ subject: "late.clicks", data: JSON.stringify({ id, ts }) });
      const windows = async () => (await readAll(nc, "LATE_OUT", "late.out.windows")).map((m) => JSON.parse(decoder.decode(m.data)));
      const late = async () => (await readAll(nc, "LATE_OUT", "late.out.late")).map((m) => JSON.parse(decoder.decode(m.data)));

      // Before the crash: 25 clicks at 0..24 s. Windows [0,10) and [10,20) fire; [20,30) is open
      // with 5 clicks and a timer at 29 999; the watermark is 24 000 - 1.
      const first = startWorkerProcess("test/fixtures/late-windows.ts", server.url);
      await publishAll(nc, Array.from({ length: 25 }, (_, i) => click(i, i * 1000)));
      await waitFor("the first two windows", async () => (await windows()).length >= 2);
      // The exactly-once sink published them, so a checkpoint after them has committed.
      await first.kill();

      const second = startWorkerProcess("test/fixtures/late-windows.ts", server.url);
      try {
        // After recovery: a click at 5 s is late (its window closed before the crash), then the
        // input continues to 34 s and ends.
        await publishAll(nc, [click(100, 5_000), ...Array.from({ length: 10 }, (_, i) => click(25 + i, (25 + i) * 1000))]);
        await requestEndOfInput(nc, "latewin");
        const all = await waitFor("all windows", async () => {
          const ws = await windows();
          return ws.some((w) => w.start === 30_000) ? ws : undefined;
        });
        expect(all.map((w) => [w.start, w.clicks]).sort((a, b) => a[0] - b[0])).toEqual([
          [0, 10],
          [10_000, 10],
          [20_000, 10],
          [30_000, 5],
        ]);
        expect(await late()).toEqual([{ id: 100, ts: 5_000 }]);
      } finally {
        await second.kill();
        if (process.env.EDDY_TEST_DEBUG) console.log(first.output(), second.output());
      }
    } finally {
      await supervisor.stop();
      await nc.close();
    }
  });
});
