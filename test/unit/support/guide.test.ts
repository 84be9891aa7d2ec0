/**
 * How the guide tests read a guide and compare what it shows with what commands print
 * (test/support/guide.ts): a lenient comparison would let a guide drift, a strict one would fail
 * on every run's new ids and times.
 */
import { describe, expect, it } from "vitest";
import { findShown, markdownBlocks, shownLine, words } from "../../support/guide.ts";

describe("markdownBlocks", () => {
  it("returns fenced blocks with their language and test comments, in order, also inside list items", () => {
    const md = ["# T", "<!-- test: background dev -->", "```sh", "npx eddy dev", "```", "text", "1. item", "   ```", "   out line", "   ```", "```ts", "x", "```"].join("\n");
    expect(markdownBlocks(md)).toEqual([
      { kind: "test", text: "background dev", at: 2 },
      { kind: "fence", lang: "sh", lines: ["npx eddy dev"], at: 3 },
      { kind: "fence", lang: "", lines: ["out line"], at: 8 },
      { kind: "fence", lang: "ts", lines: ["x"], at: 11 },
    ]);
  });
});

describe("words", () => {
  it("splits like a shell for simple quoting", () => {
    expect(words(`client.ts publish-raw '{oops' '{"page":"/x"}' "a b"`)).toEqual(["client.ts", "publish-raw", "{oops", '{"page":"/x"}', "a b"]);
  });
});

describe("shownLine", () => {
  it("accepts other ids, times, digests, checkpoint ids, durations and sizes than the guide's run", () => {
    const re = shownLine("23:47:22.087 [supervisor-16424-a82efe71] counter: checkpoint 1 committed (generation 1, 27 ms, 570 bytes)");
    expect(re.test("09:01:02.003 [supervisor-7-0123abcd] counter: checkpoint 42 committed (generation 1, 3 ms, 12 bytes)")).toBe(true);
    expect(re.test("09:01:02.003 [supervisor-7-0123abcd] counter: checkpoint 42 committed (generation 2, 3 ms, 12 bytes)")).toBe(false);
    expect(shownLine("worker w-16424-13hw: running job counter version 1 (sha256-98ddba224d71)").test("worker w-9-ab12: running job counter version 1 (sha256-0123456789ab)")).toBe(true);
    const ls = shownLine("counter  1        sha256-98ddba224d71  RUNNING  1    0         7 (0.9 s ago)     clicks×1 count×2 out×1");
    expect(ls.test("counter  1        sha256-0123456789ab  RUNNING  1    0         12 (0.4 s ago)    clicks×1 count×2 out×1")).toBe(true);
    expect(ls.test("counter  1        sha256-0123456789ab  RUNNING  2    0         12 (0.4 s ago)    clicks×1 count×2 out×1")).toBe(false); // another generation
  });

  it("compares everything else literally: counts, names and versions must match", () => {
    const re = shownLine('2 counts.clicks {"user":"ann","clicks":1}  [Nats-Msg-Id=clicks/out/0/1/1/1]');
    expect(re.test('2 counts.clicks {"user":"ann","clicks":1} [Nats-Msg-Id=clicks/out/0/1/7/1]')).toBe(true); // another checkpoint
    expect(re.test('2 counts.clicks {"user":"ann","clicks":2}  [Nats-Msg-Id=clicks/out/0/1/1/1]')).toBe(false);
    expect(re.test('2 counts.clicks {"user":"ann","clicks":1}  [Nats-Msg-Id=clicks/out/0/2/1/1]')).toBe(false); // another generation
  });

  it("lets … stand for anything and aligns table columns freely", () => {
    expect(shownLine("eddy_checkpoint_applied{job=\"counter\",function=\"…\",partition=\"…\"} …").test('eddy_checkpoint_applied{job="counter",function="out",partition="0"} 17')).toBe(true);
    expect(shownLine("count             1  w-17833-2kjn-counter    1  -").test("count  1  w-5-abcd-counter  1  -")).toBe(true);
  });

  it("ignores sequences and message-id indexes only where lines may be reordered", () => {
    const line = '4 counts.clicks {"user":"ann","clicks":3}  [Nats-Msg-Id=clicks/out/0/1/9/0]';
    const other = '5 counts.clicks {"user":"ann","clicks":3}  [Nats-Msg-Id=clicks/out/0/1/7/1]';
    expect(shownLine(line).test(other)).toBe(false);
    expect(shownLine(line, "…", true).test(other)).toBe(true);
  });
});

describe("findShown", () => {
  const output = "a 1\nb 2\nc 3\n";

  it("wants a command's output whole and in order unless the guide shows a … line", () => {
    expect(findShown(["a 1", "b 2", "c 3"], output, { inOrder: true, whole: true })).toBeUndefined();
    expect(findShown(["a 1", "c 3"], output, { inOrder: true, whole: true })).toMatch(/lines the guide does not show: \["b 2"\]/);
    expect(findShown(["a 1", "…", "c 3"], output, { inOrder: true, whole: true })).toBeUndefined();
    expect(findShown(["c 3", "a 1", "b 2"], output, { inOrder: true, whole: true })).toMatch(/"a 1"/);
  });

  it("finds log lines in any order, each once", () => {
    expect(findShown(["c 3", "a 1"], output, { inOrder: false, whole: false })).toBeUndefined();
    expect(findShown(["a 1", "a 1"], output, { inOrder: false, whole: false })).toMatch(/"a 1"/);
    expect(findShown(["d 4"], output, { inOrder: false, whole: false })).toMatch(/"d 4"/);
  });
});
