/**
 * The SDK's internal entry: what other runtime modules need from the SDK but function authors
 * must not build on (it may change without notice). Kept apart from `index.ts` (`eddy/sdk`) so
 * that the authors' API is exactly the list exported there.
 */

/** How `windowed()` lays out a function's windows (`FunctionSpec.windowing`), for `eddy state bootstrap`. */
export type { WindowingInfo } from "./function.ts";
/** The `ctx.windows` of a bootstrap module over a windowed function's state and timers. */
export { windowWriter } from "./bootstrap.ts";
