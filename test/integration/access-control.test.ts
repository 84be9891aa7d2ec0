/**
 * Access control with infra/nats/auth.conf, against a real nats-server running exactly that file:
 * a job (test/fixtures/ledger.ts) deployed by `eddy-admin` runs on a worker process connected as
 * `eddy-worker` and a supervisor connected as `eddy-supervisor` — so those permissions are enough
 * to process data, serve state, checkpoint and materialize — and `eddy-query` can read state
 * (live get and scan through the state service, committed reads from the bucket, service
 * discovery) but cannot change it: state-service puts and deletes, JetStream publishes into the
 * job's input log and into the user's source stream, KV puts into the state bucket and purging it
 * through the JetStream API are all refused by the server, and refused fast (a permission error
 * is not retried as "no worker serves the partition").
 * Each refused operation is also done as `eddy-admin` and succeeds, so a refusal cannot come from
 * the operation being broken rather than forbidden. The server log must show no permission
 * violation by the worker or the supervisor, which would otherwise go unnoticed when it only hits
 * a best-effort call.
 */
import { describe, expect, it } from "vitest";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { Kvm } from "@nats-io/kv";
import { Svcm } from "@nats-io/services";
import { headers as natsHeaders, PermissionViolationError, type NatsConnection } from "@nats-io/transport-node";
import { partitionOf } from "../../runtime/core/hash.ts";
import { HEADER, inputSubject, stateBucket } from "../../runtime/core/naming.ts";
import { encodeStateWrite } from "../../runtime/core/state-writes.ts";
import { deployModule } from "../../runtime/deploy/deploy.ts";
import { connectNats, NatsUnreachableError } from "../../runtime/nats/connection.ts";
import { stateClient } from "../../runtime/nats/state-client.ts";
import { ensureStream } from "../../runtime/nats/streams.ts";
import { startSupervisor, type StartedSupervisor } from "../../runtime/supervisor/supervisor.ts";
import { natsServer } from "../support/nats-server.ts";
import { startEddy, type EddyProcess } from "../support/processes.ts";
import { waitFor } from "../support/wait.ts";

const ROOT = resolve(import.meta.dirname, "../..");
const AUTH_CONF = resolve(ROOT, "infra/nats/auth.conf");
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const PASSWORDS = {
  EDDY_ADMIN_PASSWORD: "admin-test-secret",
  EDDY_SUPERVISOR_PASSWORD: "supervisor-test-secret",
  EDDY_WORKER_PASSWORD: "worker-test-secret",
  EDDY_QUERY_PASSWORD: "query-test-secret",
};

/** The server refused the operation for lack of permission (as nats.js reports it). */
const DENIED = /permissions violation/i;

// A key of book's partition 0, so a record written straight into `eddy.ledger.book.in.0` is one
// the actor of that partition owns.
const P0_KEY = Array.from({ length: 100 }, (_, i) => `p0-${i}`).find((k) => partitionOf(k, 3) === 0)!;

/** A JetStream publish into book's partition-0 input log: a state write setting `count` of P0_KEY. */
const publishIntoInputLog = (nc: NatsConnection, value: number) => {
  const h = natsHeaders();
  h.set(HEADER.kind, "write");
  return jetstream(nc).publish(inputSubject("ledger", "book", 0), encodeStateWrite({ ops: [{ op: "put", state: "count", key: P0_KEY, value }] }), { headers: h });
};
/** A JetStream publish into the user's source stream. */
const publishIntoSource = (nc: NatsConnection, account: string, id: string) => jetstream(nc).publish("ledger.in", JSON.stringify({ account, id }));
/** Purges book's state bucket (its stream) through the JetStream API. */
const purgeStateBucket = async (nc: NatsConnection) => (await jetstreamManager(nc)).streams.purge(`KV_${stateBucket("ledger", "book")}`);
/** A KV put into book's state bucket, under a key no partition loads. */
const putIntoStateBucket = async (nc: NatsConnection) => (await new Kvm(nc).open(stateBucket("ledger", "book"))).put("acl-probe", "x");

describe("access control (infra/nats/auth.conf)", () => {
  it("lets workers and the supervisor run a job, and eddy-query read its state but change nothing", async () => {
    // nats-server 2.9 resolves `include` relative to the including file (an absolute path is
    // joined to that directory), and variables of the including file are not visible in the
    // included one, so the fixture's config carries the file's text after the passwords.
    const logDir = await mkdtemp(join(tmpdir(), "eddy-acl-log-"));
    const logFile = join(logDir, "nats-server.log");
    const passwords = Object.entries(PASSWORDS).map(([k, v]) => `${k}: "${v}"`);
    await using server = await natsServer({ configText: [...passwords, `log_file: "${logFile}"`, await readFile(AUTH_CONF, "utf8")].join("\n") });
    const urlAs = (user: string, password: string) => server.url.replace("nats://", `nats://${user}:${encodeURIComponent(password)}@`);

    const open: NatsConnection[] = [];
    const as = async (user: string, password: string) => {
      const nc = await connectNats(urlAs(user, password), `acl-test-${user}`);
      open.push(nc);
      return nc;
    };
    let worker: EddyProcess | undefined;
    let supervisor: StartedSupervisor | undefined;
    try {
      // Authentication is on: no credentials and a wrong password are turned away.
      await expect(connectNats(server.url, "acl-test-anonymous")).rejects.toThrow(NatsUnreachableError);
      await expect(connectNats(urlAs("eddy-query", "wrong"), "acl-test-wrong")).rejects.toThrow(/authorization/i);

      const admin = await as("eddy-admin", PASSWORDS.EDDY_ADMIN_PASSWORD);
      await ensureStream(admin, "LEDGER_IN", ["ledger.in"]);
      await deployModule(admin, resolve(ROOT, "test/fixtures/ledger.ts"));
      supervisor = await startSupervisor(await as("eddy-supervisor", PASSWORDS.EDDY_SUPERVISOR_PASSWORD), { checkpointIntervalMs: 200 });
      worker = startEddy(["worker", "--nats", urlAs("eddy-worker", PASSWORDS.EDDY_WORKER_PASSWORD)]);
      const logs = () => worker?.output() ?? "";
      const patiently = { logs, timeoutMs: 20_000, retryErrors: true };
      for (const [account, id] of [["a1", "1"], ["a1", "2"], ["a1", "3"], ["a2", "4"]] as const) await publishIntoSource(admin, account, id);

      // Reads as eddy-query: live get and scan through the state service...
      const query = await as("eddy-query", PASSWORDS.EDDY_QUERY_PASSWORD);
      const book = await stateClient(query, "ledger", "book");
      await waitFor("the records counted", async () => (await book.get<number>("count", "a1")) === 3, patiently);
      expect(await book.get("entries", "a1")).toEqual({ "d:1": 1, "d:2": 1, "d:3": 1 });
      const scanned: Array<[string, unknown]> = [];
      for await (const e of book.scan({ state: "count", prefix: "a" })) scanned.push([e.key, e.value]);
      expect(scanned.sort()).toEqual([["a1", 3], ["a2", 1]]);
      // ...service discovery...
      const pings = [];
      for await (const p of await new Svcm(query).client().ping("eddy-state-ledger-book")) pings.push(p);
      expect(pings).toHaveLength(1);
      // ...and committed reads straight from the bucket, once a checkpoint materialized them.
      await waitFor("the committed count", async () => (await book.get<number>("count", "a1", { consistency: "committed" })) === 3, patiently);
      const committed: string[] = [];
      for await (const e of book.scan({ state: "count", consistency: "committed" })) committed.push(e.key);
      expect(committed.sort()).toEqual(["a1", "a2"]);

      const asAdmin = await stateClient(admin, "ledger", "book");

      // State-service writes: refused at once for eddy-query (not retried until the timeout), applied for eddy-admin.
      const started = Date.now();
      await expect(book.put("count", "a1", 100)).rejects.toThrow(PermissionViolationError);
      await expect(book.delete("entries", "a1", { subkey: "d:1" })).rejects.toThrow(DENIED);
      expect(Date.now() - started).toBeLessThan(5_000);
      await asAdmin.put("count", "a1", 100);
      await asAdmin.delete("entries", "a1", { subkey: "d:1" });
      expect(await book.get("count", "a1")).toBe(100);
      expect(await book.get("entries", "a1", { subkey: "d:1" })).toBeUndefined();

      // A JetStream publish into the job's input log.
      await expect(publishIntoInputLog(query, 7)).rejects.toThrow(DENIED);
      await publishIntoInputLog(admin, 7);
      await waitFor("the admin's record in the input log applied", async () => (await book.get<number>("count", P0_KEY)) === 7, patiently);

      // A JetStream publish into the user's source stream.
      await expect(publishIntoSource(query, "a2", "5")).rejects.toThrow(DENIED);
      await publishIntoSource(admin, "a2", "5");
      await waitFor("the admin's source record counted", async () => (await book.get<number>("count", "a2")) === 2, patiently);

      // A KV put into the function's state bucket.
      await expect(putIntoStateBucket(query)).rejects.toThrow(DENIED);
      expect(await putIntoStateBucket(admin)).toBeGreaterThan(0);

      // The JetStream API's destructive side: purging the state bucket's stream (last, as it
      // wipes the committed state).
      await expect(purgeStateBucket(query)).rejects.toThrow(DENIED);
      expect((await purgeStateBucket(admin)).success).toBe(true);

      // The refusals came from the server's permissions, and only eddy-query hit any.
      await sleep(200); // let the server's log catch up
      const violations = (await readFile(logFile, "utf8")).split("\n").filter((l) => /violation/i.test(l));
      expect(violations.filter((l) => !l.includes('"eddy-query"'))).toEqual([]);
      for (const subject of ["eddy.q.ledger.book.", "eddy.ledger.book.in.0", "ledger.in", "$KV.eddy_ledger_book.acl-probe", "$JS.API.STREAM.PURGE.KV_eddy_ledger_book"]) {
        expect(violations.some((l) => l.includes(subject))).toBe(true);
      }
    } finally {
      await worker?.kill();
      await supervisor?.stop();
      for (const nc of open.reverse()) await nc.close();
      await rm(logDir, { recursive: true, force: true });
    }
  }, 60_000);
});
