/**
 * The deployment commands' output: one line per job for people, JSON for scripts. (`eddy ls`
 * is in status.ts: it lists jobs with their state.)
 */
import { withNats } from "../nats/connection.ts";
import { deployModule, rollback, undeploy } from "../deploy/deploy.ts";



export async function runDeploy(o: {
  module: string;
  job: string | undefined;
  partitions: number | undefined;
  fromSavepoint?: string | undefined;
  skipState?: readonly string[];
  createStreams?: boolean;
  natsUrl: string | undefined;
  json: boolean;
}): Promise<number> {
  process.stderr.write(`eddy deploy: bundling and validating ${o.module}${o.fromSavepoint === undefined ? "" : `, restoring savepoint ${o.fromSavepoint}`} ...\n`);
  const results = await withNats(o.natsUrl, (nc) =>
    deployModule(nc, o.module, {
      ...(o.job === undefined ? {} : { job: o.job }),
      ...(o.partitions === undefined ? {} : { partitions: o.partitions }),
      ...(o.fromSavepoint === undefined ? {} : { fromSavepoint: o.fromSavepoint, skipState: o.skipState ?? [] }),
      ...(o.createStreams === true ? { createStreams: true } : {}),
    }),
  );
  if (o.json) console.log(JSON.stringify(results));
  else {
    for (const r of results) {
      console.log(`${r.job}: ${r.unchanged ? "unchanged, version" : "deployed version"} ${r.version} (${r.digest.slice(0, 19)})${r.started === true ? ", started again" : ""}`);
      for (const c of r.createdStreams ?? []) console.log(`  ${c.exists ? "added subjects to" : "created"} stream ${c.name} (${c.subjects.join(", ")}${c.duplicateWindowMs === undefined ? "" : `; duplicate window ${c.duplicateWindowMs / 1000} s`})`);
      const x = r.restored;
      if (x === undefined) continue;
      const refs = (l: readonly unknown[]) => l.map((s) => `${(s as { fn: string }).fn}.${(s as { state: string }).state}`).join(", ");
      console.log(`  restored savepoint ${x.savepoint} as checkpoint ${x.checkpoint}`);
      if (x.migrated.length > 0) console.log(`  migrated: ${x.migrated.map((m) => { const v = m as { fn: string; state: string; from: number; to: number }; return `${v.fn}.${v.state} v${v.from}→v${v.to}`; }).join(", ")}`);
      if (x.skipped.length > 0) console.log(`  started empty (--skip-state): ${refs(x.skipped)}`);
      if (x.droppedStates.length > 0) console.log(`  not in the new code, dropped: ${refs(x.droppedStates)}`);
      if (x.emptyStates.length > 0) console.log(`  not in the savepoint, empty: ${refs(x.emptyStates)}`);
    }
  }
  return 0;
}

export async function runRollback(o: { job: string; natsUrl: string | undefined; json: boolean }): Promise<number> {
  const r = await withNats(o.natsUrl, (nc) => rollback(nc, o.job));
  console.log(o.json ? JSON.stringify(r) : `${r.job}: rolled back, now version ${r.version} (${r.digest.slice(0, 19)})`);
  return 0;
}

export async function runUndeploy(o: { job: string; natsUrl: string | undefined; json: boolean }): Promise<number> {
  await withNats(o.natsUrl, (nc) => undeploy(nc, o.job));
  console.log(o.json ? JSON.stringify({ job: o.job, undeployed: true }) : `${o.job}: undeployed`);
  return 0;
}
