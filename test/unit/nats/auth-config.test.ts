/** The per-job NATS users `eddy auth render` writes: what each role may reach, by name. */
import { describe, expect, it } from "vitest";
import { readFileSync } from "node:fs";
import { resolve } from "node:path";
import { jobAccessOf, jobAccessOfModules } from "../../../runtime/deploy/auth.ts";
import { buildJobGraph } from "../../../runtime/core/job-graph.ts";
import { defineFunction, definePipeline, fromStream, lookupJoin } from "../../../runtime/sdk/index.ts";
import { BASE_AUTH_CONF_HEADER, passwordVariable, producerPermissions, queryPermissions, renderAuthConfig, supervisorPermissions, workerPermissions, type JobAccess } from "../../../runtime/nats/auth-config.ts";

const ROOT = resolve(import.meta.dirname, "../../..");
const ledger: JobAccess = {
  job: "ledger",
  functions: [{ name: "intake", source: { stream: "LEDGER_IN", subjects: ["ledger.in"] } }, { name: "book" }],
  sinks: ["ledger.out"],
};

describe("renderAuthConfig", () => {
  it("infra/nats/auth.conf is the cluster-wide part (no jobs)", () => {
    expect(readFileSync(resolve(ROOT, "infra/nats/auth.conf"), "utf8")).toBe(BASE_AUTH_CONF_HEADER + renderAuthConfig([]));
  });

  it("reads a job's functions, source stream and subjects from its module", async () => {
    expect(await jobAccessOfModules([resolve(ROOT, "test/fixtures/ledger.ts")], { sinks: ["x.>"] })).toEqual([
      { job: "ledger", functions: [{ name: "intake", source: { stream: "LEDGER_IN", subjects: ["ledger.in"] } }, { name: "book" }], sinks: ["x.>"] },
    ]);
  });

  it("workers read (never write or consume) the KV buckets their lookups name", () => {
    const { publish } = workerPermissions({ ...ledger, lookups: ["users"] });
    expect(publish.filter((s) => s.includes("KV_users") || s.includes("$KV.users"))).toEqual(["$JS.API.STREAM.INFO.KV_users", "$JS.API.STREAM.MSG.GET.KV_users", "$JS.API.DIRECT.GET.KV_users", "$JS.API.DIRECT.GET.KV_users.>"]);
    const graph = buildJobGraph(
      definePipeline({ name: "shop", functions: [lookupJoin({ name: "enrich", input: fromStream("ORDERS"), bucket: "users", key: (o: { user: string }) => o.user, output: (o) => o })] }),
    );
    expect(jobAccessOf(graph).lookups).toEqual(["users"]);
    expect("lookups" in jobAccessOf(buildJobGraph(definePipeline({ name: "plain", functions: [defineFunction({ name: "f", input: fromStream("S"), process: () => undefined })] })))).toBe(false);
  });

  it("workers may not create, update or delete streams, and purge or delete messages only of their own input logs and spill stream", () => {
    const { publish } = workerPermissions(ledger);
    expect(publish.filter((s) => /STREAM\.(CREATE|UPDATE|DELETE)/.test(s))).toEqual([]);
    expect(publish.filter((s) => s.includes("PURGE")).sort()).toEqual(["$JS.API.STREAM.PURGE.EDDY_ledger_SPILL", "$JS.API.STREAM.PURGE.EDDY_ledger_book", "$JS.API.STREAM.PURGE.EDDY_ledger_intake"]);
    // On a replicated stream of nats-server before 2.9.18 a purge is replaced by deletions by sequence (design note bo).
    expect(publish.filter((s) => s.includes("MSG.DELETE")).sort()).toEqual(["$JS.API.STREAM.MSG.DELETE.EDDY_ledger_SPILL", "$JS.API.STREAM.MSG.DELETE.EDDY_ledger_book", "$JS.API.STREAM.MSG.DELETE.EDDY_ledger_intake"]);
  });

  it("workers write their job's state, spec, input logs, dead letters, spilled output, acks and sinks; nothing of another job", () => {
    const { publish, subscribe } = workerPermissions(ledger);
    expect(publish).toEqual(expect.arrayContaining(["$KV.eddy_ledger_book.>", "$KV.eddy_jobs.ledger.spec", "eddy.ledger.book.in.*", "eddy.ledger.dlq.book", "eddy.ledger.book.spill.*", "$JS.API.CONSUMER.CREATE.EDDY_ledger_SPILL", "eddy.ledger.ctl.ack", "ledger.out"]));
    // Nothing that matches another job's names: every eddy subject, bucket and stream names ledger
    // (or is read-only shared: the jobs and workers buckets' streams, the code store, the user's source).
    const shared = /^(\$JS\.API\.INFO|_INBOX\.>|ledger\.out)$|(KV_eddy_(jobs|workers)|OBJ_eddy_code|LEDGER_IN)\b/;
    for (const s of publish) if (!shared.test(s)) expect(s, s).toMatch(/ledger/);
    // Writes to the shared buckets and stores are under ledger's own keys and stores only.
    expect(publish.filter((s) => /^\$(KV|O)\.eddy_(workers|ckpt|sp|savepoints)/.test(s)).sort()).toEqual(["$KV.eddy_workers.ledger.*", "$O.eddy_ckpt_ledger.>", "$O.eddy_sp_ledger.>"]);
    expect(publish).not.toContain("eddy.ledger.ctl.trigger");
    expect(publish.some((s) => s.startsWith("$KV.eddy_jobs.") && s !== "$KV.eddy_jobs.ledger.spec")).toBe(false);
    expect(publish.some((s) => s.startsWith("$KV.eddy_leader") || s.startsWith("$O.eddy_code"))).toBe(false);
    expect(subscribe).toEqual(["_INBOX.>", "eddy.ledger.ctl.>", "eddy.q.ledger.>", "$SRV.>"]);
  });

  it("the supervisor purges rendered jobs' checkpoint stores and writes their savepoint manifests, but writes no snapshot and creates no job store", () => {
    const other: JobAccess = { job: "other", functions: [{ name: "fn" }] };
    const { publish } = supervisorPermissions([ledger, other]);
    expect(publish).toEqual(expect.arrayContaining(["$JS.API.STREAM.PURGE.OBJ_eddy_ckpt_ledger", "$JS.API.STREAM.PURGE.OBJ_eddy_ckpt_other", "$JS.API.STREAM.MSG.DELETE.OBJ_eddy_ckpt_ledger", "$JS.API.STREAM.MSG.DELETE.OBJ_eddy_ckpt_other", "$O.eddy_sp_ledger.>", "$O.eddy_sp_other.>"]));
    expect(publish.filter((s) => s.startsWith("$O.eddy_ckpt") || /CREATE\.OBJ_/.test(s) || s.includes("PURGE.OBJ_eddy_sp"))).toEqual([]);
    // Without rendered jobs (infra/nats/auth.conf) it reaches no job's stores.
    expect(supervisorPermissions([]).publish.filter((s) => /eddy_(ckpt|sp)/.test(s))).toEqual([]);
  });

  it("queries read their job's buckets without consumers and write nothing", () => {
    const { publish } = queryPermissions(ledger);
    expect(publish.filter((s) => s.includes("CONSUMER") || s.startsWith("$KV.") || s.startsWith("$O.") || /STREAM\.(CREATE|UPDATE|DELETE|PURGE)/.test(s))).toEqual([]);
    expect(publish).toEqual(expect.arrayContaining(["eddy.q.ledger.*.*.get", "eddy.q.ledger.*.*.scan", "$JS.API.DIRECT.GET.KV_eddy_ledger_book.>"]));
    expect(publish.some((s) => s.endsWith(".put") || s.endsWith(".delete"))).toBe(false);
  });

  it("producers publish to their job's source subjects only", () => {
    expect(producerPermissions(ledger)).toEqual({ publish: ["ledger.in"], subscribe: ["_INBOX.>"] });
  });

  it("names one password variable per user, the job in capitals", () => {
    expect(passwordVariable("admin")).toBe("EDDY_ADMIN_PASSWORD");
    expect(passwordVariable("worker", "page-views")).toBe("EDDY_WORKER_PAGE_VIEWS_PASSWORD");
    const text = renderAuthConfig([ledger]);
    for (const u of ["eddy-admin", "eddy-supervisor", "eddy-worker", "eddy-worker-ledger", "eddy-query-ledger", "eddy-producer-ledger"]) expect(text).toContain(`user: "${u}"`);
    expect(text).toContain("password: $EDDY_QUERY_LEDGER_PASSWORD");
  });

  it("the worker of all rendered jobs may do what each job's worker may, and no more", () => {
    const other: JobAccess = { job: "other", functions: [{ name: "fn" }] };
    const text = renderAuthConfig([ledger, other]);
    const block = text.slice(text.indexOf('user: "eddy-worker"'), text.indexOf('user: "eddy-worker-ledger"'));
    for (const s of [...workerPermissions(ledger).publish, ...workerPermissions(other).publish]) expect(block).toContain(JSON.stringify(s));
    expect(block).not.toMatch(/STREAM\.(CREATE|UPDATE|DELETE)|\$KV\.eddy_leader|\$O\.eddy_code/);
    expect(block).toContain("password: $EDDY_WORKER_PASSWORD");
  });
});
