/**
 * A JetStream publish to a subject no stream captures is answered by nobody; the client calls
 * that "jetstream is not enabled". The transport says what it means instead, and leaves every
 * other error as it is.
 */
import { describe, expect, it } from "vitest";
import { explainPublishFailure, NoStreamForSubjectError } from "../../../runtime/nats/transport.ts";
import { WriteUnacknowledgedError } from "../../../runtime/actor/ports.ts";

class JetStreamNotEnabled extends Error {
  override readonly name = "JetStreamNotEnabled";
}

describe("explainPublishFailure", () => {
  it("names the subject no stream captures", () => {
    const e = explainPublishFailure("results.x", new JetStreamNotEnabled("jetstream is not enabled"));
    expect(e).toBeInstanceOf(NoStreamForSubjectError);
    expect((e as Error).message).toBe("no stream captures subject results.x (create a stream for it; the server answered: jetstream is not enabled)");
    expect((e as Error).cause).toBeInstanceOf(JetStreamNotEnabled);
  });

  it("recognises a bare no-responders error too", () => {
    expect(explainPublishFailure("a.b", new Error("503 no responders"))).toBeInstanceOf(NoStreamForSubjectError);
  });

  it("passes other errors through unchanged", () => {
    const denied = new Error("Permissions Violation for Publish to a.b");
    expect(explainPublishFailure("a.b", denied)).toBe(denied);
    expect(explainPublishFailure("a.b", denied, true)).toBe(denied);
  });

  it("calls a timeout a write that may pass when repeated", () => {
    class TimeoutError extends Error {
      override readonly name = "TimeoutError";
    }
    const e = explainPublishFailure("a.b", new TimeoutError("timeout"));
    expect(e).toBeInstanceOf(WriteUnacknowledgedError);
    expect((e as Error).message).toBe("publish to a.b not acknowledged (timeout)");
  });

  it("on a cluster calls no responder a stream electing its leader, not a missing stream", () => {
    expect(explainPublishFailure("a.b", new JetStreamNotEnabled("jetstream is not enabled"), true)).toBeInstanceOf(WriteUnacknowledgedError);
    expect(explainPublishFailure("a.b", new Error("503 no responders"), true)).toBeInstanceOf(WriteUnacknowledgedError);
  });
});
