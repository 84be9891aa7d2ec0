/**
 * The test harness runs a batched source message (`format: "json-lines" | "msgpack-batch"`) as a
 * worker does: every event keyed and timed on its own, the refused ones reported after the rest
 * ran (a worker dead-letters them alone).
 */
import { describe, expect, it } from "vitest";
import { change, defineFunction, fromStream, valueState } from "../../../runtime/sdk/index.ts";
import { RecordRejectedError, testHarness } from "../../../runtime/sdk/test-harness.ts";
import { encodeValue } from "../../../runtime/core/wire.ts";

interface Click {
  readonly user: string;
  readonly ts: number;
}

const counter = (format: "json-lines" | "msgpack-batch") =>
  defineFunction<Click, { user: string; n: number; ts: number }, { n: ReturnType<typeof valueState<number>> }>({
    name: "count",
    input: fromStream("CLICKS", { format }),
    key: (c) => c.user,
    timestamp: (c) => c.ts,
    state: { n: valueState<number>() },
    process(ctx, c) {
      ctx.emit({ user: ctx.key, n: ctx.state.n.update((n) => (n ?? 0) + 1), ts: ctx.timestamp });
    },
  });

describe("sendMessage on a batched source", () => {
  it("processes every event of a json-lines payload with its own key and timestamp", () => {
    const h = testHarness(counter("json-lines"));
    h.sendMessage('{"user":"a","ts":1}\n{"user":"b","ts":2}\n{"user":"a","ts":3}\n');
    expect(h.output()).toEqual([
      { user: "a", n: 1, ts: 1 },
      { user: "b", n: 1, ts: 2 },
      { user: "a", n: 2, ts: 3 },
    ]);
  });

  it("takes the events as an array or a msgpack payload", () => {
    const h = testHarness(counter("msgpack-batch"));
    h.sendMessage([{ user: "a", ts: 1 }]);
    h.sendMessage(encodeValue([{ user: "a", ts: 2 }, { user: "c", ts: 3 }]));
    expect(h.output().map((o) => [o.user, o.n])).toEqual([["a", 1], ["a", 2], ["c", 1]]);
  });

  it("keeps the good events of a batch and reports the refused ones by index", () => {
    const h = testHarness(counter("json-lines"));
    let error: unknown;
    try {
      h.sendMessage('{"user":"a","ts":1}\n{oops\n{"user":7,"ts":2}\n{"user":"a","ts":3}');
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(RecordRejectedError);
    expect((error as RecordRejectedError).reason).toMatch(/^undecodable: .* \(event 1 of 4\); key: key selector returned number, not a string \(event 2 of 4\)$/);
    expect(h.output().map((o) => o.n)).toEqual([1, 2]);
  });

  it("maps each event of a batched changelog source to its Changes", () => {
    const h = testHarness(
      defineFunction<{ rowKind: string; row: number }, string>({
        name: "rows",
        input: fromStream("ROWS", { format: "json-lines", changelog: (raw) => (raw === 2 ? [change(2, "-U"), change(3, "+U")] : change(raw)) }),
        process(ctx, c) {
          ctx.emit(`${c.rowKind}${c.row}`);
        },
      }),
    );
    h.sendMessage("1\n2");
    expect(h.output()).toEqual(["+I1", "-U2", "+U3"]);
  });

  it("refuses what is not a batch", () => {
    const h = testHarness(counter("msgpack-batch"));
    expect(() => h.sendMessage({ user: "a", ts: 1 })).toThrow(TypeError);
    expect(() => h.sendMessage(encodeValue({ user: "a" }))).toThrow(RecordRejectedError);
  });
});
