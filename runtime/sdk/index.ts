/**
 * The eddy SDK: everything a function author imports.
 *
 * @example
 * import { defineFunction, definePipeline, fromStream, fromFunction, windowed, tumbling, boundedOutOfOrderness } from "eddy/sdk";
 */
export * from "./function.ts";
export * from "./state.ts";
export * from "./windows.ts";
export * from "./watermarks.ts";
