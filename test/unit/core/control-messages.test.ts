/**
 * What the control-plane validators accept and refuse: the records eddy writes decode unchanged;
 * anything else — not JSON, `null`, wrong types, numbers out of range, NaN-like strings — is
 * refused with the reason and the field, and never throws.
 */
import { describe, expect, it } from "vitest";
import { decodeControl, decodeControlOrThrow, InvalidControlRecordError, jetStreamOrigin, validateControl } from "../../../runtime/core/control-messages.ts";
import { decodeWatermark, encodeWatermark } from "../../../runtime/core/wire.ts";
import { Packr } from "msgpackr";
import { addRejectionMetrics, countRejected, rejectedCounts } from "../../../runtime/metrics/rejections.ts";
import { MetricsText } from "../../../runtime/metrics/prometheus.ts";

const bytes = (x: unknown) => new TextEncoder().encode(typeof x === "string" ? x : JSON.stringify(x));
const ack = { id: 3, generation: 1, actor: "agg/0", worker: "w1", bytes: 120, keysChanged: 4, alignmentMs: 12, finished: false };

describe("control message validation", () => {
  it("accepts what eddy writes, as written", () => {
    expect(decodeControl("ack", bytes(ack))).toEqual({ ok: true, value: ack });
    expect(decodeControl("trigger", bytes({ id: 1, generation: 0, stop: false, savepoint: "sp-1" })).ok).toBe(true);
    expect(decodeControl("assignment", bytes({ generation: 2, incarnation: 1, codeVersion: 3, owners: { "agg/0": "w1" }, updatedAt: 1 })).ok).toBe(true);
    expect(decodeControl("latest", bytes({ id: 7, generation: 2, committedAt: 1_700_000_000_000, stop: true })).ok).toBe(true);
    expect(decodeControl("spec", bytes({ job: "j", functions: [{ name: "src", partitions: 2, isSource: true, stream: "S", subjects: ["a", "b"] }], restartStrategy: { maxFailures: 3 }, updatedAt: 1 })).ok).toBe(true);
    expect(decodeControl("heartbeat", bytes({ id: "w1", pid: 9, startedAt: 1, jobs: ["j"], running: { j: 2 } })).ok).toBe(true);
    expect(decodeControl("checkpoint-request", bytes({ job: "j", stop: true })).ok).toBe(true);
    const timed = { ...ack, timings: { syncMs: 1.5, uploadMs: 20, ackWaitMs: 3 } };
    expect(decodeControl("ack", bytes(timed))).toEqual({ ok: true, value: timed });
  });

  it("refuses what is not JSON as `json`, and JSON of the wrong shape as `schema`, naming the field", () => {
    expect(decodeControl("trigger", bytes("not json"))).toMatchObject({ ok: false, reason: "json" });
    expect(decodeControl("ack", bytes("null"))).toEqual({ ok: false, reason: "schema", message: "ack: expected an object" });
    expect(decodeControl("ack", bytes({ ...ack, id: "3" }))).toEqual({ ok: false, reason: "schema", message: "ack: id: expected a positive safe integer" });
    expect(decodeControl("ack", bytes('{"id":1e999}'))).toMatchObject({ ok: false, message: "ack: id: expected a positive safe integer" });
    expect(decodeControl("ack", bytes({ ...ack, bytes: 1e20 }))).toMatchObject({ ok: false, message: "ack: bytes: expected a non-negative safe integer" });
    expect(decodeControl("ack", bytes({ ...ack, alignmentMs: "NaN" }))).toMatchObject({ ok: false, message: "ack: alignmentMs: expected a finite number" });
    expect(decodeControl("ack", bytes({ ...ack, worker: undefined }))).toMatchObject({ ok: false, message: "ack: worker: missing" });
    expect(decodeControl("assignment", bytes({ generation: 1, owners: { "a/0": 7 }, updatedAt: 1 }))).toMatchObject({ ok: false, message: 'assignment: owners["a/0"]: expected a string' });
    expect(decodeControl("assignment", bytes({ generation: 1, owners: [], updatedAt: 1 }))).toMatchObject({ ok: false, message: "assignment: owners: expected an object" });
    expect(decodeControl("ack", bytes({ ...ack, timings: { syncMs: 1, uploadMs: "2", ackWaitMs: 3 } }))).toMatchObject({ ok: false, message: "ack: timings.uploadMs: expected a finite number" });
    expect(decodeControl("spec", bytes({ job: "j", functions: [null], updatedAt: 1 }))).toMatchObject({ ok: false, message: "spec: functions[0]: expected an object" });
    expect(decodeControl("spec", bytes({ job: "j", functions: [{ name: "f", partitions: 0, isSource: false }], updatedAt: 1 }))).toMatchObject({ ok: false, message: "spec: functions[0].partitions: expected a positive safe integer" });
    expect(decodeControl("checkpoint-request", bytes({ job: "" }))).toMatchObject({ ok: false, message: "checkpoint-request: job: expected a non-empty string" });
    // An optional field may be absent, but not null or of another type.
    expect(decodeControl("trigger", bytes({ id: 1, generation: 0, stop: false, savepoint: null }))).toMatchObject({ ok: false, message: "trigger: savepoint: expected a string" });
  });

  it("a heartbeat's progress (design note ci) is optional, but when present holds a bounded map of counts", () => {
    const hb = { id: "w1", pid: 9, startedAt: 1, jobs: ["j"], running: { j: 2 } };
    expect(decodeControl("heartbeat", bytes({ ...hb, progress: { generation: 2, beat: 7, actors: { "agg/0": 120, "src/1": 0 } } })).ok).toBe(true);
    expect(decodeControl("heartbeat", bytes({ ...hb, progress: { generation: 2, beat: 7, actors: { "agg/0": -1 } } }))).toMatchObject({ ok: false, message: 'heartbeat: progress.actors["agg/0"]: expected a non-negative safe integer' });
    expect(decodeControl("heartbeat", bytes({ ...hb, progress: { actors: {} } }))).toMatchObject({ ok: false, message: "heartbeat: progress.generation: missing" });
    expect(decodeControl("heartbeat", bytes({ ...hb, progress: null }))).toMatchObject({ ok: false, message: "heartbeat: progress: expected an object" });
    const many = Object.fromEntries(Array.from({ length: 4097 }, (_, i) => [`f/${i}`, 1]));
    expect(decodeControl("heartbeat", bytes({ ...hb, progress: { generation: 2, beat: 7, actors: many } }))).toMatchObject({ ok: false, message: "heartbeat: progress.actors: expected at most 4096 entries" });
  });

  it("keys named like Object.prototype members are data, not a way into the prototype", () => {
    const d = decodeControl("assignment", bytes('{"generation":1,"owners":{"__proto__":"w9","constructor":"w8"},"updatedAt":1}'));
    expect(d.ok).toBe(true);
    expect(({} as Record<string, unknown>).w9).toBeUndefined();
    expect(validateControl("assignment", { generation: 1, owners: Object.create({ inherited: 5 }), updatedAt: 1 }).ok).toBe(true);
  });

  it("decodeControlOrThrow throws InvalidControlRecordError, an input error naming where", () => {
    expect(() => decodeControlOrThrow("latest", bytes("null"), "j.latest")).toThrow(InvalidControlRecordError);
    expect(() => decodeControlOrThrow("latest", bytes("null"), "j.latest")).toThrow("j.latest: latest: expected an object");
  });
});

describe("checkpoint records and replies", () => {
  const record = { id: 4, generation: 2, status: "committed", startedAt: 1, completedAt: 5, durationMs: 4, bytes: 10, keysChanged: 2, actors: 3, stop: true, savepoint: "sp-x" };

  it("accepts the records and replies the supervisor writes", () => {
    expect(decodeControl("checkpoint", bytes(record))).toEqual({ ok: true, value: record });
    expect(decodeControl("checkpoint", bytes({ id: 5, generation: 2, status: "aborted", startedAt: 1, reason: "timed out" })).ok).toBe(true);
    const perActor = { ...record, perActor: { "agg/0": { alignmentMs: 2, bytes: 10, keysChanged: 2, syncMs: 1, uploadMs: 5, ackWaitMs: 0.5 }, "src/0": { alignmentMs: 0, bytes: 0, keysChanged: 0 } } };
    expect(decodeControl("checkpoint", bytes(perActor))).toEqual({ ok: true, value: perActor });
    expect(decodeControl("checkpoint-reply", bytes({ ok: true, record })).ok).toBe(true);
    expect(decodeControl("checkpoint-reply", bytes({ ok: false, error: { name: "UnknownJobError", message: "no such job" } })).ok).toBe(true);
  });

  it("refuses records of another status, bad numbers, and replies that are neither an answer nor an error", () => {
    expect(decodeControl("checkpoint", bytes({ ...record, status: "done" }))).toMatchObject({ ok: false, message: "checkpoint: status: expected one of in-progress, committed, aborted" });
    expect(decodeControl("checkpoint", bytes({ ...record, startedAt: "1" }))).toMatchObject({ ok: false, message: "checkpoint: startedAt: expected a finite number" });
    expect(decodeControl("checkpoint", bytes({ ...record, bytes: -1 }))).toMatchObject({ ok: false, message: "checkpoint: bytes: expected a non-negative safe integer" });
    expect(decodeControl("checkpoint", bytes({ ...record, perActor: { "agg/0": { alignmentMs: 2, bytes: 10 } } }))).toMatchObject({ ok: false, message: 'checkpoint: perActor["agg/0"].keysChanged: missing' });
    expect(decodeControl("checkpoint-reply", bytes({ ok: true, record: null }))).toMatchObject({ ok: false, message: "checkpoint-reply: record: expected an object" });
    expect(decodeControl("checkpoint-reply", bytes({ ok: "yes" }))).toMatchObject({ ok: false, message: 'checkpoint-reply: ok: expected false' });
    expect(decodeControl("checkpoint-reply", bytes({ ok: false, error: "boom" }))).toMatchObject({ ok: false, message: "checkpoint-reply: error: expected an object" });
    expect(decodeControl("checkpoint-reply", bytes("null"))).toMatchObject({ ok: false, message: "checkpoint-reply: expected an object" });
  });
});

describe("telling what JetStream delivered from what a client published (as nats-server 2.9.10 marks it)", () => {
  const none = () => undefined;
  const headers = (h: Record<string, string>) => (name: string) => h[name];

  it("an ordinary publish, with or without a reply inbox or headers, is the client's", () => {
    expect(jetStreamOrigin(undefined, none, 0)).toBeUndefined();
    expect(jetStreamOrigin("_INBOX.abc.1", none, 0)).toBeUndefined();
    expect(jetStreamOrigin("_INBOX.abc.1", headers({ "Eddy-Kind": "write" }), 0)).toBeUndefined();
  });

  it("a consumer's delivery (any ack policy), flow-control request, idle heartbeat and a direct get's answer are JetStream's", () => {
    expect(jetStreamOrigin("$JS.ACK.S.it960h96.1.1.1.1796416733897771948.0", none, 0)).toMatch(/^delivered by a JetStream consumer \(reply \$JS\.ACK\.S\.it960h96…\)$/);
    expect(jetStreamOrigin("$JS.FC.S.c.x", none, 0)).toMatch(/JetStream consumer/);
    expect(jetStreamOrigin(undefined, headers({ "Nats-Last-Consumer": "c" }), 100)).toBe("a JetStream status message (100)");
    expect(jetStreamOrigin(undefined, headers({ "Nats-Stream": "KV_eddy_a_count", "Nats-Sequence": "1" }), 0)).toBe('served from stream "KV_eddy_a_count" (a direct get)');
  });
});

describe("internal message checks", () => {
  it("a watermark that is NaN is malformed; ±Infinity is not (the end of input, the start)", () => {
    const packr = new Packr({ useRecords: true, mapsAsObjects: true });
    expect(() => decodeWatermark(packr.pack({ w: Number.NaN }))).toThrow(/not an eddy watermark/);
    expect(decodeWatermark(encodeWatermark({ watermark: Infinity })).watermark).toBe(Infinity);
    expect(decodeWatermark(encodeWatermark({ watermark: -Infinity })).watermark).toBe(-Infinity);
  });
});

describe("rejection counts", () => {
  it("count per kind and reason, appear in the metrics text, and log the first ten then powers of two", () => {
    const logged: string[] = [];
    for (let i = 0; i < 40; i++) countRejected("test-kind", "json", `body ${i}`, (l) => logged.push(l));
    expect(rejectedCounts()).toContainEqual({ kind: "test-kind", reason: "json", count: 40 });
    expect(logged).toHaveLength(10 + 2); // 1..10, then 16 and 32
    expect(logged[11]).toBe("rejected test-kind (json, 32 so far): body 31");
    const m = new MetricsText();
    addRejectionMetrics(m);
    expect(m.render()).toContain('eddy_rejected_messages_total{subject_kind="test-kind",reason="json"} 40');
  });
});
