/**
 * The eddy SDK: everything a function author imports.
 *
 * @example
 * import { defineFunction, definePipeline, fromStream, fromFunction, windowed, tumbling, boundedOutOfOrderness } from "eddy/sdk";
 * import { testHarness } from "eddy/testing"; // in unit tests: a separate entry, so deployed bundles do not carry it
 * (`eddy/sdk` resolves inside this repository through package.json `exports`; elsewhere import
 * `runtime/sdk/index.ts` by path.)
 */
export * from "./function.ts";
export * from "./state.ts";
export * from "./windows.ts";
export * from "./joins.ts";
export * from "./watermarks.ts";
export * from "./bootstrap.ts";
