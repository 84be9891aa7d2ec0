/**
 * When read loops give the event loop a turn (runtime/actor/loop-turns.ts): once it has not
 * turned for the bound, measured for the whole process, so that one actor's turn counts for all
 * and none keeps the loop busy past the bound because another yielded.
 */
import { describe, expect, it } from "vitest";
import { LoopTurns } from "../../../runtime/actor/loop-turns.ts";

describe("turns of the event loop", () => {
  it("are due once the loop has not turned for the bound, and a turn by anyone resets it", async () => {
    let now = 1000;
    const turns = new LoopTurns(10, () => now);
    expect(turns.due()).toBe(false);
    now += 9;
    expect(turns.due()).toBe(false);
    now += 1;
    expect(turns.due()).toBe(true);
    await turns.turn();
    expect(turns.due()).toBe(false);
  });

  it("let a timer fire while several loops each run a backlog through promises alone", async () => {
    const turns = new LoopTurns(5);
    let fired = 0;
    let stop = false;
    const timer = setInterval(() => fired++, 1);
    const loop = async () => {
      // A read loop over a buffered backlog: nothing but promise continuations, checking now and then.
      for (let i = 0; !stop; i++) {
        await Promise.resolve();
        if (i % 8 === 0 && turns.due()) await turns.turn();
      }
    };
    const loops = [loop(), loop(), loop()];
    const started = performance.now();
    while (fired < 5 && performance.now() - started < 2000) await new Promise<void>((r) => setTimeout(r, 2));
    stop = true;
    clearInterval(timer);
    await Promise.all(loops);
    expect(fired).toBeGreaterThanOrEqual(5);
  });
});
