/**
 * The layering of the source tree, checked on the source itself so that it stays as designed
 * (docs/architecture.md, "Layers"). Every import of every module under runtime/ and functions/
 * is read from the files and held against a table of allowed directions; a forbidden import
 * fails with the file, the import and the rule it breaks. The authors' entry `eddy/sdk` is
 * checked too: an explicit list of names, nothing internal in it, and every example an author
 * might copy (functions/, docs/, test fixtures) imports only names it exports.
 *
 * Only literal specifiers are seen: a dynamic `import(expression)` (how workers load a user's
 * pipeline module) names no module in the source and is not a layering edge.
 */
import { readdirSync, readFileSync } from "node:fs";
import { builtinModules } from "node:module";
import { join, posix } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";

const ROOT = fileURLToPath(new URL("../../../", import.meta.url));

// ---------------------------------------------------------------------------------------------
// The rules, as data.
//
// An import target is a repository path ("runtime/core/hash.ts"), a package name ("msgpackr",
// "@nats-io/kv") or a node builtin ("node:fs"). A pattern ending in "/" matches every path or
// package under it; "node:" matches every builtin; any other pattern matches that package (and
// its subpaths). A rule applies to the files under `in` except those under `except`; it either
// lists what those files may import (`only`; a layer lists its own directory) or what they must
// not import (`never`). `knownExceptions` are files that break the rule today, each with why and
// what would fix it: the rule still holds for every other file, and an exception that is no
// longer needed fails the test, so the list can only shrink.
// ---------------------------------------------------------------------------------------------

interface Rule {
  /** The rule in words; the failure message quotes it. */
  readonly rule: string;
  readonly in: readonly string[];
  readonly except?: readonly string[];
  readonly only?: readonly string[];
  readonly never?: readonly string[];
  readonly knownExceptions?: readonly KnownException[];
}

/** A file allowed, for now, to break a rule. */
interface KnownException {
  readonly file: string;
  readonly why: string;
}

const RULES: readonly Rule[] = [
  {
    rule: "the bottom spec module (runtime/spec) imports nothing but itself",
    in: ["runtime/spec/"],
    only: ["runtime/spec/"],
  },
  {
    rule: "the error base classes (runtime/errors.ts), which every layer may use, import nothing",
    in: ["runtime/errors.ts"],
    only: [],
  },
  {
    rule: "runtime/core imports only runtime/spec, the error base classes, node builtins and pure libraries (no NATS, no Effect)",
    in: ["runtime/core/"],
    // @bufbuild/cel: CEL conditions of CEP patterns (runtime/core/cep/conditions.ts; note br).
    only: ["runtime/core/", "runtime/spec/", "runtime/errors.ts", "node:", "msgpackr", "@bufbuild/cel"],
  },
  {
    rule: "runtime/sdk imports only runtime/spec, runtime/core and the error base classes (plus node builtins and pure libraries)",
    in: ["runtime/sdk/"],
    only: ["runtime/sdk/", "runtime/spec/", "runtime/core/", "runtime/errors.ts", "node:", "msgpackr"],
  },
  {
    rule: "NATS client packages (@nats-io/*) are imported only under runtime/nats",
    in: ["runtime/", "functions/"],
    except: ["runtime/nats/"],
    never: ["@nats-io/"],
    // A connection handle alone is no reason for an exception: `NatsConnection` is imported from
    // runtime/nats/connection.ts.
    knownExceptions: [],
  },
  {
    rule: "nothing under runtime/ imports runtime/dev, except the commands that start dev tooling (runtime/cli, runtime/demo)",
    in: ["runtime/"],
    except: ["runtime/dev/", "runtime/cli/", "runtime/demo/"],
    never: ["runtime/dev/"],
  },
  {
    rule: "runtime/process (plumbing shared by long-running commands) imports no other runtime module",
    in: ["runtime/process/"],
    only: ["runtime/process/", "node:", "effect"],
  },
  {
    rule: "product code (runtime/, functions/) imports nothing from test/",
    in: ["runtime/", "functions/"],
    never: ["test/"],
  },
];

/** The directories whose modules the rules govern. */
const GOVERNED = ["runtime", "functions"];

// ---------------------------------------------------------------------------------------------
// Reading imports (pure).
// ---------------------------------------------------------------------------------------------

/**
 * The source with comments and template-literal text blanked out (newlines kept), so that an
 * import shown in a doc comment or generated into a string is not taken for one.
 */
function codeOnly(source: string): string {
  let out = "";
  let i = 0;
  const templateDepth: number[] = []; // brace depth at which each open `${` returns to its template
  let braces = 0;
  const blank = (s: string) => s.replace(/[^\n]/g, " ");
  const readTemplateText = () => {
    // i is just after a "`" or a "}" closing a ${...}; copy blanks until "`" or "${"
    const start = i;
    while (i < source.length) {
      if (source[i] === "\\") i += 2;
      else if (source[i] === "`") {
        out += blank(source.slice(start, i)) + "`";
        i++;
        return;
      } else if (source[i] === "$" && source[i + 1] === "{") {
        out += blank(source.slice(start, i)) + "${";
        i += 2;
        templateDepth.push(braces);
        braces++;
        return;
      } else i++;
    }
    out += blank(source.slice(start));
  };
  while (i < source.length) {
    const c = source[i]!;
    const next = source[i + 1];
    if (c === "/" && next === "/") {
      const end = source.indexOf("\n", i);
      const stop = end === -1 ? source.length : end;
      out += blank(source.slice(i, stop));
      i = stop;
    } else if (c === "/" && next === "*") {
      const end = source.indexOf("*/", i + 2);
      const stop = end === -1 ? source.length : end + 2;
      out += blank(source.slice(i, stop));
      i = stop;
    } else if (c === '"' || c === "'") {
      let j = i + 1;
      while (j < source.length && source[j] !== c && source[j] !== "\n") j += source[j] === "\\" ? 2 : 1;
      out += source.slice(i, j + 1);
      i = j + 1;
    } else if (c === "`") {
      out += "`";
      i++;
      readTemplateText();
    } else if (c === "{") {
      braces++;
      out += c;
      i++;
    } else if (c === "}") {
      braces--;
      out += c;
      i++;
      if (templateDepth.length > 0 && templateDepth[templateDepth.length - 1] === braces) {
        templateDepth.pop();
        readTemplateText();
      }
    } else {
      out += c;
      i++;
    }
  }
  return out;
}

/** Every module specifier a TypeScript/JavaScript module imports or re-exports literally. */
function importsOf(source: string): string[] {
  const code = codeOnly(source);
  const found: string[] = [];
  const patterns = [
    /\b(?:import|export)\b[^;"'`]*?\bfrom\s*(["'])([^"'\n]+)\1/g, // import … from "x", export … from "x"
    /\bimport\s*(["'])([^"'\n]+)\1/g, // import "x"
    /\bimport\s*\(\s*(["'])([^"'\n]+)\1\s*\)/g, // import("x")
  ];
  for (const re of patterns) for (const m of code.matchAll(re)) found.push(m[2]!);
  return [...new Set(found)];
}

/** The package `eddy` maps its own `exports` to files (`eddy/sdk` → runtime/sdk/index.ts). */
type SelfExports = Readonly<Record<string, string>>;

/**
 * What an import in `file` refers to: a repository path for relative imports and for this
 * package's own entries, "node:<name>" for builtins, otherwise the package name.
 */
function targetOf(file: string, specifier: string, self: SelfExports): string {
  if (specifier.startsWith(".")) return posix.normalize(posix.join(posix.dirname(file), specifier));
  if (specifier.startsWith("node:")) return specifier;
  const self_ = self[specifier];
  if (self_ !== undefined) return self_;
  const parts = specifier.split("/");
  const pkg = specifier.startsWith("@") ? parts.slice(0, 2).join("/") : parts[0]!;
  return builtinModules.includes(pkg) ? "node:" + pkg : pkg;
}

function matches(target: string, pattern: string): boolean {
  if (pattern.endsWith("/") || pattern.endsWith(":")) return target.startsWith(pattern);
  return target === pattern || target.startsWith(pattern + "/");
}

function under(file: string, prefixes: readonly string[] | undefined): boolean {
  return (prefixes ?? []).some((p) => file.startsWith(p));
}

/** One forbidden import: which file, which import, which rule. */
interface Violation {
  readonly file: string;
  readonly specifier: string;
  readonly target: string;
  readonly rule: string;
}

/** The imports of `modules` (path → source) that break one of `rules`. */
function violations(modules: ReadonlyMap<string, string>, rules: readonly Rule[], self: SelfExports): Violation[] {
  const out: Violation[] = [];
  for (const [file, source] of modules) {
    const applicable = rules.filter((r) => under(file, r.in) && !under(file, r.except) && !(r.knownExceptions ?? []).some((e) => e.file === file));
    if (applicable.length === 0) continue;
    for (const specifier of importsOf(source)) {
      const target = targetOf(file, specifier, self);
      for (const r of applicable) {
        const broken =
          (r.only !== undefined && !r.only.some((p) => matches(target, p))) || (r.never !== undefined && r.never.some((p) => matches(target, p)));
        if (broken) out.push({ file, specifier, target, rule: r.rule });
      }
    }
  }
  return out;
}

function describeViolation(v: Violation): string {
  const resolved = v.target === v.specifier ? "" : ` (${v.target})`;
  return `${v.file} imports "${v.specifier}"${resolved}, but ${v.rule}`;
}

/** Names an `import { a, type B, c as d } from …` clause brings in (`a`, `B`, `c`). */
function importedNames(clause: string): string[] {
  const braces = /\{([^}]*)\}/.exec(clause);
  if (braces === null) return [];
  return braces[1]!
    .split(",")
    .map((s) => s.trim().replace(/^type\s+/, "").split(/\s+as\s+/)[0]!.trim())
    .filter((s) => s.length > 0);
}

/** Names a module exports through `export { … }`, `export type { … }` and `export <declaration>`. */
function exportedNames(source: string): Set<string> {
  const code = codeOnly(source);
  const names = new Set<string>();
  for (const m of code.matchAll(/\bexport\s+(?:type\s+)?\{([^}]*)\}/g)) {
    for (const part of m[1]!.split(",")) {
      const s = part.trim().replace(/^type\s+/, "");
      if (s === "") continue;
      const [name, alias] = s.split(/\s+as\s+/);
      names.add((alias ?? name)!.trim());
    }
  }
  for (const m of code.matchAll(/\bexport\s+(?:declare\s+)?(?:abstract\s+)?(?:async\s+)?(?:function\*?|class|interface|type|const|let|var|enum)\s+([A-Za-z_$][\w$]*)/g)) {
    names.add(m[1]!);
  }
  return names;
}

// ---------------------------------------------------------------------------------------------
// The repository.
// ---------------------------------------------------------------------------------------------

const SOURCE = /\.(?:ts|mts|cts|js|mjs|cjs)$/;

function walk(dir: string, keep: (path: string) => boolean): string[] {
  const out: string[] = [];
  for (const entry of readdirSync(join(ROOT, dir), { withFileTypes: true })) {
    const path = posix.join(dir, entry.name);
    if (entry.isDirectory()) {
      if (entry.name !== "node_modules") out.push(...walk(path, keep));
    } else if (keep(path)) out.push(path);
  }
  return out;
}

function read(path: string): string {
  return readFileSync(join(ROOT, path), "utf8");
}

function modulesUnder(dirs: readonly string[]): Map<string, string> {
  return new Map(dirs.flatMap((d) => walk(d, (p) => SOURCE.test(p))).map((p) => [p, read(p)] as const));
}

function selfExports(): SelfExports {
  const pkg = JSON.parse(read("package.json")) as { name: string; exports?: Record<string, string> };
  return Object.fromEntries(Object.entries(pkg.exports ?? {}).map(([k, v]) => [posix.join(pkg.name, k), posix.normalize(v)]));
}

/** The TypeScript/JavaScript code blocks of a markdown file. */
function codeBlocks(markdown: string): string[] {
  return [...markdown.matchAll(/^```(?:ts|typescript|js|javascript|mjs)\s*\n([\s\S]*?)^```/gm)].map((m) => m[1]!);
}

// ---------------------------------------------------------------------------------------------
// The specification.
// ---------------------------------------------------------------------------------------------

describe("reading imports from source", () => {
  it("finds static, re-exported, side-effect and literal dynamic imports, across lines", () => {
    const src = [
      'import { a,',
      '  type B } from "./a.ts";',
      'import type { C } from "../c.ts";',
      'export { d } from "./d.ts";',
      'export * from "./e.ts";',
      'import "./f.ts";',
      'const g = await import("./g.ts");',
      'const h = await import(pathOf(x));',
    ].join("\n");
    expect(importsOf(src)).toEqual(expect.arrayContaining(["./a.ts", "../c.ts", "./d.ts", "./e.ts", "./f.ts", "./g.ts"]));
    expect(importsOf(src)).toHaveLength(6);
  });

  it("ignores imports shown in comments and written into template strings", () => {
    const src = [
      "/**",
      ' * @example import { testHarness } from "eddy/testing";',
      " */",
      '// import { x } from "@nats-io/kv";',
      'const code = `import { y } from "${dir}/runtime/dev/z.ts";`;',
      'const s = "// not a comment"; import { w } from "./w.ts";',
    ].join("\n");
    expect(importsOf(src)).toEqual(["./w.ts"]);
  });

  it("resolves relative imports to repository paths, self references through package exports, packages to their name", () => {
    const self = { "eddy/sdk": "runtime/sdk/index.ts" };
    expect(targetOf("runtime/core/operator.ts", "../sdk/state.ts", self)).toBe("runtime/sdk/state.ts");
    expect(targetOf("functions/p/pipeline.ts", "eddy/sdk", self)).toBe("runtime/sdk/index.ts");
    expect(targetOf("runtime/nats/kv.ts", "@nats-io/kv", self)).toBe("@nats-io/kv");
    expect(targetOf("runtime/core/x.ts", "msgpackr/pack", self)).toBe("msgpackr");
    expect(targetOf("runtime/core/x.ts", "fs", self)).toBe("node:fs");
  });
});

describe("the rules catch what they forbid", () => {
  const self = { "eddy/sdk": "runtime/sdk/index.ts" };
  const cases: ReadonlyArray<readonly [string, string, string]> = [
    ["runtime/core/operator.ts", 'import type { FunctionSpec } from "../sdk/function.ts";', "runtime/core imports only"],
    ["runtime/core/x.ts", 'import { Effect } from "effect";', "runtime/core imports only"],
    ["runtime/spec/function.ts", 'import type { TimerQueue } from "../core/timers.ts";', "the bottom spec module"],
    ["runtime/sdk/windows.ts", 'import { x } from "../nats/streams.ts";', "runtime/sdk imports only"],
    ["runtime/actor/partition-actor.ts", 'import { jetstream } from "@nats-io/jetstream";', "@nats-io/*"],
    ["functions/p/pipeline.ts", 'import { Kvm } from "@nats-io/kv";', "@nats-io/*"],
    ["runtime/supervisor/run-supervisor.ts", 'import { waitForSignal } from "../dev/wait-for-signal.ts";', "runtime/dev"],
    ["runtime/deploy/deploy.ts", 'const m = await import("../dev/scale.ts");', "runtime/dev"],
    ["runtime/nats/x.ts", 'import { startNatsServer } from "../../test/support/nats-server.ts";', "test/"],
  ];
  for (const [file, line, rule] of cases) {
    it(`${file}: ${line}`, () => {
      const found = violations(new Map([[file, line]]), RULES, self);
      expect(found.map(describeViolation).join("\n")).toContain(rule);
      expect(describeViolation(found[0]!)).toContain(file);
    });
  }

  it("lets each layer import what it may", () => {
    const allowed = new Map([
      ["runtime/core/operator.ts", 'import type { FunctionSpec } from "../spec/function.ts";\nimport { Packr } from "msgpackr";\nimport { createHash } from "node:crypto";'],
      ["runtime/sdk/windows.ts", 'import { assignWindows } from "../core/windows.ts";\nimport type { WindowSpec } from "../spec/windows.ts";'],
      ["runtime/nats/kv.ts", 'import { Kvm } from "@nats-io/kv";'],
      ["runtime/cli/main.mjs", 'const { runDev } = await import("../dev/run-dev.ts");'],
      ["runtime/demo/run-demo.ts", 'import { startLocalJob } from "../dev/local-job.ts";'],
    ]);
    expect(violations(allowed, RULES, self)).toEqual([]);
  });
});

describe("the source tree keeps the allowed import directions", () => {
  const modules = modulesUnder(GOVERNED);
  const self = selfExports();

  it("has modules in every layer the rules name", () => {
    for (const layer of ["runtime/spec/", "runtime/core/", "runtime/sdk/", "runtime/nats/", "runtime/dev/", "runtime/process/", "functions/"]) {
      expect([...modules.keys()].some((f) => f.startsWith(layer)), layer).toBe(true);
    }
  });

  for (const rule of RULES) {
    it(rule.rule, () => {
      const found = violations(modules, [rule], self).map(describeViolation);
      expect(found, "forbidden imports:\n" + found.join("\n")).toEqual([]);
    });
  }

  it("lists only known exceptions that are still needed", () => {
    const stale: string[] = [];
    for (const rule of RULES) {
      for (const e of rule.knownExceptions ?? []) {
        const source = modules.get(e.file);
        const strict = { ...rule, knownExceptions: [] };
        if (source === undefined || violations(new Map([[e.file, source]]), [strict], self).length === 0) {
          stale.push(`${e.file} no longer breaks "${rule.rule}": remove it from the rule's knownExceptions`);
        }
      }
    }
    expect(stale).toEqual([]);
  });
});

/**
 * Value imports from Effect's index (`from "effect"`) that a module makes: the index loads all
 * of Effect's ~250 modules, ~80 more than a worker uses, at every process start.
 */
function effectIndexImports(source: string): string[] {
  return [...codeOnly(source).matchAll(/\bimport\s+(?!type\b)[^;"'`]*?\bfrom\s*(["'])effect\1/g)].map((m) => m[0].replace(/\s+/g, " "));
}

describe("Effect is imported by module (`effect/Effect`), not through its index", () => {
  it("finds value imports from the index, not type-only ones or module paths", () => {
    expect(effectIndexImports('import { Effect, Scope } from "effect";')).toHaveLength(1);
    expect(effectIndexImports('import type { Scope } from "effect";\nimport * as Effect from "effect/Effect";')).toEqual([]);
  });

  it("holds for every module under runtime/ and functions/", () => {
    const found = [...modulesUnder(GOVERNED)].flatMap(([file, source]) => effectIndexImports(source).map((i) => `${file}: ${i}`));
    expect(found).toEqual([]);
  });
});

describe("eddy/sdk is the authors' API, as an explicit list", () => {
  const index = read("runtime/sdk/index.ts");
  const exported = exportedNames(index);

  it("names every export (no `export *`), so nothing becomes public API by accident", () => {
    expect(codeOnly(index)).not.toMatch(/\bexport\s+\*/);
    expect(exported.size).toBeGreaterThan(0);
  });

  it("exports nothing the internal entry (runtime/sdk/internal.ts) lists", () => {
    const internal = [...exportedNames(read("runtime/sdk/internal.ts"))];
    expect(internal.length).toBeGreaterThan(0);
    expect(internal.filter((n) => exported.has(n))).toEqual([]);
  });

  it("exports no declaration marked @internal in runtime/spec or runtime/sdk", () => {
    const marked: string[] = [];
    for (const [file, source] of modulesUnder(["runtime/spec", "runtime/sdk"])) {
      for (const m of source.matchAll(/@internal\b[\s\S]*?\*\/\s*export\s+(?:declare\s+)?(?:function|class|interface|type|const)\s+([A-Za-z_$][\w$]*)/g)) {
        if (exported.has(m[1]!)) marked.push(`${file}: ${m[1]}`);
      }
    }
    expect(marked).toEqual([]);
  });

  it("is all that functions/, docs/ examples and test fixtures import from it", () => {
    const entry = /^(?:eddy\/sdk|(?:\.\.?\/)+runtime\/sdk(?:\/index\.ts)?)$/;
    const sources: Array<readonly [string, string]> = [
      ...[...modulesUnder(["functions", "docs/examples", "test/fixtures"])],
      ...walk("docs", (p) => p.endsWith(".md")).flatMap((p) => codeBlocks(read(p)).map((code, i) => [`${p} (code block ${i + 1})`, code] as const)),
      ...codeBlocks(read("README.md")).map((code, i) => [`README.md (code block ${i + 1})`, code] as const),
    ];
    const missing: string[] = [];
    let seen = 0;
    for (const [where, source] of sources) {
      for (const m of codeOnly(source).matchAll(/\bimport\s+(?:type\s+)?([^;"'`]*?)\bfrom\s*(["'])([^"'\n]+)\2/g)) {
        if (!entry.test(m[3]!)) continue;
        seen++;
        for (const name of importedNames(m[1]!)) if (!exported.has(name)) missing.push(`${where} imports ${name} from "${m[3]}", which eddy/sdk does not export`);
      }
    }
    expect(seen).toBeGreaterThan(0);
    expect(missing).toEqual([]);
  });
});
