/**
 * Actor processes start with a 16 MB young generation unless whoever starts them sized it.
 */
import { readFileSync } from "node:fs";
import { resolve } from "node:path";
import { describe, expect, it } from "vitest";
import { ACTOR_SEMI_SPACE_MB, youngGenerationFlags } from "../../../runtime/process/young-generation.ts";

const ROOT = resolve(import.meta.dirname, "../../..");

describe("young generation of actor processes", () => {
  it("is sized when nothing sizes it", () => {
    expect(youngGenerationFlags([], undefined)).toEqual(["--max-semi-space-size=16"]);
    expect(youngGenerationFlags(["--enable-source-maps"], "--max-old-space-size=4096")).toEqual(["--max-semi-space-size=16"]);
  });

  it("is left alone when the arguments or NODE_OPTIONS size it, in either spelling, or give the whole heap's size", () => {
    expect(youngGenerationFlags(["--max-semi-space-size=64"], undefined)).toEqual([]);
    expect(youngGenerationFlags([], "--inspect --max_semi_space_size=8")).toEqual([]);
    expect(youngGenerationFlags([], "--max-heap-size=512")).toEqual([]);
  });

  it("is the size bin/eddy.mjs, the container image and `npm run eddy` (which may start a worker) start actor processes with", () => {
    const flag = `--max-semi-space-size=${ACTOR_SEMI_SPACE_MB}`;
    expect(readFileSync(resolve(ROOT, "bin/eddy.mjs"), "utf8")).toContain(`const ACTOR_SEMI_SPACE_MB = ${ACTOR_SEMI_SPACE_MB};`);
    expect(readFileSync(resolve(ROOT, "infra/docker/Dockerfile"), "utf8")).toContain(`ENV NODE_OPTIONS="${flag}"`);
    const scripts = (JSON.parse(readFileSync(resolve(ROOT, "package.json"), "utf8")) as { scripts: Record<string, string> }).scripts;
    expect(scripts.eddy).toBe(`node ${flag} runtime/cli/main.mjs`);
  });
});
