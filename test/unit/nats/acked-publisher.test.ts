/**
 * What a JetStream acknowledgement says about the publish it answers (runtime/nats/acked-publisher.ts):
 * stored, or why not. The publisher itself runs against a real nats-server in
 * test/integration/kv-bulk-writes.test.ts.
 */
import { describe, expect, it } from "vitest";
import { ackFailure, parseAck } from "../../../runtime/nats/acked-publisher.ts";
import { pullMessages } from "../../../runtime/nats/streams.ts";

const json = (x: unknown) => new TextEncoder().encode(JSON.stringify(x));

describe("ackFailure", () => {
  it("accepts an acknowledgement naming the stream, duplicates included", () => {
    expect(ackFailure(json({ stream: "KV_b", seq: 7 }), undefined)).toBeUndefined();
    expect(ackFailure(json({ stream: "KV_b", seq: 7, duplicate: true }), undefined)).toBeUndefined();
  });

  it("reports the stream's error with its codes", () => {
    expect(ackFailure(json({ error: { code: 400, err_code: 10071, description: "wrong last sequence: 3" } }), undefined)).toBe("wrong last sequence: 3 (code 400, err_code 10071)");
  });

  it("reports a reply without a responder, or with another error status", () => {
    expect(ackFailure(new Uint8Array(), 503)).toBe("no responders");
    expect(ackFailure(new Uint8Array(), 408)).toBe("status 408");
  });

  it("refuses what is not an acknowledgement", () => {
    expect(ackFailure(new TextEncoder().encode("+OK"), undefined)).toMatch(/not JSON/);
    expect(ackFailure(json(5), undefined)).toMatch(/not an object/);
    expect(ackFailure(json({ seq: 1 }), undefined)).toBe("invalid ack response");
    expect(ackFailure(json({ stream: "", seq: 1 }), undefined)).toBe("invalid ack response");
  });
});

describe("parseAck", () => {
  it("gives where the stream stored the publish, and whether it was a duplicate of an earlier copy", () => {
    expect(parseAck(json({ stream: "OUT", seq: 7 }), undefined)).toEqual({ ok: true, receipt: { stream: "OUT", seq: 7, duplicate: false } });
    expect(parseAck(json({ stream: "OUT", seq: 3, duplicate: true }), undefined)).toEqual({ ok: true, receipt: { stream: "OUT", seq: 3, duplicate: true } });
  });

  it("refuses an acknowledgement without a positive whole sequence (the publisher checks order by it)", () => {
    for (const seq of [undefined, 0, -1, 1.5, "7", Number.MAX_VALUE]) expect(parseAck(json({ stream: "OUT", seq }), undefined)).toEqual({ ok: false, reason: "invalid ack response" });
  });
});


describe("pullMessages", () => {
  it("pulls as many large messages as 8 MiB of the largest the server takes, at least one", () => {
    expect(pullMessages(undefined)).toBe(8);
    expect(pullMessages(1024 * 1024)).toBe(8);
    expect(pullMessages(64 * 1024)).toBe(128);
    expect(pullMessages(8 * 1024 * 1024)).toBe(1);
    expect(pullMessages(64 * 1024 * 1024)).toBe(1);
  });
});
