/**
 * The job spec a deployment record implies (what `/scaling` counts for a job no worker has run
 * yet), and which internal messages are records for the lag.
 */
import { describe, expect, it } from "vitest";
import { specOfDeployment, type DeploymentRecord } from "../../../runtime/nats/deployments.ts";
import { isRecordKind } from "../../../runtime/nats/lag.ts";

const record = (functions: DeploymentRecord["functions"]): DeploymentRecord => ({
  job: "clicks",
  version: 3,
  digest: "sha256-x",
  pipeline: "clicks",
  source: "clicks.ts",
  deployedAt: 1_000,
  functions,
});

describe("specOfDeployment", () => {
  it("names the source streams and subject filters and the other functions' partitions", () => {
    const spec = specOfDeployment(
      record([
        { name: "read", partitions: 2, state: {}, source: { stream: "CLICKS", subjects: ["c.0.>", "c.1.>"] } },
        { name: "count", partitions: 8, state: { n: { kind: "value", version: 1 } } },
      ]),
    );
    expect(spec).toEqual({
      job: "clicks",
      functions: [
        { name: "read", partitions: 2, isSource: true, stream: "CLICKS", subjects: ["c.0.>", "c.1.>"] },
        { name: "count", partitions: 8, isSource: false },
      ],
      updatedAt: 1_000,
    });
  });

  it("is undefined for records that do not name their sources (written by older versions)", () => {
    expect(specOfDeployment(record([{ name: "count", partitions: 8, state: {} }]))).toBeUndefined();
  });
});

describe("isRecordKind", () => {
  it("counts data and state writes, not barriers or watermark updates", () => {
    expect(["data", "write"].map(isRecordKind)).toEqual([true, true]);
    expect(["barrier", "watermark", "idle", "end"].map(isRecordKind)).toEqual([false, false, false, false]);
  });

  it("counts a message without a kind (a user stream's) as a record", () => {
    expect(isRecordKind(undefined)).toBe(true);
  });
});
