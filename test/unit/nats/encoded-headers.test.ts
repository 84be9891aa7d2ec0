/**
 * Headers encoded by eddy for its per-record publishes must be the bytes nats.js's own headers
 * would put on the wire, and refuse what nats.js refuses.
 */
import { headers as natsHeaders } from "@nats-io/transport-node";
import { describe, expect, it } from "vitest";
import { kvDeleteHeaders } from "../../../runtime/nats/acked-publisher.ts";
import { encodedHeaders, InvalidHeaderError } from "../../../runtime/nats/encoded-headers.ts";

// `encode()` is what nats.js's publish calls; the public MsgHdrs type does not declare it.
const text = (h: unknown) => (h === undefined ? undefined : new TextDecoder().decode((h as { encode(): Uint8Array }).encode()));

function viaNats(record: Record<string, string> | undefined, msgId?: string): string {
  const h = natsHeaders();
  for (const [k, v] of Object.entries(record ?? {})) h.set(k, v);
  if (msgId !== undefined) h.set("Nats-Msg-Id", msgId);
  return text(h)!;
}

describe("encoded headers", () => {
  it("are the bytes nats.js encodes, for a message id alone, eddy headers alone and both", () => {
    const cases: Array<[Record<string, string> | undefined, string | undefined]> = [
      [undefined, "abc123.7"],
      [{ "Eddy-Producer": "count/3", "Eddy-Epoch": "12" }, undefined],
      [{ "Eddy-Producer": "count/3", "Eddy-Key": '"k-\u00e9\u4e2d"' }, "job/fn/0/1/2/3"],
      [{ "Eddy-Row-Kind": "  +U  " }, "id"],
      [{ "Nats-Msg-Id": "replaced" }, "given"],
    ];
    for (const [record, msgId] of cases) expect(text(encodedHeaders(record, msgId))).toBe(viaNats(record, msgId));
  });

  it("make KV's deletion marker as nats.js's KV client writes it", () => {
    expect(text(kvDeleteHeaders())).toBe(viaNats({ "KV-Operation": "DEL" }));
  });

  it("are absent when there is nothing to send", () => {
    expect(encodedHeaders(undefined)).toBeUndefined();
  });

  it("refuse a value with CR or LF and a name with a colon, a space or a control character, as nats.js does", () => {
    for (const value of ["a\r\nInjected: 1", "line\n"]) {
      expect(() => encodedHeaders({ "Eddy-Key": value })).toThrow(InvalidHeaderError);
      expect(() => viaNats({ "Eddy-Key": value })).toThrow();
    }
    expect(() => encodedHeaders(undefined, "id\r\n")).toThrow(InvalidHeaderError);
    for (const name of ["Bad:Name", "Bad Name", "Bad\u0001", "", "Caf\u00e9"]) {
      expect(() => encodedHeaders({ [name]: "v" })).toThrow(InvalidHeaderError);
      if (name !== "") expect(() => viaNats({ [name]: "v" })).toThrow();
    }
  });
});
