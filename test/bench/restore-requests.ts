/**
 * What each request a restore makes costs as a state bucket grows (issue 12 item 2): fills a KV
 * bucket of a throwaway nats-server with `keys` state entries shaped like eddy's
 * (`<p>.n.<b64url(key)>`, 4 partitions, small msgpack values) plus a partition's metadata and a
 * few timer markers and timers, then times, at each size in `sizes`, the requests a restore
 * issues: `get`s by name (present and absent keys), listings (`<p>._tk.*`, one timer bucket) and
 * the count of stored entries. Each listing is a consumer with a subject filter; on nats-server
 * 2.9 its creation walks every key of the bucket (design note bs).
 *
 *   npm run bench -- restore-requests --keys 10000000 --json   (points at 1 M, 3 M and 10 M)
 */
import { Kvm } from "@nats-io/kv";
import { jetstreamManager, DeliverPolicy, AckPolicy } from "@nats-io/jetstream";
import { startLocalNatsServer } from "../../runtime/nats/local-server.ts";
import { connectNats } from "../../runtime/nats/connection.ts";
import { JetStreamTransport } from "../../runtime/nats/transport.ts";
import { b64url, stateKey, timerMarkerKey, timerKey, timerBucketOf, timerBucketFilter, timerMarkersFilter, stateFilter, appliedKey, positionKey, watermarkKey, timerLayoutKey, keyFilterKey, timerIndexKey, timerIndexDayKey, timerIndexDayOf } from "../../runtime/core/kv-keys.ts";
import { encodeValue } from "../../runtime/core/wire.ts";

export interface RestoreRequestsPoint {
  readonly keys: number;
  readonly fillSeconds: number;
  readonly getPresentMs: number;
  /** The marker index a restore reads now: the head and one day, by name. */
  readonly readIndexMs: number;
  readonly getAbsentMs: number;
  readonly listMarkersMs: number;
  readonly listTimerBucketMs: number;
  readonly countStateMs: number;
  readonly rawConsumerCreateMs: number;
}

const BUCKET = "restorebench";
const PARTITIONS = 4;
const CHUNK = 100_000;

async function timed<T>(f: () => Promise<T>): Promise<[number, T]> {
  const t0 = performance.now();
  const r = await f();
  return [Math.round(performance.now() - t0), r];
}

export async function benchRestoreRequests(sizes: readonly number[], log: (line: string) => void = () => undefined): Promise<RestoreRequestsPoint[]> {
  const server = await startLocalNatsServer();
  const nc = await connectNats(server.url, "eddy-bench-restore-requests");
  const points: RestoreRequestsPoint[] = [];
  try {
    const kv = await new Kvm(nc).create(BUCKET, { history: 1 });
    const t = new JetStreamTransport(nc);
    const jsm = await jetstreamManager(nc, { timeout: 600_000 });
    const value = encodeValue(1);
    const now = Date.now();
    const bucket = timerBucketOf(now);
    // A partition's metadata, markers and a few timers, as a job with timers has them.
    const meta = [appliedKey(0), positionKey(0), watermarkKey(0), timerLayoutKey(0), keyFilterKey(0), timerIndexKey(0), timerIndexDayKey(0, "event", timerIndexDayOf(bucket))].map((key) => ({ key, value }));
    const markers = [0, 1, 2].map((i) => ({ key: timerMarkerKey(0, "event", bucket + i), value }));
    const timers = Array.from({ length: 100 }, (_, i) => ({ key: timerKey(0, { domain: "event", ts: now + i, key: `k${i}`, name: "t" }), value }));
    await t.writeState(BUCKET, [...meta, ...markers, ...timers], []);
    let filled = 0;
    for (const size of [...sizes].sort((a, b) => a - b)) {
      const t0 = performance.now();
      while (filled < size) {
        const n = Math.min(CHUNK, size - filled);
        const puts = Array.from({ length: n }, (_, i) => {
          const k = filled + i;
          return { key: stateKey(k % PARTITIONS, "n", `key-${k}`), value };
        });
        await t.writeState(BUCKET, puts, []);
        filled += n;
      }
      const fillSeconds = Math.round((performance.now() - t0) / 100) / 10;
      log(`filled ${filled} (${fillSeconds} s)`);
      const [getPresentMs] = await timed(() => kv.get(appliedKey(0)));
      const [getAbsentMs] = await timed(() => kv.get(`0._wpos`));
      const [readIndexMs] = await timed(() => t.getState(BUCKET, [timerIndexKey(0), timerIndexDayKey(0, "event", timerIndexDayOf(bucket))]));
      const [listMarkersMs, listed] = await timed(() => t.listState(BUCKET, timerMarkersFilter(0)));
      if (listed.length !== 3) throw new Error(`expected 3 markers, listed ${listed.length}`);
      const [listTimerBucketMs, bucketTimers] = await timed(() => t.listState(BUCKET, timerBucketFilter(0, "event", bucket)));
      log(`  timers in the bucket: ${bucketTimers.length}`);
      const [countStateMs, count] = await timed(() => t.countState(BUCKET, stateFilter(1, "n")));
      log(`  entries of partition 1: ${count}`);
      const [rawConsumerCreateMs] = await timed(async () => {
        const ci = await jsm.consumers.add(`KV_${BUCKET}`, { filter_subject: `$KV.${BUCKET}.0._tk.*`, deliver_policy: DeliverPolicy.LastPerSubject, ack_policy: AckPolicy.None, inactive_threshold: 60_000_000_000 });
        await jsm.consumers.delete(`KV_${BUCKET}`, ci.name);
      });
      const point = { keys: size, fillSeconds, getPresentMs, readIndexMs, getAbsentMs, listMarkersMs, listTimerBucketMs, countStateMs, rawConsumerCreateMs };
      log(JSON.stringify(point));
      points.push(point);
    }
    void b64url;
    return points;
  } finally {
    await nc.close();
    await server.stop();
  }
}

if (import.meta.main) {
  const sizes = process.argv.slice(2).map(Number);
  await benchRestoreRequests(sizes.length > 0 ? sizes : [100_000, 1_000_000], (l) => process.stderr.write(`${l}\n`));
}
