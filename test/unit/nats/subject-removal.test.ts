import { describe, expect, it } from "vitest";
import { purgeIsSafe } from "../../../runtime/nats/subject-removal.ts";

describe("whether a filtered purge is safe (nats-server replays it at a restart, design note bo)", () => {
  it("is safe on a stream with one copy, whatever the server: there is no Raft log to replay", () => {
    expect(purgeIsSafe("2.9.10", 1)).toBe(true);
    expect(purgeIsSafe(undefined, 1)).toBe(true);
  });

  it("is not safe on a replicated stream before 2.9.18, which replays a purge as removing everything below it", () => {
    expect(purgeIsSafe("2.9.10", 3)).toBe(false);
    expect(purgeIsSafe("2.9.17", 2)).toBe(false);
    expect(purgeIsSafe("2.8.4", 3)).toBe(false);
  });

  it("is safe on a replicated stream from 2.9.18 on, also on later minor and major releases", () => {
    expect(purgeIsSafe("2.9.18", 3)).toBe(true);
    expect(purgeIsSafe("2.10.0", 3)).toBe(true);
    expect(purgeIsSafe("v2.11.3-beta.1", 3)).toBe(true);
    expect(purgeIsSafe("3.0.0", 3)).toBe(true);
  });

  it("counts a version it cannot read as unsafe: deleting message by message is slower, never wrong", () => {
    expect(purgeIsSafe(undefined, 3)).toBe(false);
    expect(purgeIsSafe("", 3)).toBe(false);
    expect(purgeIsSafe("nightly", 3)).toBe(false);
  });
});
