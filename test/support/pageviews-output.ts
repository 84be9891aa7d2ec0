/**
 * What the page-view pipeline published, and the check that it equals the batch computation
 * over the same input: the integration tests that kill, restart or disturb that job all end with
 * it. Windows and late records are compared as multisets (order depends on checkpoint timing).
 */
import { expect } from "vitest";
import type { NatsConnection } from "../../runtime/nats/connection.ts";
import { readAll } from "../../runtime/nats/streams.ts";
import { expectedResults } from "../../functions/pageviews/expected.ts";
import type { PageWindow } from "../../functions/pageviews/pipeline.ts";

const decoder = new TextDecoder();

/** Records as sorted JSON texts, so that two lists compare as multisets. */
export const canonical = (xs: readonly unknown[]) => xs.map((x) => JSON.stringify(x)).sort();

/**
 * Expects the RESULTS stream to hold exactly the windows and late records a plain loop over
 * `messages` computes, and (unless `deadLetters` is false) as many dead letters.
 */
export async function expectExactPageviews(nc: NatsConnection, messages: Parameters<typeof expectedResults>[0], opts: { readonly deadLetters?: boolean } = {}): Promise<void> {
  const expected = expectedResults(messages);
  const windows = (await readAll(nc, "RESULTS", "results.pageviews.windows")).map((m) => JSON.parse(decoder.decode(m.data)) as PageWindow);
  const late = (await readAll(nc, "RESULTS", "results.pageviews.late")).map((m) => JSON.parse(decoder.decode(m.data)) as unknown);
  expect(canonical(windows)).toEqual(canonical(expected.windows));
  expect(canonical(late)).toEqual(canonical(expected.late));
  if (opts.deadLetters !== false) expect(await readAll(nc, "EDDY_pageviews_DLQ")).toHaveLength(expected.deadLettered);
}
