/**
 * The YAML `eddy k8s render` prints reads back, with an independent parser (npm `yaml`), as exactly
 * the objects it was made from — under YAML 1.2 and under YAML 1.1, whose booleans (`yes`, `on`…)
 * and number forms Kubernetes' parser still follows.
 */
import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { parse, parseAllDocuments } from "yaml";
import { OVERLAYS, renderManifests, renderYaml, toYaml, type K8sRenderOptions } from "../../../runtime/cli/k8s-render.ts";

const VERSIONS = ["1.1", "1.2"] as const;

function readBack(text: string, version: "1.1" | "1.2"): unknown[] {
  const docs = parseAllDocuments(text, { version, uniqueKeys: true });
  if (!Array.isArray(docs)) throw new Error("empty YAML");
  for (const d of docs) if (d.errors.length > 0) throw new Error(d.errors.map((e) => e.message).join("; "));
  return docs.map((d) => d.toJS({ maxAliasCount: 0 }));
}

/** JSON semantics: -0 is 0, undefined properties are absent. */
const json = (v: unknown) => JSON.parse(JSON.stringify(v)) as unknown;

describe("toYaml", () => {
  const renders: K8sRenderOptions[] = OVERLAYS.flatMap((overlay) => [
    { overlay },
    { overlay, namespace: "n1", workersMin: 0, pipeline: "p/q.ts", sourceConsumers: [{ stream: "S", consumer: "on" }], natsAccount: "$G" },
  ]);
  for (const opts of renders) {
    for (const version of VERSIONS) {
      it(`the rendered manifests read back as the objects (${JSON.stringify(opts)}, YAML ${version})`, () => {
        expect(readBack(renderYaml(opts), version)).toEqual(json(renderManifests(opts)));
      });
    }
  }

  it("quotes what a YAML 1.1 or 1.2 parser would not read as the same string", () => {
    const tricky = ["yes", "No", "ON", "off", "y", "n", "true", "False", "null", "~", "", " x", "x ", "1", "0755", "1e3", "0x1F", "e0", "E+12",
      "1:20", "2024-01-01", "-", "- x", "--flag", "$(POD_NAME)", "$G", "a: b", "a #b", "#x", "@x", "`x`", "'x'", "\"x\"",
      "*x", "&x", "!x", "%x", "|", ">", "[a]", "{a}", "a,b", "?", ":", "=", "<<", ".inf", ".nan", "NaN", "\t", "é", "😀", "a\u0000b"];
    for (const version of VERSIONS) {
      for (const s of tricky) {
        expect(parse(toYaml({ k: s, [s]: s, l: [s] }), { version })).toEqual({ k: s, [s]: s, l: [s] });
      }
    }
  });

  it("writes multi-line strings as literal blocks when they read back exactly, quoted otherwise", () => {
    const conf = "a {\n  b: 1\n}\n\nc: 2\n";
    expect(toYaml({ f: conf })).toBe("f: |\n  a {\n    b: 1\n  }\n\n  c: 2\n");
    expect(toYaml({ f: "x\ny" })).toBe("f: |-\n  x\n  y\n");
    for (const s of [conf, "x\ny", " lead\nx", "x\n\n", "x\n  \ny", "x\r\ny", "\n", "\n\nx", "a\n\tb\n"]) {
      for (const version of VERSIONS) expect(parse(toYaml({ f: s, l: [s, { g: s }] }), { version })).toEqual({ f: s, l: [s, { g: s }] });
    }
  });

  it("round-trips any JSON value (property)", () => {
    const key = fc.string({ maxLength: 8 }).filter((k) => k !== "__proto__");
    const value = fc.letrec((tie) => ({
      any: fc.oneof(
        { depthSize: "small" },
        fc.constant(null),
        fc.boolean(),
        fc.integer(),
        fc.double({ noNaN: true, noDefaultInfinity: true }),
        fc.string(),
        fc.constantFrom("yes", "on", "1.0", "0o7", "multi\nline\n", "x\ny", "- a", "a: b"),
        fc.array(tie("any"), { maxLength: 4 }),
        fc.dictionary(key, tie("any"), { maxKeys: 4 }),
      ),
    })).any;
    fc.assert(
      fc.property(value, (v) => {
        for (const version of VERSIONS) expect(parse(toYaml(v), { version })).toEqual(json(v));
      }),
      { numRuns: 300 },
    );
  });

  it("refuses values JSON cannot carry either", () => {
    expect(() => toYaml({ x: Number.NaN })).toThrow(TypeError);
    expect(() => toYaml({ x: () => 1 })).toThrow(TypeError);
    expect(() => toYaml([undefined])).toThrow(TypeError);
  });
});
