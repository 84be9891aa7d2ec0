/**
 * `eddy end <job> [--wait]`: ends a job's input where its source streams are now, so the job
 * runs bounded — Flink's `stop --drain` without the stop: each source reads up to the message its
 * stream held at the request, the final watermark then fires every window and timer, and once a
 * checkpoint commits in which every actor had finished, the supervisor marks the job FINISHED.
 * The end is stored (`<job>.end`), so a recovery ends at the same messages, and it never moves:
 * asking again reports the end already recorded. Until then this was an API call only
 * (`requestEndOfInput`, runtime/nats/control.ts).
 */
import { withNats } from "../nats/connection.ts";
import { requestEndOfInput, type InputEnd } from "../nats/control.ts";
import { readJobView, type JobViewState } from "../nats/job-views.ts";
import { InputError } from "../errors.ts";

/** The job stopped, failed or was undeployed while `eddy end --wait` waited for it to finish. */
export class JobDidNotFinishError extends InputError {
  override readonly name = "JobDidNotFinishError";
}

/** States in which a job will not finish without someone acting on it. */
const NOT_FINISHING: ReadonlySet<JobViewState> = new Set(["FAILED", "STOPPED", "UNDEPLOYED"]);

/** `STREAM at message N, …`: where each source stream of the job ends. */
export function describeEnd(end: InputEnd["end"]): string {
  const streams = Object.entries(end.streams);
  return streams.length === 0 ? "no source stream to end" : streams.map(([stream, seq]) => `${stream} at message ${seq}`).join(", ");
}

export async function runEnd(o: { job: string; wait: boolean; natsUrl: string | undefined; json: boolean }): Promise<number> {
  return withNats(o.natsUrl, async (nc) => {
    const r = await requestEndOfInput(nc, o.job);
    const said = `${o.job}: input ${r.recordedBefore ? "already ends" : "ends"} at ${describeEnd(r.end)}`;
    if (!o.wait) {
      console.log(o.json ? JSON.stringify({ job: o.job, ...r.end, recordedBefore: r.recordedBefore }) : said);
      return 0;
    }
    if (!o.json) console.log(said);
    process.stderr.write(`eddy end: waiting for ${o.job} to finish (Ctrl-C stops waiting; the end stays recorded) ...\n`);
    for (;;) {
      const view = await readJobView(nc, o.job);
      if (view.state === "FINISHED") {
        const checkpoint = view.lastCheckpoint?.id ?? null;
        console.log(o.json ? JSON.stringify({ job: o.job, ...r.end, recordedBefore: r.recordedBefore, finished: { checkpoint } }) : `${o.job}: FINISHED at checkpoint ${checkpoint ?? "-"}`);
        return 0;
      }
      if (NOT_FINISHING.has(view.state)) {
        const why = view.failure === null ? "" : `: ${view.failure.reason}`;
        throw new JobDidNotFinishError(`job "${o.job}" is ${view.state}${why}; its input stays ended where it was, and it finishes once it runs again (eddy start ${o.job})`);
      }
      await new Promise((done) => setTimeout(done, 500));
    }
  });
}
