/**
 * The pause between supervisor polls (design note co): the poll interval, unless woken; a wake
 * during a poll ends the next pause; many wakes make one early poll.
 */
import * as Effect from "effect/Effect";
import * as Fiber from "effect/Fiber";
import { describe, expect, it } from "vitest";
import { makePollWaker } from "../../../runtime/supervisor/poll-waker.ts";

/** Far longer than any test here waits: a pause that ends did so because it was woken. */
const NEVER_MS = 600_000;

const ended = (fiber: Fiber.Fiber<void>) => fiber.pollUnsafe() !== undefined;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe("the pause between polls", () => {
  it("lasts the poll interval when nothing wakes it", async () => {
    const waker = makePollWaker(120, 20);
    const t0 = performance.now();
    await Effect.runPromise(waker.pause);
    expect(performance.now() - t0).toBeGreaterThanOrEqual(110);
  });

  it("ends when woken, after the minimum gap between polls", async () => {
    const waker = makePollWaker(NEVER_MS, 20);
    const fiber = Effect.runFork(waker.pause);
    await sleep(60);
    expect(ended(fiber)).toBe(false);
    waker.wake();
    await Effect.runPromise(Fiber.join(fiber));
  });

  it("keeps a wake that came while no pause ran, for the next pause only", async () => {
    const waker = makePollWaker(NEVER_MS, 10);
    waker.wake();
    waker.wake();
    await Effect.runPromise(waker.pause);
    const next = Effect.runFork(waker.pause);
    await sleep(80);
    expect(ended(next)).toBe(false);
    await Effect.runPromise(Fiber.interrupt(next));
  });

  it("can be interrupted, and a later wake reaches the next pause", async () => {
    const waker = makePollWaker(NEVER_MS, 10);
    const first = Effect.runFork(waker.pause);
    await sleep(30);
    await Effect.runPromise(Fiber.interrupt(first));
    waker.wake();
    await Effect.runPromise(waker.pause);
  });
});
