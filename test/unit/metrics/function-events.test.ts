/** A function's own counters (`ctx.count`) as worker metrics: one `eddy_function_events_total` sample per event. */
import { describe, expect, it } from "vitest";
import type { ActorStats } from "../../../runtime/actor/partition-actor.ts";
import { actorMetrics } from "../../../runtime/metrics/actor-metrics.ts";

const stats = (events?: ReadonlyMap<string, number>) => ({ fn: "views", partition: 3, ...(events === undefined ? {} : { events }) }) as unknown as ActorStats;

describe("eddy_function_events_total", () => {
  it("has one sample per counted event, labelled with it", () => {
    const text = actorMetrics([{ job: "pv", stats: [stats(new Map([["late_records_dropped", 7], ["skipped", 2]]))] }], 0);
    const lines = text.split("\n").filter((l) => l.startsWith("eddy_function_events_total"));
    expect(lines).toEqual([
      'eddy_function_events_total{job="pv",function="views",partition="3",event="late_records_dropped"} 7',
      'eddy_function_events_total{job="pv",function="views",partition="3",event="skipped"} 2',
    ]);
  });

  it("has none for a function that counted nothing", () => {
    expect(actorMetrics([{ job: "pv", stats: [stats(new Map()), stats()] }], 0)).not.toContain("eddy_function_events_total{");
  });
});
