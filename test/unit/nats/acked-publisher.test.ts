/**
 * What a JetStream acknowledgement says about the publish it answers (runtime/nats/acked-publisher.ts):
 * stored, or why not. The publisher itself runs against a real nats-server in
 * test/integration/kv-bulk-writes.test.ts.
 */
import { describe, expect, it } from "vitest";
import { ackFailure } from "../../../runtime/nats/acked-publisher.ts";

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
