/**
 * docs/guides/producing-events.md is executable: every shell example runs as written and prints what the guide shows
 * (how, and what may differ from run to run: test/support/guide-runner.ts).
 */
import { describe, it } from "vitest";
import { runGuide } from "../support/guide-runner.ts";

describe("docs/guides/producing-events.md", () => {
  it("runs as written", async () => {
    await runGuide("docs/guides/producing-events.md");
  }, 300_000);
});
