/**
 * What a reply to a JetStream message get says (runtime/nats/leader-gets.ts): the stored message,
 * no message, or a failure named for what the caller should do. Replies come from the network
 * and are checked like any other input.
 */
import { describe, expect, it } from "vitest";
import { GetRefusedError, GetStreamNotFoundError, GetTimeoutError, kvOperation, parseMessageGet } from "../../../runtime/nats/leader-gets.ts";

const json = (o: unknown) => new TextEncoder().encode(JSON.stringify(o));
const b64 = (s: string) => Buffer.from(s).toString("base64");
const SUBJECT = "$KV.b.0.n.key";

describe("a message get's reply", () => {
  it("gives the stored message, its data decoded and its KV operation from the headers", () => {
    const m = parseMessageGet(json({ type: "io.nats.jetstream.api.v1.stream_msg_get_response", message: { subject: SUBJECT, seq: 42, data: b64("hello"), time: "2026-12-05T00:00:00Z" } }), undefined, SUBJECT);
    expect(m).toMatchObject({ subject: SUBJECT, seq: 42, operation: "PUT" });
    expect(Buffer.from(m!.data).toString()).toBe("hello");
    const deleted = parseMessageGet(json({ message: { subject: SUBJECT, seq: 43, hdrs: b64("NATS/1.0\r\nKV-Operation: DEL\r\n\r\n") } }), undefined, SUBJECT);
    expect(deleted).toMatchObject({ seq: 43, operation: "DEL" });
    expect(deleted!.data).toHaveLength(0);
  });

  it("gives nothing for a subject without a message (err_code 10037)", () => {
    expect(parseMessageGet(json({ error: { code: 404, err_code: 10037, description: "no message found" } }), undefined, SUBJECT)).toBeUndefined();
  });

  it("names a missing stream, a timeout-like status and any other refusal apart", () => {
    expect(() => parseMessageGet(json({ error: { code: 404, err_code: 10059, description: "stream not found" } }), undefined, SUBJECT)).toThrow(GetStreamNotFoundError);
    expect(() => parseMessageGet(new Uint8Array(0), 503, SUBJECT)).toThrow(GetTimeoutError);
    expect(() => parseMessageGet(json({ error: { code: 500, err_code: 10001, description: "boom" } }), undefined, SUBJECT)).toThrow(/boom.*10001/);
  });

  it("refuses a reply that is not a message of the asked subject with a valid sequence", () => {
    const refused = (data: Uint8Array) => expect(() => parseMessageGet(data, undefined, SUBJECT)).toThrow(GetRefusedError);
    refused(new TextEncoder().encode("not json"));
    refused(json(7));
    refused(json({}));
    refused(json({ message: { subject: "$KV.b.0.n.other", seq: 1, data: b64("x") } }));
    refused(json({ message: { subject: SUBJECT, seq: 0, data: b64("x") } }));
    refused(json({ message: { subject: SUBJECT, seq: 1.5 } }));
    refused(json({ message: { subject: SUBJECT, seq: 1, data: 5 } }));
    refused(json({ message: { subject: SUBJECT, seq: 1, hdrs: {} } }));
  });
});

describe("the KV operation of a stored header block", () => {
  it("reads KV-Operation case-insensitively and takes anything else for a put", () => {
    expect(kvOperation("NATS/1.0\r\nKV-Operation: PURGE\r\nNats-Rollup: sub\r\n\r\n")).toBe("PURGE");
    expect(kvOperation("NATS/1.0\r\nkv-operation:del\r\n\r\n")).toBe("DEL");
    expect(kvOperation("NATS/1.0\r\nOther: DEL\r\n\r\n")).toBe("PUT");
    expect(kvOperation("NATS/1.0\r\nKV-Operation: SOMETHING\r\n\r\n")).toBe("PUT");
  });
});
