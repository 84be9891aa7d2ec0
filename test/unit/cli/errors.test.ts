/** eddy's errors carry what to do about them; the CLI decides output and exit code from that. */
import { describe, expect, it } from "vitest";
import { errorActionOf, InputError, InvalidArgumentError, TransientError, FatalError } from "../../../runtime/errors.ts";
import { partitionOf } from "../../../runtime/core/hash.ts";
import { NatsUnreachableError } from "../../../runtime/nats/connection.ts";
import { UnknownSavepointError } from "../../../runtime/nats/savepoints.ts";
import { CorruptSavepointError } from "../../../runtime/core/savepoint.ts";
import { InvalidWindowSpecError } from "../../../runtime/sdk/windows.ts";

describe("error actions", () => {
  it("a bad name or definition is the caller's to fix", () => {
    expect(errorActionOf(new UnknownSavepointError("no savepoint x"))).toBe("fix-input");
    expect(errorActionOf(new InvalidWindowSpecError("size 0"))).toBe("fix-input");
    expect(new UnknownSavepointError("x")).toBeInstanceOf(InputError);
  });

  it("an unreachable server is worth a retry", () => {
    expect(errorActionOf(new NatsUnreachableError("down"))).toBe("retry");
    expect(new NatsUnreachableError("down")).toBeInstanceOf(TransientError);
  });

  it("damaged stored data is fatal", () => {
    expect(errorActionOf(new CorruptSavepointError("bad manifest"))).toBe("fatal");
    expect(new CorruptSavepointError("x")).toBeInstanceOf(FatalError);
  });

  it("keeps the subclass's name and message", () => {
    const e = new UnknownSavepointError("no savepoint x");
    expect(e.name).toBe("UnknownSavepointError");
    expect(e.message).toBe("no savepoint x");
  });

  it("core validation throws a RangeError the caller must fix", () => {
    let thrown: unknown;
    try {
      partitionOf("k", 0);
    } catch (e) {
      thrown = e;
    }
    expect(thrown).toBeInstanceOf(RangeError);
    expect(thrown).toBeInstanceOf(InvalidArgumentError);
    expect(errorActionOf(thrown)).toBe("fix-input");
  });

  it("JavaScript's and libraries' errors have no action", () => {
    expect(errorActionOf(new RangeError("x"))).toBeUndefined();
    expect(errorActionOf(new Error("x"))).toBeUndefined();
    expect(errorActionOf("x")).toBeUndefined();
  });

  it("recognises an eddy error from another copy of the module (a bundled SDK) by its shape", () => {
    const foreign = Object.assign(new Error("bad window"), { action: "fix-input" });
    expect(errorActionOf(foreign)).toBe("fix-input");
    expect(errorActionOf(Object.assign(new Error("x"), { action: "shrug" }))).toBeUndefined();
  });
});
