import { describe, expect, it } from "vitest";
import { readAckReply, type AckReplyFields } from "../../../runtime/nats/ack-reply.ts";

const fresh = (): AckReplyFields => ({ streamSequence: -1, deliverySequence: -1, pending: -1, nanosStart: -1, nanosEnd: -1 });

function read(reply: string) {
  const f = fresh();
  if (!readAckReply(reply, f)) return undefined;
  return { streamSequence: f.streamSequence, deliverySequence: f.deliverySequence, pending: f.pending, nanos: reply.slice(f.nanosStart, f.nanosEnd) };
}

describe("readAckReply", () => {
  it("reads the sequences, pending count and timestamp of a current server's subject (domain, account hash, random token)", () => {
    expect(read("$JS.ACK._.ACCHASH.Q0_IN.eddy_in_x1.1.4217.4216.1733400000123456789.2048.k2j3h4")).toEqual({
      streamSequence: 4217,
      deliverySequence: 4216,
      pending: 2048,
      nanos: "1733400000123456789",
    });
  });

  it("reads eleven tokens (no random token) and a named domain the same way", () => {
    expect(read("$JS.ACK.hub.ACCHASH.S.C.3.10.7.1700000000000000000.0")).toEqual({ streamSequence: 10, deliverySequence: 7, pending: 0, nanos: "1700000000000000000" });
  });

  it("reads an old server's nine tokens (no domain, no account hash)", () => {
    expect(read("$JS.ACK.S.C.1.99.98.1700000000000000000.5")).toEqual({ streamSequence: 99, deliverySequence: 98, pending: 5, nanos: "1700000000000000000" });
  });

  it("refuses what is not a JetStream delivery subject", () => {
    for (const reply of ["", "_INBOX.abc", "$JS.ACK.S.C.1.2.3", "$JS.ACK.a.b.S.C.1.2.3.4", "$JS.NAK.S.C.1.99.98.1700000000000000000.5"]) expect(read(reply)).toBeUndefined();
  });

  it("refuses numbers that are not plain digits instead of guessing", () => {
    expect(read("$JS.ACK._.H.S.C.1.12x.11.1700000000000000000.0.r")).toBeUndefined();
    expect(read("$JS.ACK._.H.S.C.1.12.-1.1700000000000000000.0.r")).toBeUndefined();
    expect(read("$JS.ACK._.H.S.C.1.12.11.1700000000000000000..r")).toBeUndefined();
    expect(read("$JS.ACK._.H.S.C.1.12.11..0.r")).toBeUndefined();
  });
});
