/** Which dead letters `eddy dlq replay` publishes again, and where. */
import { describe, expect, it } from "vitest";
import { planReplay } from "../../../runtime/cli/dlq.ts";
import type { DeadLetter } from "../../../runtime/nats/dead-letters.ts";

const letter = (seq: number, reason: string, sourceSubject?: string): DeadLetter => ({
  seq,
  subject: "eddy.j.dlq.f",
  time: 0,
  data: new Uint8Array([1]),
  headers: { "Eddy-Function": "f", "Eddy-Reason": reason, ...(sourceSubject === undefined ? {} : { "Eddy-Source-Subject": sourceSubject }) },
});
const letters = [letter(1, "undecodable: bad", "in.a"), letter(2, "process: f.process failed", "in.b"), letter(3, "timer: f.onTimer failed")];

describe("planReplay", () => {
  it("all by default; those without a source subject are skipped", () => {
    expect(planReplay(letters, { seqs: [], reason: undefined })).toEqual({
      replay: [{ seq: 1, subject: "in.a" }, { seq: 2, subject: "in.b" }],
      skipped: [{ seq: 3, why: "not from a source stream (no Eddy-Source-Subject)" }],
      unknown: [],
    });
  });
  it("by sequence, naming sequences that do not exist", () => {
    expect(planReplay(letters, { seqs: [2, 9], reason: undefined })).toEqual({ replay: [{ seq: 2, subject: "in.b" }], skipped: [], unknown: [9] });
  });
  it("by reason prefix, combined with sequences", () => {
    expect(planReplay(letters, { seqs: [], reason: "undecodable" }).replay).toEqual([{ seq: 1, subject: "in.a" }]);
    expect(planReplay(letters, { seqs: [1], reason: "process" }).replay).toEqual([]);
  });
});
