/**
 * `eddy savepoint`, `eddy savepoints`, `eddy stop`, `eddy start` and `eddy state repartition`:
 * savepoints taken through the leading supervisor, listed from the savepoint store, and the job
 * life cycle around them. Tables for people, JSON for scripts.
 */
import { withNats } from "../nats/connection.ts";
import { requestCheckpoint, resumeFailedJob } from "../nats/control.ts";
import { deleteSavepoint, listSavepoints, repartitionSavepoint, waitForApplied } from "../nats/savepoints.ts";
import { start, undeploy } from "../deploy/deploy.ts";
import { TransientError } from "../errors.ts";


/** The checkpoint a savepoint or stop needed did not commit; the reason says why. Retry. */
export class SavepointFailedError extends TransientError {
  override readonly name = "SavepointFailedError";
}


const when = (ms: number) => new Date(ms).toISOString().replace("T", " ").slice(0, 19);

export async function runSavepoint(o: { job: string; natsUrl: string | undefined; json: boolean }): Promise<number> {
  process.stderr.write(`eddy savepoint: checkpointing ${o.job} with a full export ...\n`);
  const record = await withNats(o.natsUrl, (nc) => requestCheckpoint(nc, o.job, { savepoint: true }));
  if (record.status !== "committed" || record.savepoint === undefined) throw new SavepointFailedError(`job "${o.job}": checkpoint ${record.id} ${record.status}: ${record.reason ?? "no savepoint"}; retry`);
  console.log(o.json ? JSON.stringify({ job: o.job, savepoint: record.savepoint, checkpoint: record.id }) : `${o.job}: savepoint ${record.savepoint} (checkpoint ${record.id})`);
  return 0;
}

export async function runSavepointDelete(o: { job: string; id: string; natsUrl: string | undefined; json: boolean }): Promise<number> {
  const objects = await withNats(o.natsUrl, (nc) => deleteSavepoint(nc, o.job, o.id));
  console.log(o.json ? JSON.stringify({ job: o.job, deleted: o.id, objects }) : `${o.job}: deleted savepoint ${o.id} (${objects} objects)`);
  return 0;
}

export async function runSavepoints(o: { job: string; natsUrl: string | undefined; json: boolean }): Promise<number> {
  const list = await withNats(o.natsUrl, (nc) => listSavepoints(nc, o.job));
  if (o.json) {
    console.log(JSON.stringify(list.map((s) => ({ ...s.manifest, objects: s.objects, bytes: s.bytes }))));
    return 0;
  }
  if (list.length === 0) {
    console.log(`no savepoints of ${o.job}`);
    return 0;
  }
  const rows = list.map((s) => [
    s.manifest.id,
    String(s.manifest.checkpoint),
    when(s.manifest.createdAt),
    s.manifest.codeVersion === undefined ? "-" : String(s.manifest.codeVersion),
    s.manifest.functions.map((f) => `${f.name}×${f.partitions}`).join(" "),
    `${s.bytes} B`,
  ]);
  const head = ["id", "checkpoint", "created (UTC)", "version", "functions", "size"];
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  for (const r of [head, ...rows]) console.log(r.map((c, i) => c.padEnd(widths[i]!)).join("  ").trimEnd());
  return 0;
}

export async function runStop(o: { job: string; savepoint: boolean; natsUrl: string | undefined; json: boolean }): Promise<number> {
  process.stderr.write(`eddy stop: stopping ${o.job} at a checkpoint${o.savepoint ? " with a savepoint" : ""} ...\n`);
  const record = await withNats(o.natsUrl, async (nc) => {
    const r = await requestCheckpoint(nc, o.job, { stop: true, savepoint: o.savepoint });
    if (r.status !== "committed") throw new SavepointFailedError(`job "${o.job}": the stop checkpoint ${r.id} ${r.status}: ${r.reason ?? ""}; the job keeps running, retry`);
    // Its sink output is published as the actors apply it; stopped before that, it would be in
    // no delta once a savepoint is restored.
    await waitForApplied(nc, o.job, r.id);
    // Sources stopped at the checkpoint's barrier; now the workers let go of the job for good.
    await undeploy(nc, o.job);
    return r;
  });
  if (o.json) console.log(JSON.stringify({ job: o.job, checkpoint: record.id, ...(record.savepoint === undefined ? {} : { savepoint: record.savepoint }) }));
  else console.log(`${o.job}: stopped at checkpoint ${record.id}${record.savepoint === undefined ? "" : `, savepoint ${record.savepoint}`}`);
  return 0;
}

export async function runStart(o: { job: string; natsUrl: string | undefined; json: boolean }): Promise<number> {
  const failed = await withNats(o.natsUrl, (nc) => resumeFailedJob(nc, o.job));
  if (failed !== undefined) {
    // A FAILED job still has its spec and deployment: the supervisor takes it up again.
    console.log(o.json ? JSON.stringify({ job: o.job, resumed: true, failed }) : `${o.job}: FAILED job started again from its last checkpoint (it failed: ${failed.cause.reason})`);
    return 0;
  }
  const r = await withNats(o.natsUrl, (nc) => start(nc, o.job));
  console.log(o.json ? JSON.stringify(r) : `${o.job}: started (version ${r.version}) from its last checkpoint`);
  return 0;
}

export async function runRepartition(o: { job: string; fn: string; partitions: number; savepoint: string; natsUrl: string | undefined; json: boolean }): Promise<number> {
  const m = await withNats(o.natsUrl, (nc) => repartitionSavepoint(nc, o.job, o.savepoint, o.fn, o.partitions));
  if (o.json) console.log(JSON.stringify({ job: o.job, savepoint: m.id, from: o.savepoint, fn: o.fn, partitions: o.partitions }));
  else console.log(`${o.job}: savepoint ${m.id} has ${o.fn} in ${o.partitions} partitions (from ${o.savepoint}); deploy with --partitions or code for ${o.partitions} and --from-savepoint ${m.id}`);
  return 0;
}
