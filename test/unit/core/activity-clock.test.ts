import { describe, expect, it } from "vitest";
import { ActivityClock } from "../../../runtime/core/activity-clock.ts";

describe("an actor's activity clock", () => {
  it("charges the time between changes to the activity that was current", () => {
    const c = new ActivityClock(0);
    c.switchTo("busy", 100);
    c.switchTo("backpressured", 250);
    c.switchTo("busy", 300);
    c.switchTo("idle", 400);
    expect(c.total(1000)).toEqual({ busyMs: 250, backpressuredMs: 50, idleMs: 700 });
    expect(c.activity).toBe("idle");
  });

  it("splits the last second, whatever came before it", () => {
    const c = new ActivityClock(0);
    c.switchTo("busy", 0);
    c.switchTo("idle", 60_000); // a minute busy, then 300 ms idle, then backpressured
    c.switchTo("backpressured", 60_300);
    expect(c.perSecond(61_000)).toEqual({ busyMs: 0, backpressuredMs: 700, idleMs: 300 });
    expect(c.perSecond(61_150)).toEqual({ busyMs: 0, backpressuredMs: 850, idleMs: 150 });
    expect(c.total(61_300)).toEqual({ busyMs: 60_000, backpressuredMs: 1000, idleMs: 300 });
  });

  it("covers only what the clock has seen, and adds up to a second once a second has passed", () => {
    const c = new ActivityClock(1_000);
    c.switchTo("busy", 1_050);
    expect(c.perSecond(1_500)).toEqual({ busyMs: 450, backpressuredMs: 0, idleMs: 50 });
    const s = c.perSecond(5_432);
    expect(s.busyMs + s.backpressuredMs + s.idleMs).toBe(1000);
    expect(s.busyMs).toBe(1000);
  });

  it("counts nothing for a clock that goes back", () => {
    const c = new ActivityClock(1_000);
    c.switchTo("busy", 900);
    expect(c.total(950)).toEqual({ busyMs: 0, backpressuredMs: 0, idleMs: 0 });
  });
});
