/**
 * Least privilege, against a real nats-server running the users `eddy auth render` writes for the
 * ledger job (test/fixtures/ledger.ts): the job, deployed by `eddy-admin`, runs end to end on a
 * worker process connected as `eddy-worker-ledger` and a supervisor connected as
 * `eddy-supervisor`, fed by `eddy-producer-ledger` and read by `eddy-query-ledger`, next to the
 * counter job (test/fixtures/counter.ts, an exactly-once sink) on its own `eddy-worker-counter`
 * process — and the server logs no permission violation while they do, so those permissions are
 * enough.
 *
 * A savepoint is taken under these users too, and the supervisor's cleanup deletes old snapshot
 * deltas from the job's own checkpoint store.
 *
 * Then each role tries what it must not do, every route the audit found included: the worker
 * purging, updating (a `republish` into the code store) or creating streams, writing another
 * job's state, sink, spilled sink output and job records, the leadership lease and the code store, publishing control
 * messages of another job or the supervisor's own, putting objects into another job's checkpoint
 * and savepoint stores, writing a heartbeat the supervisor would count for another job; the query user creating a push consumer that
 * delivers onto a control subject, a durable consumer, reading deployed code, the source stream
 * or another job's records, and every write; the producer writing anywhere but its source; the
 * supervisor writing a job's state. Each must be refused by the server. The same operations as
 * `eddy-admin` succeed (so a refusal cannot come from a broken operation), and the job still
 * counts correctly afterwards.
 */
import { describe, expect, it } from "vitest";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { AckPolicy, jetstream, jetstreamManager } from "@nats-io/jetstream";
import { Kvm } from "@nats-io/kv";
import { Objm } from "@nats-io/obj";
import { Svcm } from "@nats-io/services";
import { headers as natsHeaders, PermissionViolationError, type NatsConnection } from "@nats-io/transport-node";
import { partitionOf } from "../../runtime/core/hash.ts";
import { checkpointObjects, HEADER, inputSubject, savepointObjects, spillStream, spillSubject, stateBucket } from "../../runtime/core/naming.ts";
import { deltaObject, heartbeatKey, WORKERS_BUCKET } from "../../runtime/core/protocol.ts";
import { savepointManifestName } from "../../runtime/core/savepoint.ts";
import { encodeStateWrite } from "../../runtime/core/state-writes.ts";
import { jobAccessOfModules } from "../../runtime/deploy/auth.ts";
import { deployModule } from "../../runtime/deploy/deploy.ts";
import { passwordVariable, renderAuthConfig } from "../../runtime/nats/auth-config.ts";
import { connectNats, NatsUnreachableError } from "../../runtime/nats/connection.ts";
import { ensureControlStores, listObjects } from "../../runtime/nats/control-store.ts";
import { requestCheckpoint } from "../../runtime/nats/control.ts";
import { listSavepoints } from "../../runtime/nats/savepoints.ts";
import { stateClient } from "../../runtime/nats/state-client.ts";
import { ensureStream, readAll } from "../../runtime/nats/streams.ts";
import { startSupervisor, type StartedSupervisor } from "../../runtime/supervisor/supervisor.ts";
import { natsServer } from "../support/nats-server.ts";
import { startEddy, type EddyProcess } from "../support/processes.ts";
import { waitFor } from "../support/wait.ts";

const ROOT = resolve(import.meta.dirname, "../..");
const LEDGER = resolve(ROOT, "test/fixtures/ledger.ts");
// A second job, with an exactly-once sink, run by its own worker user next to ledger's.
const COUNTER = resolve(ROOT, "test/fixtures/counter.ts");
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const PASSWORDS: Record<string, string> = {
  [passwordVariable("admin")]: "admin-test-secret",
  [passwordVariable("supervisor")]: "supervisor-test-secret",
  [passwordVariable("worker")]: "all-jobs-worker-test-secret",
  [passwordVariable("worker", "ledger")]: "worker-test-secret",
  [passwordVariable("query", "ledger")]: "query-test-secret",
  [passwordVariable("producer", "ledger")]: "producer-test-secret",
  [passwordVariable("worker", "counter")]: "counter-worker-test-secret",
  [passwordVariable("query", "counter")]: "counter-query-test-secret",
  [passwordVariable("producer", "counter")]: "counter-producer-test-secret",
};
const USERS = {
  admin: ["eddy-admin", PASSWORDS[passwordVariable("admin")]!],
  supervisor: ["eddy-supervisor", PASSWORDS[passwordVariable("supervisor")]!],
  worker: ["eddy-worker-ledger", PASSWORDS[passwordVariable("worker", "ledger")]!],
  query: ["eddy-query-ledger", PASSWORDS[passwordVariable("query", "ledger")]!],
  producer: ["eddy-producer-ledger", PASSWORDS[passwordVariable("producer", "ledger")]!],
  counterWorker: ["eddy-worker-counter", PASSWORDS[passwordVariable("worker", "counter")]!],
  counterProducer: ["eddy-producer-counter", PASSWORDS[passwordVariable("producer", "counter")]!],
} as const;

/** The server refused the operation for lack of permission (as nats.js reports it). */
const DENIED = /permissions violation/i;

// A key of book's partition 0, so a record written straight into `eddy.ledger.book.in.0` is one
// the actor of that partition owns.
const P0_KEY = Array.from({ length: 100 }, (_, i) => `p0-${i}`).find((k) => partitionOf(k, 3) === 0)!;
const BOOK_STREAM = `KV_${stateBucket("ledger", "book")}`;
const enc = (s: string) => new TextEncoder().encode(s);

/** A JetStream publish into book's partition-0 input log: a state write setting `count` of P0_KEY. */
const publishIntoInputLog = (nc: NatsConnection, value: number) => {
  const h = natsHeaders();
  h.set(HEADER.kind, "write");
  return jetstream(nc).publish(inputSubject("ledger", "book", 0), encodeStateWrite({ ops: [{ op: "put", state: "count", key: P0_KEY, value }] }), { headers: h });
};
/** A JetStream publish into the user's source stream. */
const publishIntoSource = (nc: NatsConnection, account: string, id: string) => jetstream(nc).publish("ledger.in", JSON.stringify({ account, id }));
/** A JetStream publish onto any subject (a KV or object-store write is one). */
const jsPublish = (nc: NatsConnection, subject: string) => jetstream(nc).publish(subject, enc("forged"), { timeout: 3_000 });
/** A core-NATS message that must reach a subscriber: denied publishes fail the request at once. */
const coreRequest = (nc: NatsConnection, subject: string) => nc.request(subject, enc("forged"), { timeout: 3_000 });
const jsm = (nc: NatsConnection) => jetstreamManager(nc);

describe("access control (eddy auth render)", () => {
  it("runs a job under its own users and refuses every role what it must not do", async () => {
    const logDir = await mkdtemp(join(tmpdir(), "eddy-acl-log-"));
    const logFile = join(logDir, "nats-server.log");
    const passwords = Object.entries(PASSWORDS).map(([k, v]) => `${k}: "${v}"`);
    const authorization = renderAuthConfig(await jobAccessOfModules([LEDGER, COUNTER]));
    await using server = await natsServer({ configText: [...passwords, `log_file: "${logFile}"`, authorization].join("\n") });
    const urlAs = ([user, password]: readonly [string, string]) => server.url.replace("nats://", `nats://${user}:${encodeURIComponent(password)}@`);

    const open: NatsConnection[] = [];
    const as = async (who: readonly [string, string]) => {
      const nc = await connectNats(urlAs(who), `acl-test-${who[0]}`, {});
      open.push(nc);
      return nc;
    };
    let worker: EddyProcess | undefined;
    let counterWorker: EddyProcess | undefined;
    let supervisor: StartedSupervisor | undefined;
    try {
      // Authentication is on: no credentials and a wrong password are turned away.
      await expect(connectNats(server.url, "acl-test-anonymous", {})).rejects.toThrow(NatsUnreachableError);
      await expect(connectNats(urlAs(["eddy-query-ledger", "wrong"]), "acl-test-wrong", {})).rejects.toThrow(/authorization/i);

      const admin = await as(USERS.admin);
      await ensureStream(admin, "LEDGER_IN", ["ledger.in"]);
      // Another job's input log and state, which ledger's users must not touch.
      await ensureStream(admin, "EDDY_other_fn", ["eddy.other.fn.in.*"]);
      const otherState = await new Kvm(admin).create(stateBucket("other", "fn"), { history: 1 });
      await otherState.put("k", enc("other's state"));
      // Deploying creates the job's streams and buckets: its workers may not.
      await deployModule(admin, LEDGER);
      await ensureStream(admin, "COUNTER_IN", ["counter.in"]);
      await ensureStream(admin, "COUNTER_OUT", ["counter.out"]);
      await deployModule(admin, COUNTER);
      await new Kvm(admin).open("eddy_jobs").then((kv) => kv.put("other.spec", enc("{}")));
      const sup = await as(USERS.supervisor);
      supervisor = await startSupervisor(sup, { checkpointIntervalMs: 200 });
      // The worker gets its URL (with the password) in its environment, not in its arguments.
      worker = startEddy(["worker", "--job", "ledger"], { EDDY_NATS_URL: urlAs(USERS.worker) });
      counterWorker = startEddy(["worker", "--job", "counter"], { EDDY_NATS_URL: urlAs(USERS.counterWorker) });
      const logs = () => `${worker?.output() ?? ""}\n--- counter worker ---\n${counterWorker?.output() ?? ""}`;
      const patiently = { logs, timeoutMs: 30_000, retryErrors: true };

      const producer = await as(USERS.producer);
      for (const [account, id] of [["a1", "1"], ["a1", "2"], ["a1", "3"], ["a2", "4"]] as const) await publishIntoSource(producer, account, id);

      // Reads as eddy-query-ledger: live get and scan through the state service...
      const query = await as(USERS.query);
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
      // ...and committed reads straight from the bucket (no consumer needed), once materialized.
      await waitFor("the committed count", async () => (await book.get<number>("count", "a1", { consistency: "committed" })) === 3, patiently);
      expect(await book.get("entries", "a1", { consistency: "committed" })).toEqual({ "d:1": 1, "d:2": 1, "d:3": 1 });
      const committed: string[] = [];
      for await (const e of book.scan({ state: "count", consistency: "committed" })) committed.push(e.key);
      expect(committed.sort()).toEqual(["a1", "a2"]);

      // The counter job publishes its totals through its exactly-once sink.
      const counterProducer = await as(USERS.counterProducer);
      for (const u of ["ann", "bob", "ann"]) await jetstream(counterProducer).publish("counter.in", JSON.stringify({ user: u }));
      const totals = await waitFor("counter's three totals", async () => {
        const o = (await readAll(admin, "COUNTER_OUT")).map((m) => JSON.parse(new TextDecoder().decode(m.data)) as { user: string; n: number });
        return o.length >= 3 && o;
      }, patiently);
      expect(totals.map((t) => `${t.user}:${t.n}`).sort()).toEqual(["ann:1", "ann:2", "bob:1"]);
      // Each worker runs only its job.
      expect(worker.output()).not.toContain("job counter");
      expect(counterWorker.output()).not.toContain("job ledger");

      // Committed input is trimmed from book's input log (a purge the worker may do on its own logs).
      await waitFor("book's input log trimmed", async () => (await (await jsm(admin)).streams.info("EDDY_ledger_book")).state.first_seq > 1, patiently);

      // A savepoint: the actors write their exports into ledger's savepoint store, the supervisor
      // the manifest.
      const taken = await requestCheckpoint(admin, "ledger", { savepoint: true });
      expect(taken).toMatchObject({ status: "committed" });
      expect((await listSavepoints(admin, "ledger")).map((sp) => sp.manifest.id)).toEqual([taken.savepoint]);
      // Snapshot deltas are in each job's own store, and the supervisor's cleanup deletes the old ones.
      const adminStores = await ensureControlStores(admin);
      expect((await listObjects(adminStores, "ledger", "ledger/")).length).toBeGreaterThan(0);
      await waitFor("ledger's first deltas deleted", async () => (await listObjects(adminStores, "ledger", "ledger/1/")).length === 0, patiently);
      expect(await listObjects(adminStores, "counter", "ledger/")).toEqual([]);
      // Counter's deltas are in counter's store: that is what ledger's worker must not reach (below).
      expect((await listObjects(adminStores, "counter", "counter/")).length).toBeGreaterThan(0);

      // Running, checkpointing, materializing, trimming and answering queries needed nothing
      // more than these users may do.
      await sleep(500);
      const violations = async () => (await readFile(logFile, "utf8")).split("\n").filter((l) => /violation/i.test(l));
      expect(await violations()).toEqual([]);

      const w = await as(USERS.worker);
      const wm = await jsm(w);
      // --- the worker ---
      // Purging, updating, creating or deleting streams: another job's, the user's, its own.
      await expect(wm.streams.purge("EDDY_other_fn")).rejects.toThrow(DENIED);
      await expect(wm.streams.purge("LEDGER_IN")).rejects.toThrow(DENIED);
      await expect(wm.streams.purge(BOOK_STREAM)).rejects.toThrow(DENIED);
      await expect(wm.streams.delete(BOOK_STREAM)).rejects.toThrow(DENIED);
      // The republish route: its own state bucket's stream republishing into the code store.
      const bookConfig = (await wm.streams.info(BOOK_STREAM)).config;
      await expect(wm.streams.update(BOOK_STREAM, { ...bookConfig, republish: { src: ">", dest: "$O.eddy_code.C.forged" } })).rejects.toThrow(DENIED);
      await expect(wm.streams.add({ name: "EVIL", subjects: ["eddy.ledger.evil"], republish: { src: ">", dest: "$KV.eddy_leader.leader" } })).rejects.toThrow(DENIED);
      // Another job's state and job records, its own deployment record, the lease, the code.
      await expect(jsPublish(w, `$KV.${stateBucket("other", "fn")}.k`)).rejects.toThrow(DENIED);
      await expect((await new Kvm(w).open(stateBucket("other", "fn"))).get("k")).rejects.toThrow(DENIED);
      await expect(jsPublish(w, "$KV.eddy_jobs.other.spec")).rejects.toThrow(DENIED);
      await expect(jsPublish(w, "$KV.eddy_jobs.ledger.deploy")).rejects.toThrow(DENIED);
      await expect(jsPublish(w, "$KV.eddy_jobs.ledger.latest")).rejects.toThrow(DENIED);
      await expect(jsPublish(w, "$KV.eddy_leader.leader")).rejects.toThrow(DENIED);
      await expect(jsPublish(w, "$O.eddy_code.C.forged")).rejects.toThrow(DENIED);
      await expect(jsPublish(w, "eddy.other.fn.in.0")).rejects.toThrow(DENIED);
      await expect(jsPublish(w, `$KV.${stateBucket("counter", "count")}.k`)).rejects.toThrow(DENIED);
      await expect(jsPublish(w, "counter.out")).rejects.toThrow(DENIED);
      // Another job's snapshot deltas and savepoint exports, by subject and through the object-store
      // API, and a heartbeat under another job's key (the supervisor counts only those for that job).
      await expect(jsPublish(w, `$O.${checkpointObjects("counter")}.C.forged`)).rejects.toThrow(DENIED);
      await expect(jsPublish(w, `$O.${savepointObjects("counter")}.C.forged`)).rejects.toThrow(DENIED);
      await expect((await new Objm(w).open(checkpointObjects("counter"), false)).putBlob({ name: deltaObject("counter", 1, "count", 0) }, enc("forged"))).rejects.toThrow(DENIED);
      await expect((await new Objm(w).open(savepointObjects("counter"), false)).putBlob({ name: savepointManifestName("counter", "sp-1") }, enc("forged"))).rejects.toThrow(DENIED);
      await expect((await new Kvm(w).open(WORKERS_BUCKET)).put(heartbeatKey("counter", "forged"), enc("{}"))).rejects.toThrow(DENIED);
      await expect(jsPublish(w, `$KV.${WORKERS_BUCKET}.counter.forged`)).rejects.toThrow(DENIED);
      // Another job's spilled sink output: writing into it, purging it, reading it.
      await expect(jsPublish(w, spillSubject("counter", "out", 0))).rejects.toThrow(DENIED);
      await expect(wm.streams.purge(spillStream("counter"))).rejects.toThrow(DENIED);
      await expect(wm.streams.getMessage(spillStream("counter"), { seq: 1 })).rejects.toThrow(DENIED);
      // Control messages: another job's, and the supervisor's triggers and requests.
      await expect(coreRequest(w, "eddy.other.ctl.ack")).rejects.toThrow(DENIED);
      await expect(coreRequest(w, "eddy.ledger.ctl.trigger")).rejects.toThrow(DENIED);
      await expect(coreRequest(w, "eddy.ctl.checkpoint")).rejects.toThrow(DENIED);
      await expect(coreRequest(w, "eddy.q.other.fn.0.put")).rejects.toThrow(DENIED);

      // --- eddy-query-ledger ---
      const qm = await jsm(query);
      // A push consumer delivering onto a control subject (it would deafen the worker), and a durable one.
      await expect(qm.consumers.add(BOOK_STREAM, { deliver_subject: "eddy.ledger.ctl.trigger", ack_policy: AckPolicy.None })).rejects.toThrow(DENIED);
      await expect(qm.consumers.add(BOOK_STREAM, { durable_name: "acl-durable", ack_policy: AckPolicy.Explicit })).rejects.toThrow(DENIED);
      // Deployed code, the source stream, another job's state and records.
      await expect(new Objm(query).open("eddy_code")).rejects.toThrow(DENIED);
      await expect(qm.streams.getMessage("LEDGER_IN", { seq: 1 })).rejects.toThrow(DENIED);
      await expect(qm.streams.info("EDDY_other_fn")).rejects.toThrow(DENIED);
      await expect((await new Kvm(query).open(stateBucket("other", "fn"))).get("k")).rejects.toThrow(DENIED);
      await expect(qm.direct.getMessage("KV_eddy_jobs", { last_by_subj: "$KV.eddy_jobs.other.spec" })).rejects.toThrow(DENIED);
      // Writes: state-service puts and deletes (refused at once, not retried until the timeout),
      // the input log, the source, the bucket, purging it.
      const started = Date.now();
      await expect(book.put("count", "a1", 100)).rejects.toThrow(PermissionViolationError);
      await expect(book.delete("entries", "a1", { subkey: "d:1" })).rejects.toThrow(DENIED);
      expect(Date.now() - started).toBeLessThan(5_000);
      await expect(publishIntoInputLog(query, 7)).rejects.toThrow(DENIED);
      await expect(publishIntoSource(query, "a2", "5")).rejects.toThrow(DENIED);
      await expect(jsPublish(query, `$KV.${stateBucket("ledger", "book")}.acl-probe`)).rejects.toThrow(DENIED);
      await expect(qm.streams.purge(BOOK_STREAM)).rejects.toThrow(DENIED);

      // --- eddy-producer-ledger: its source subject only ---
      await expect(publishIntoInputLog(producer, 7)).rejects.toThrow(DENIED);
      await expect(jsPublish(producer, "$KV.eddy_jobs.ledger.deploy")).rejects.toThrow(DENIED);
      await expect(coreRequest(producer, "eddy.ledger.ctl.trigger")).rejects.toThrow(DENIED);
      await expect(jsm(producer).then((m) => m.streams.info("LEDGER_IN"))).rejects.toThrow(DENIED);

      // --- eddy-supervisor: no job's data ---
      await expect(jsPublish(sup, `$KV.${stateBucket("ledger", "book")}.acl-probe`)).rejects.toThrow(DENIED);
      await expect(publishIntoInputLog(sup, 7)).rejects.toThrow(DENIED);
      await expect((await jsm(sup)).streams.purge("LEDGER_IN")).rejects.toThrow(DENIED);
      await expect(jsPublish(sup, "$O.eddy_code.C.forged")).rejects.toThrow(DENIED);
      // It reads and deletes snapshot deltas, but does not write them.
      await expect(jsPublish(sup, `$O.${checkpointObjects("ledger")}.C.forged`)).rejects.toThrow(DENIED);

      // Each of those refusals was a refusal: the admin may do the same.
      const am = await jsm(admin);
      const asAdmin = await stateClient(admin, "ledger", "book");
      await asAdmin.put("count", "a1", 100);
      await asAdmin.delete("entries", "a1", { subkey: "d:1" });
      expect(await book.get("count", "a1")).toBe(100);
      expect(await book.get("entries", "a1", { subkey: "d:1" })).toBeUndefined();
      await publishIntoInputLog(admin, 7);
      await waitFor("the admin's record in the input log applied", async () => (await book.get<number>("count", P0_KEY)) === 7, patiently);
      const probe = await am.consumers.add(BOOK_STREAM, { deliver_subject: "acl.probe.deliver", ack_policy: AckPolicy.None });
      await am.consumers.delete(BOOK_STREAM, probe.name);
      expect((await am.streams.purge("EDDY_other_fn")).success).toBe(true);
      expect(await jsPublish(admin, `$KV.${stateBucket("other", "fn")}.k`)).toBeDefined();
      expect((await (await new Objm(admin).open("eddy_code")).status()).bucket).toBe("eddy_code");
      // An object nobody reads (no checkpoint id, no savepoint id) in each of counter's stores, and a
      // heartbeat that is no heartbeat (the supervisor skips it) under counter's key, removed again.
      expect((await (await new Objm(admin).open(checkpointObjects("counter"))).putBlob({ name: "counter/acl-probe" }, enc("probe"))).size).toBe(5);
      expect((await (await new Objm(admin).open(savepointObjects("counter"))).putBlob({ name: "counter/acl-probe" }, enc("probe"))).size).toBe(5);
      const workersAsAdmin = await new Kvm(admin).open(WORKERS_BUCKET);
      await workersAsAdmin.put(heartbeatKey("counter", "acl-probe"), enc("probe"));
      await workersAsAdmin.delete(heartbeatKey("counter", "acl-probe"));

      // The job is unharmed and goes on counting the producer's records.
      await publishIntoSource(producer, "a2", "5");
      await waitFor("the producer's next record counted", async () => (await book.get<number>("count", "a2")) === 2, patiently);
      expect(logs()).not.toMatch(/violation/i);

      // Every refusal above came from the server's permissions, and only the attacking roles hit any.
      await sleep(200);
      const logged = await violations();
      for (const subject of [
        "$JS.API.STREAM.PURGE.EDDY_other_fn",
        `$JS.API.STREAM.PURGE.${spillStream("counter")}`,
        `$JS.API.STREAM.UPDATE.${BOOK_STREAM}`,
        "$JS.API.STREAM.CREATE.EVIL",
        "$KV.eddy_leader.leader",
        "$O.eddy_code.C.forged",
        `$O.${checkpointObjects("counter")}.C.forged`,
        `$O.${savepointObjects("counter")}.C.forged`,
        `$KV.${WORKERS_BUCKET}.counter.forged`,
        "eddy.ledger.ctl.trigger",
        `$JS.API.CONSUMER.CREATE.${BOOK_STREAM}`,
      ]) {
        expect(logged.some((l) => l.includes(subject)), subject).toBe(true);
      }
      expect(logged.filter((l) => l.includes('"eddy-admin"'))).toEqual([]);
    } finally {
      await worker?.kill();
      await counterWorker?.kill();
      await supervisor?.stop();
      for (const nc of open.reverse()) await nc.close();
      await rm(logDir, { recursive: true, force: true });
    }
  }, 120_000);
});
