/**
 * Deployed code and deployment records in NATS.
 *
 * Bundles live in the object store `eddy_code` under their content digest, so deploying the same
 * code twice stores it once and a record can never point at changed bytes. Every deployment of a
 * job is a versioned record `<job>.deploy.<version>` in the jobs bucket; `<job>.deploy` names the
 * current one and is only ever replaced by compare-and-set, so two concurrent deploys cannot both
 * win. Workers watch `*.deploy` and run what it names.
 *
 * The object name is only a claim: anyone who can write `eddy_code` (or a stream republishing
 * into it) could replace the bytes behind a name. So `getCode` recomputes the digest of what it
 * fetched and refuses code that does not match the record, and `putCode` replaces an object
 * whose bytes no longer match its name instead of trusting that it is there.
 */
import { createHash } from "node:crypto";
import type { NatsConnection } from "@nats-io/transport-node";
import { Kvm, type KV } from "@nats-io/kv";
import { Objm, type ObjectStore } from "@nats-io/obj";
import { jobSpecKey, JOBS_BUCKET, type DeploymentRecord, type JobSpecRecord } from "../core/protocol.ts";
import { FatalError, TransientError } from "../errors.ts";
import { decodeControlOrThrow } from "../core/control-messages.ts";
import { replicasOf } from "./replicas.ts";
import { createRacing } from "./racing-creation.ts";

export const CODE_OBJECTS = "eddy_code";
export const deploymentKey = (job: string) => `${job}.deploy`;
export const deploymentVersionKey = (job: string, version: number) => `${job}.deploy.${version}`;

export type { DeploymentRecord, StateSignature } from "../core/protocol.ts";

/**
 * The job spec a deployment implies, as the supervisor's lag needs it — so a job deployed while
 * no worker runs (and so without the spec a worker writes) counts in `/scaling` and wakes
 * workers. Undefined for records that do not name their sources (deployed by older versions).
 */
export function specOfDeployment(record: DeploymentRecord): JobSpecRecord | undefined {
  if (!record.functions.some((f) => f.source !== undefined)) return undefined;
  return {
    job: record.job,
    functions: record.functions.map((f) => ({
      name: f.name,
      partitions: f.partitions,
      isSource: f.source !== undefined,
      ...(f.source === undefined ? {} : { stream: f.source.stream, subjects: f.source.subjects }),
    })),
    updatedAt: record.deployedAt,
  };
}

/** Another deploy of the same job won the race; look at the current version and deploy again. */
export class ConcurrentDeployError extends TransientError {
  override readonly name = "ConcurrentDeployError";
}

const encoder = new TextEncoder();

/** Decodes a stored deployment record; throws InvalidControlRecordError (an InputError) if it is none. */
export function parseDeploymentRecord(data: Uint8Array, where: string): DeploymentRecord {
  return decodeControlOrThrow("deploy", data, where);
}

export interface DeploymentStore {
  readonly jobs: KV;
  readonly code: ObjectStore;
}

export async function openDeployments(nc: NatsConnection): Promise<DeploymentStore> {
  const jobs = await createRacing(() => new Kvm(nc).create(JOBS_BUCKET, { history: 1, replicas: replicasOf(nc) }));
  const code = await createRacing(() => new Objm(nc).create(CODE_OBJECTS, { replicas: replicasOf(nc) }));
  return { jobs, code };
}

/**
 * The bytes in `eddy_code` are not the code that was deployed under that digest: someone changed
 * the object. Workers refuse to run it; deploy the code again (which rewrites the object).
 */
export class CodeDigestMismatchError extends FatalError {
  override readonly name = "CodeDigestMismatchError";
}

/** `sha256-<hex>` of `code`, the digest deployment records name (as runtime/deploy/bundle.ts computes it). */
export function codeDigest(code: Uint8Array): string {
  return "sha256-" + createHash("sha256").update(code).digest("hex");
}

export async function putCode(store: DeploymentStore, digest: string, code: Uint8Array): Promise<void> {
  if ((await store.code.info(digest)) !== null) {
    const stored = await store.code.getBlob(digest).catch(() => null);
    if (stored !== null && codeDigest(stored) === digest) return;
  }
  await store.code.putBlob({ name: digest }, code);
}

/** The deployed code named `digest`, verified against it ({@link CodeDigestMismatchError} if it differs). */
export async function getCode(store: DeploymentStore, digest: string): Promise<Uint8Array> {
  const code = await store.code.getBlob(digest);
  if (code === null) throw new Error(`deployed code ${digest} is missing from ${CODE_OBJECTS}`);
  const actual = codeDigest(code);
  if (actual !== digest) {
    throw new CodeDigestMismatchError(`deployed code ${digest} in ${CODE_OBJECTS} was tampered with: its bytes hash to ${actual}; refusing to run it (deploy the code again)`);
  }
  return code;
}

/** The current deployment of `job` and the revision to compare-and-set against. */
export async function currentDeployment(store: DeploymentStore, job: string): Promise<{ record: DeploymentRecord; revision: number } | undefined> {
  const e = await store.jobs.get(deploymentKey(job));
  if (e === null || e.length === 0 || e.operation !== "PUT") return undefined;
  return { record: parseDeploymentRecord(e.value, deploymentKey(job)), revision: e.revision };
}

export async function deploymentVersion(store: DeploymentStore, job: string, version: number): Promise<DeploymentRecord | undefined> {
  const e = await store.jobs.get(deploymentVersionKey(job, version));
  if (e === null || e.length === 0 || e.operation !== "PUT") return undefined;
  return parseDeploymentRecord(e.value, deploymentVersionKey(job, version));
}

/**
 * Makes `record` the current deployment, if the current one is still at `revision` (0: none).
 * The version record is created, never overwritten: of two deploys that picked the same version,
 * the second fails here before touching anything.
 */
export async function publishDeployment(store: DeploymentStore, record: DeploymentRecord, revision: number): Promise<void> {
  const data = encoder.encode(JSON.stringify(record));
  try {
    await store.jobs.create(deploymentVersionKey(record.job, record.version), data);
    if (revision === 0) await store.jobs.create(deploymentKey(record.job), data);
    else await store.jobs.update(deploymentKey(record.job), data, revision);
  } catch (e) {
    throw new ConcurrentDeployError(`job "${record.job}" was deployed by someone else meanwhile: ${(e as Error).message}`, { cause: e });
  }
}

/**
 * Makes an existing version current again (`eddy start`, or the same code deployed to a stopped
 * job): no new version record, so unchanged code keeps its version. Fails like
 * `publishDeployment` when someone deployed meanwhile.
 */
export async function reinstateDeployment(store: DeploymentStore, record: DeploymentRecord): Promise<void> {
  try {
    await store.jobs.create(deploymentKey(record.job), encoder.encode(JSON.stringify(record)));
  } catch (e) {
    throw new ConcurrentDeployError(`job "${record.job}" was deployed by someone else meanwhile: ${(e as Error).message}`, { cause: e });
  }
}

/** The highest version ever deployed for `job`, current or not (after an undeploy, the last one). */
export async function lastVersion(store: DeploymentStore, job: string): Promise<DeploymentRecord | undefined> {
  let max = 0;
  for await (const k of await store.jobs.keys(`${job}.deploy.*`)) {
    const v = Number(k.slice(`${job}.deploy.`.length));
    if (Number.isSafeInteger(v) && v > max) max = v;
  }
  return max === 0 ? undefined : deploymentVersion(store, job, max);
}

/** Every job with a current deployment. */
export async function listDeployments(store: DeploymentStore): Promise<DeploymentRecord[]> {
  const out: DeploymentRecord[] = [];
  const keys: string[] = [];
  for await (const k of await store.jobs.keys("*.deploy")) keys.push(k);
  for (const k of keys.sort()) {
    const current = await currentDeployment(store, k.slice(0, -".deploy".length));
    if (current !== undefined) out.push(current.record);
  }
  return out;
}

/**
 * Removes the current deployment: workers stop the job, and its spec goes so that the supervisor
 * forgets it (no checkpoints, no lag reported). Its versions and state stay.
 */
export async function removeDeployment(store: DeploymentStore, job: string): Promise<boolean> {
  const current = await currentDeployment(store, job);
  if (current === undefined) return false;
  await store.jobs.delete(deploymentKey(job), { previousSeq: current.revision });
  await store.jobs.delete(jobSpecKey(job));
  return true;
}
