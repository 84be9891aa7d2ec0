/**
 * Reading an input ahead of its handling (runtime/actor/read-ahead.ts): every message comes out
 * once and in order, the window never holds more than its depth, each message is announced as it
 * enters the window — before the caller reaches it — and a failure of the input comes out after
 * the messages read before it.
 */
import { describe, expect, it } from "vitest";
import { readAhead } from "../../../runtime/actor/read-ahead.ts";

/** An input whose messages the test releases one by one, counting how many were asked for. */
function controlledInput(total: number, failAt?: number) {
  let released = 0;
  let asked = 0;
  let wake: (() => void) | undefined;
  const input: AsyncIterable<number> = {
    [Symbol.asyncIterator]: () => ({
      async next() {
        const i = asked++;
        while (released <= i && i < total) await new Promise<void>((r) => (wake = r));
        if (i === failAt) throw new Error(`input failed at ${i}`);
        return i < total ? { done: false, value: i } : { done: true, value: undefined };
      },
    }),
  };
  return {
    input,
    release(n: number) {
      released += n;
      wake?.();
    },
    get asked() {
      return asked;
    },
  };
}

const tick = () => new Promise<void>((r) => setImmediate(r));

describe("reading ahead", () => {
  it("yields every message once, in order, and announces each before the caller takes it", async () => {
    const arrivals: number[] = [];
    const taken: number[] = [];
    const source = controlledInput(50);
    source.release(50);
    for await (const m of readAhead(source.input, 4, (m) => arrivals.push(m))) {
      expect(arrivals).toContain(m);
      taken.push(m);
    }
    expect(taken).toEqual(Array.from({ length: 50 }, (_, i) => i));
    expect(arrivals).toEqual(taken);
  });

  it("reads ahead while the caller is busy, but never more than the depth", async () => {
    const arrivals: number[] = [];
    const source = controlledInput(20);
    source.release(20);
    const it = readAhead(source.input, 3, (m) => arrivals.push(m))[Symbol.asyncIterator]();
    expect((await it.next()).value).toBe(0);
    // The caller handles message 0; meanwhile the window fills up to its depth, no further.
    for (let i = 0; i < 10; i++) await tick();
    expect(arrivals).toEqual([0, 1, 2, 3]);
    expect((await it.next()).value).toBe(1);
    for (let i = 0; i < 10; i++) await tick();
    expect(arrivals).toEqual([0, 1, 2, 3, 4]);
  });

  it("waits for messages that are not there yet", async () => {
    const source = controlledInput(3);
    const it = readAhead(source.input, 8, () => undefined)[Symbol.asyncIterator]();
    const first = it.next();
    await tick();
    source.release(1);
    expect(await first).toEqual({ done: false, value: 0 });
    const second = it.next();
    source.release(2);
    expect(await second).toEqual({ done: false, value: 1 });
    expect(await it.next()).toEqual({ done: false, value: 2 });
    expect(await it.next()).toEqual({ done: true, value: undefined });
  });

  it("gives the input's failure after the messages read before it", async () => {
    const source = controlledInput(10, 3);
    source.release(10);
    const taken: number[] = [];
    await expect(
      (async () => {
        for await (const m of readAhead(source.input, 8, () => undefined)) taken.push(m);
      })(),
    ).rejects.toThrow("input failed at 3");
    expect(taken).toEqual([0, 1, 2]);
  });

  it("stops reading when the caller stops", async () => {
    const source = controlledInput(100);
    source.release(100);
    for await (const m of readAhead(source.input, 4, () => undefined)) if (m === 5) break;
    for (let i = 0; i < 10; i++) await tick();
    expect(source.asked).toBeLessThanOrEqual(5 + 4 + 1);
  });
});
