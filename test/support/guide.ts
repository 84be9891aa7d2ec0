/**
 * Executable guides: the pieces tests use to run a Markdown guide's shell examples as written
 * and compare what the commands print with what the guide shows. A guide that is run by a test
 * cannot drift from the code without the test failing.
 *
 * - `markdownBlocks` reads the fenced blocks and the `<!-- test: … -->` comments (invisible when
 *   rendered) that tell a test what the prose says in words: start this in the background,
 *   press Ctrl-C there, this block is that process's log.
 * - `words` splits a command line as a shell would for the simple quoting guides use.
 * - `shownLine` turns a line the guide shows into a pattern for a line of real output, with
 *   `normalise`d ids, times, digests and sizes, and a wildcard for `…`.
 * - `findShown` checks shown lines against real output, in order or in any order.
 */

/** A fenced block (`lang` is what follows the backticks, "" for none) or a test comment. */
export type GuideBlock =
  | { readonly kind: "fence"; readonly lang: string; readonly lines: readonly string[]; readonly at: number }
  | { readonly kind: "test"; readonly text: string; readonly at: number };

/** The fenced blocks and `<!-- test: … -->` comments of a Markdown text, in order; `at` is the 1-based line. */
export function markdownBlocks(markdown: string): GuideBlock[] {
  const out: GuideBlock[] = [];
  const lines = markdown.split("\n");
  for (let i = 0; i < lines.length; i++) {
    const raw = lines[i]!;
    const comment = /^<!-- test: (.*) -->$/.exec(raw.trim());
    if (comment !== null) {
      out.push({ kind: "test", text: comment[1]!.trim(), at: i + 1 });
      continue;
    }
    const fence = /^(\s*)```(\S*)\s*$/.exec(raw);
    if (fence === null) continue;
    const indent = fence[1]!.length;
    const body: string[] = [];
    const at = i + 1;
    for (i++; i < lines.length && !/^\s*```\s*$/.test(lines[i]!); i++) body.push(lines[i]!.slice(indent));
    out.push({ kind: "fence", lang: fence[2]!, lines: body, at });
  }
  return out;
}

/** Splits a command line like a shell would for the simple quoting guides use (no escapes, no expansions). */
export function words(line: string): string[] {
  const out: string[] = [];
  for (const m of line.matchAll(/'([^']*)'|"([^"]*)"|(\S+)/g)) out.push(m[1] ?? m[2] ?? m[3]!);
  return out;
}

/**
 * What differs from run to run, and is therefore compared by its shape only. A guide shows
 * real values from one run; a test accepts any value of the same kind in their place.
 */
export const NORMALISED: ReadonlyArray<{ readonly what: string; readonly shown: RegExp; readonly actual: string }> = [
  { what: "ISO timestamps", shown: /\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z/, actual: String.raw`\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z` },
  { what: "dates with times", shown: /\d{4}-\d\d-\d\d \d\d:\d\d:\d\d/, actual: String.raw`\d{4}-\d\d-\d\d \d\d:\d\d:\d\d` },
  { what: "times of day", shown: /\d\d:\d\d:\d\d\.\d{3}/, actual: String.raw`\d\d:\d\d:\d\d\.\d{3}` },
  { what: "worker ids (w-<pid>-<random>)", shown: /\bw-\d+-[a-z0-9]{4}\b/, actual: String.raw`w-\d+-[a-z0-9]{4}` },
  { what: "supervisor ids", shown: /\bsupervisor-\d+-[0-9a-f]{8}\b/, actual: String.raw`supervisor-\d+-[0-9a-f]{8}` },
  { what: "code digests", shown: /\bsha256-[0-9a-f]{12,64}\b/, actual: String.raw`sha256-[0-9a-f]{12,64}` },
  { what: "checkpoint ids", shown: /\bcheckpoint \d+\b/, actual: String.raw`checkpoint \d+` },
  { what: "checkpoint ids before their age (`7 (0.9 s ago)` in `eddy ls`)", shown: /\b\d+(?= \(\d+(?:\.\d+)? s ago\))/, actual: String.raw`\d+` },
  { what: "checkpoint ids and stream positions in KV (`_applied = n`, `_pos = n`)", shown: /(?<=\._(?:applied|pos) = )\d+/, actual: String.raw`\d+` },
  { what: "checkpoint ids in message ids", shown: /(?<=Nats-Msg-Id=[\w-]+\/[\w-]+\/\d+\/\d+\/)\d+/, actual: String.raw`\d+` },
  { what: "durations and ages", shown: /\b\d+(?:\.\d+)? (?:ms|s)\b/, actual: String.raw`\d+(?:\.\d+)? (?:ms|s)` },
  { what: "sizes", shown: /\b\d+ bytes\b/, actual: String.raw`\d+ bytes` },
  { what: "process ids of local workers", shown: /(?<=local workers?: )\d+(?:, \d+)*/, actual: String.raw`\d+(?:, \d+)*` },
  { what: "temporary directories", shown: /\/tmp\/[\w.-]+/, actual: String.raw`/tmp/[\w.-]+` },
];

const escape = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");

/**
 * Where lines may come in any order, what follows from their order: the stream sequence a line
 * starts with, and the index at the end of a message id.
 */
export const REORDERED: ReadonlyArray<{ readonly what: string; readonly shown: RegExp; readonly actual: string }> = [
  { what: "stream sequences at the start of a line", shown: /^\d+(?= )/, actual: String.raw`\d+` },
  { what: "indexes of message ids", shown: /(?<=Nats-Msg-Id=[\w-]+\/[\w-]+\/\d+\/\d+\/\d+\/)\d+/, actual: String.raw`\d+` },
];

/**
 * A pattern for one line the guide shows: `wildcard` (default `…`) stands for anything, the
 * values listed in `NORMALISED` for any value of their kind, and runs of spaces for any (tables
 * align to their widest cell). The whole line must match.
 */
export function shownLine(shown: string, wildcard = "…", reordered = false): RegExp {
  const rules = reordered ? [...REORDERED, ...NORMALISED] : NORMALISED;
  const literal = (text: string): string => {
    // Searched in the whole text from a position, so that look-behinds see what came before.
    let out = "";
    let at = 0;
    while (at < text.length) {
      let first: { index: number; length: number; actual: string } | undefined;
      for (const n of rules) {
        const re = new RegExp(n.shown.source, "g");
        re.lastIndex = at;
        const m = re.exec(text);
        if (m !== null && (first === undefined || m.index < first.index)) first = { index: m.index, length: m[0].length, actual: n.actual };
      }
      if (first === undefined) {
        out += escape(text.slice(at)).replace(/ {2,}/g, " +");
        break;
      }
      out += escape(text.slice(at, first.index)).replace(/ {2,}/g, " +") + first.actual;
      at = first.index + first.length;
    }
    return out;
  };
  return new RegExp(`^${shown.trim().split(wildcard).map(literal).join(".*")}$`);
}

/**
 * Finds the shown lines in `actual`. `inOrder`: each shown line matches a later line than the
 * one before (what one command prints); else each a different line anywhere (logs of processes
 * that run concurrently), and what follows from the order (`REORDERED`) is not compared. A shown line that is only `…` matches nothing and allows gaps. With
 * `whole`, `actual` may have no other lines, unless the guide shows a `…` line. Returns what is
 * missing, or undefined when everything was found.
 */
export function findShown(shown: readonly string[], actual: string, opts: { inOrder: boolean; whole: boolean }): string | undefined {
  const lines = actual.split("\n").map((l) => l.trim()).filter((l) => l !== "");
  const wanted = shown.map((l) => l.trim()).filter((l) => l !== "");
  const gaps = wanted.some((l) => l === "…");
  const patterns = wanted.filter((l) => l !== "…").map((l) => ({ l, re: shownLine(l, "…", !opts.inOrder) }));
  const used = new Set<number>();
  let at = 0;
  for (const p of patterns) {
    let found = -1;
    for (let i = opts.inOrder ? at : 0; i < lines.length; i++) {
      if (!used.has(i) && p.re.test(lines[i]!)) {
        found = i;
        break;
      }
    }
    if (found < 0) return `the line "${p.l}" (as ${p.re}) is not in the output`;
    used.add(found);
    at = found + 1;
  }
  if (opts.whole && !gaps && used.size !== lines.length) return `the output has lines the guide does not show: ${JSON.stringify(lines.filter((_, i) => !used.has(i)))}`;
  return undefined;
}
