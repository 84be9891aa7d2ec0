/** Live parameter changes as the CLI and the job both check them (runtime/core/parameters.ts). */
import { describe, expect, it } from "vitest";
import { checkParameterChange, checkParameterName, currentParameters, parameterSubject, parseParameterValue } from "../../../runtime/core/parameters.ts";

describe("parameter changes", () => {
  it("are { name, value } with a number, string, boolean or null (removal)", () => {
    expect(checkParameterChange({ name: "earlyMs.acme", value: 2_000 })).toEqual({ name: "earlyMs.acme", value: 2_000 });
    expect(checkParameterChange({ name: "mode", value: "fast" })).toEqual({ name: "mode", value: "fast" });
    expect(checkParameterChange({ name: "on", value: false })).toEqual({ name: "on", value: false });
    expect(checkParameterChange({ name: "earlyMs", value: null })).toEqual({ name: "earlyMs", value: null });
  });

  it("refuses anything else with the reason", () => {
    expect(() => checkParameterChange(null)).toThrow("a parameter change is an object { name, value }, got null");
    expect(() => checkParameterChange([1])).toThrow(/got an array/);
    expect(() => checkParameterChange({ name: "a", value: 1, extra: 2 })).toThrow("a parameter change has only name and value, not extra");
    expect(() => checkParameterChange({ name: "a" })).toThrow("parameter a: value is missing (null removes the parameter)");
    expect(() => checkParameterChange({ name: "a", value: { x: 1 } })).toThrow(/value must be a number, a string, a boolean or null, got object/);
    expect(() => checkParameterChange({ name: "a", value: Number.NaN })).toThrow(/finite number/);
    expect(() => checkParameterChange({ name: "a", value: "x".repeat(1_001) })).toThrow(/at most 1000 characters/);
    expect(() => checkParameterChange({ name: "a b", value: 1 })).toThrow(/parameter name must be dot-separated tokens/);
  });

  it("names are subject tokens joined by dots", () => {
    expect(checkParameterName("earlyMs.tenant-7")).toBe("earlyMs.tenant-7");
    for (const bad of ["", ".a", "a.", "a..b", "a*", "a>", "x".repeat(201), 7]) expect(() => checkParameterName(bad)).toThrow();
    expect(parameterSubject("params.views", "earlyMs.acme")).toBe("params.views.earlyMs.acme");
  });
});

describe("the CLI's value argument", () => {
  it("is JSON for numbers, booleans and null, else the text", () => {
    expect(["5000", "2.5", "true", "null", "fast", '"5000"', "[1]", "{"].map(parseParameterValue)).toEqual([5_000, 2.5, true, null, "fast", "5000", "[1]", "{"]);
  });
});

describe("the parameters in force", () => {
  it("are the last value per name, removals dropped", () => {
    expect(currentParameters([
      { name: "a", value: 1 },
      { name: "b", value: 2 },
      { name: "a", value: 3 },
      { name: "b", value: null },
    ])).toEqual({ a: 3 });
  });
});
