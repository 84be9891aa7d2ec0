/**
 * Creating a stream, KV bucket or object store that another process may be creating at the same
 * moment. Workers and supervisors create the control plane and a job's streams and stores when
 * they start, often together (a deployment scaled up, the tests' chaos runs); a creation of
 * something that exists with the same configuration is a no-op, but nats-server 2.9 refuses one
 * of two creations that race with "subjects overlap with an existing stream" (10065) — the other
 * one's stream — instead of returning it (2 in 200 concurrent pairs on this machine). A worker
 * died at its start of it. The creation is made again, when it will find what the other made.
 */
import { JetStreamApiError } from "@nats-io/jetstream";

/** nats-server's error code for a stream whose subjects another stream captures (JSStreamSubjectOverlapErr). */
const SUBJECTS_OVERLAP = 10065;

/** Whether `e` is the refusal of a creation that may have raced another of the same stream. */
export function lostCreationRace(e: unknown): boolean {
  return e instanceof JetStreamApiError && e.code === SUBJECTS_OVERLAP;
}

/**
 * Runs `create` (which must be a no-op when what it creates exists with the same configuration),
 * again up to three times when it lost a race with another creation of the same stream. A real
 * overlap with another stream is refused the same way every time and still fails.
 *
 * @example
 *   const kv = await createRacing(() => new Kvm(nc).create(JOBS_BUCKET, { history: 1 }));
 */
export async function createRacing<T>(create: () => Promise<T>): Promise<T> {
  for (let attempt = 0; ; attempt++) {
    try {
      return await create();
    } catch (e) {
      if (attempt >= 3 || !lostCreationRace(e)) throw e;
      await new Promise((resolve) => setTimeout(resolve, 20 * (attempt + 1)));
    }
  }
}
