/**
 * The eddy SDK: everything a function author imports.
 *
 * @example
 * import { defineFunction, definePipeline, fromStream, fromFunction, windowed, tumbling, boundedOutOfOrderness } from "eddy/sdk";
 * (`eddy/sdk` resolves inside this repository through package.json `exports`; elsewhere import
 * `runtime/sdk/index.ts` by path.)
 */
export * from "./function.ts";
export * from "./state.ts";
export * from "./windows.ts";
export * from "./joins.ts";
export * from "./watermarks.ts";
