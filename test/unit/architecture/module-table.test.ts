/**
 * The module table of docs/architecture.md ("Modules") is where a reader finds what each file
 * under runtime/ is for; it drifted once already, as files were added, moved and split. So the
 * table is checked against the tree: every file under runtime/ must be named in the row of its
 * folder, and every file a row names must exist there.
 *
 * How the table is read: each row's first cell names a folder (`runtime/core`) or a single file
 * (`runtime/errors.ts`); the file names in backticks in its last cell (`hash.ts`, no slash; the console's `index.html` and `console.css` too) are
 * files of that folder. Other backticked words there (function names, flags) are not files.
 */
import { readdirSync, readFileSync } from "node:fs";
import { join, posix } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";

const ROOT = fileURLToPath(new URL("../../../", import.meta.url));

/** Every file under `dir` (a repository path), as repository paths. */
function filesUnder(dir: string): string[] {
  return readdirSync(join(ROOT, dir), { withFileTypes: true }).flatMap((e) => {
    const path = posix.join(dir, e.name);
    return e.isDirectory() ? filesUnder(path) : [path];
  });
}

/** The rows of the table under `## Modules`: the module a row names and the files it lists. */
function moduleTable(markdown: string): Array<{ module: string; files: string[] }> {
  const start = markdown.indexOf("\n## Modules\n");
  if (start === -1) throw new Error('docs/architecture.md has no "## Modules" section');
  const end = markdown.indexOf("\n## ", start + 1);
  const section = markdown.slice(start, end === -1 ? undefined : end);
  const rows: Array<{ module: string; files: string[] }> = [];
  for (const line of section.split("\n")) {
    // Cells are split on pipes that are not escaped (`ls\|show` is one cell).
    const cells = line.split(/(?<!\\)\|/).map((c) => c.trim());
    if (cells.length < 4 || !line.startsWith("|")) continue;
    const module = /^`(runtime\/[^`]*)`$/.exec(cells[1]!)?.[1];
    if (module === undefined) continue;
    const folder = module.endsWith(".ts") ? posix.dirname(module) : module;
    const named = [...cells[cells.length - 2]!.matchAll(/`([\w.-]+\.(?:ts|mjs|html|css))`/g)].map((m) => posix.join(folder, m[1]!));
    rows.push({ module, files: named });
  }
  return rows;
}

describe("moduleTable", () => {
  it("reads a row's folder or file and the file names of its last cell, not other words", () => {
    const md = [
      "# x",
      "## Modules",
      "| Module | Responsibility | Files |",
      "| --- | --- | --- |",
      "| `runtime/core` | Pure. | `hash.ts` (`fnv1a32`), `state.ts` (`state get\\|scan`, `runtime/sdk/x.ts`) |",
      "| `runtime/errors.ts` | Errors. | `errors.ts` |",
      "## Names",
      "| `runtime/later` | not in the section | `a.ts` |",
    ].join("\n");
    expect(moduleTable(md)).toEqual([
      { module: "runtime/core", files: ["runtime/core/hash.ts", "runtime/core/state.ts"] },
      { module: "runtime/errors.ts", files: ["runtime/errors.ts"] },
    ]);
  });
});

describe("docs/architecture.md's module table", () => {
  const table = moduleTable(readFileSync(join(ROOT, "docs/architecture.md"), "utf8"));
  const listed = new Set(table.flatMap((r) => r.files));
  const files = filesUnder("runtime");

  it("names every file under runtime/, in the row of its folder", () => {
    expect(files.length).toBeGreaterThan(50);
    expect(files.filter((f) => !listed.has(f)), "files under runtime/ missing from the module table of docs/architecture.md").toEqual([]);
  });

  it("names no file that does not exist", () => {
    const existing = new Set(files);
    expect([...listed].filter((f) => !existing.has(f)), "files named in the module table that are not under runtime/").toEqual([]);
  });

  it("has one row per folder under runtime/ (a file directly under runtime/ is a row of its own)", () => {
    const modules = table.map((r) => r.module);
    const folders = [...new Set(files.map((f) => (posix.dirname(f) === "runtime" ? f : posix.dirname(f))))];
    expect([...modules].sort()).toEqual([...folders].sort());
  });
});
