/**
 * Helpers of the CEP specifications: events are short strings ("a1", "b2", "c") whose first
 * letter says what they are, one millisecond apart unless given times; matches are shown as
 * "stage:event,event stage:event" strings so that an expectation reads like the examples of
 * Flink's documentation.
 */
import { matchAll } from "../../../runtime/core/cep/index.ts";
import type { Pattern } from "../../../runtime/spec/cep.ts";
import type { PatternBuilder } from "../../../runtime/sdk/cep.ts";

/** Events from "a1 b c@5" (an optional @time; by default the position). */
export function events(text: string): { value: string; timestamp: number }[] {
  return text.split(/\s+/).filter(Boolean).map((word, i) => {
    const [value, at] = word.split("@");
    return { value: value!, timestamp: at === undefined ? i : Number(at) };
  });
}

/** A predicate: the event starts with `letter`. */
export const is = (letter: string) => (e: string) => e.startsWith(letter);

/** The matches of `p` over `text`, each as "stage:e,e stage:e", in emission order. */
export function matches(p: Pattern | PatternBuilder, text: string): string[] {
  const evs = events(text);
  const data = "toPattern" in p ? p.toPattern() : p;
  return matchAll(data, evs).map((m) =>
    Object.entries(m)
      .filter(([, ids]) => ids.length > 0)
      .map(([stage, ids]) => `${stage}:${ids.map((i) => evs[i]!.value).join(",")}`)
      .join(" "),
  );
}
