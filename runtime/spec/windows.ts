/**
 * Window shapes as plain data, shared by the authoring API (runtime/sdk), which builds them, and
 * the pure core (runtime/core/windows.ts), which interprets them. They live at the bottom layer
 * because a function spec carries them and both layers read function specs.
 */

/** A window of event time: `start` inclusive, `end` exclusive, both integer milliseconds. */
export interface TimeWindow {
  readonly start: number;
  readonly end: number;
}

/** A window assigner, as plain data. Sizes, slides, gaps and offsets are integer milliseconds. */
export type WindowSpec =
  | { readonly kind: "tumbling"; readonly size: number; readonly offset?: number }
  | { readonly kind: "sliding"; readonly size: number; readonly slide: number; readonly offset?: number }
  | { readonly kind: "session"; readonly gap: number }
  | { readonly kind: "global" };
