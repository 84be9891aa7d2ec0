/**
 * What `eddy deploy` says is missing before a job can run: source streams that do not exist and
 * sink subjects no stream captures, one line each with the stream that fixes it.
 */
import { describe, expect, it } from "vitest";
import { buildJobGraph } from "../../../runtime/core/job-graph.ts";
import { missingStreams, missingStreamsMessage, natsCommand, sinkStreamName, SINK_DUPLICATE_WINDOW_MS, streamNeeds } from "../../../runtime/deploy/stream-checks.ts";
import { defineFunction, definePipeline, defineSink, fromFunction, fromStream } from "../../../runtime/sdk/index.ts";

const graph = buildJobGraph(
  definePipeline({
    name: "shop",
    functions: [
      defineFunction({ name: "orders", input: fromStream("ORDERS", { subject: (p) => `orders.${p}.>`, partitions: 2 }), process: (ctx, r) => ctx.emit(r) }),
      defineFunction({ name: "audit", input: fromStream("AUDIT"), process: (ctx, r) => ctx.emit(r) }),
      defineSink({ name: "out", input: fromFunction("orders"), subject: "shop.totals" }),
      defineSink({ name: "log", input: fromFunction("audit"), subject: "shop.log", delivery: "at-least-once" }),
      defineSink({ name: "routed", input: fromFunction("orders"), subject: (r: { id: string }) => `shop.by-id.${r.id}` }),
    ],
  }),
);

describe("streamNeeds", () => {
  it("lists source streams with their subject filters and sinks with a fixed subject", () => {
    expect(streamNeeds(graph)).toEqual([
      { kind: "source", job: "shop", fn: "orders", stream: "ORDERS", subjects: ["orders.0.>", "orders.1.>"] },
      { kind: "source", job: "shop", fn: "audit", stream: "AUDIT", subjects: [] },
      { kind: "sink", job: "shop", fn: "out", subject: "shop.totals", exactlyOnce: true },
      { kind: "sink", job: "shop", fn: "log", subject: "shop.log", exactlyOnce: false },
    ]);
  });
});

describe("missingStreams", () => {
  const needs = streamNeeds(graph);

  it("is empty when every source stream exists and every sink subject is captured", () => {
    expect(missingStreams(needs, { existing: new Set(["ORDERS", "AUDIT"]), capturing: new Map([["shop.totals", ["SHOP"]], ["shop.log", ["SHOP"]]]) })).toEqual([]);
  });

  it("names each missing thing once, with a stream to create: sources with their filters, sinks with a duplicate window when exactly-once", () => {
    const missing = missingStreams(needs, { existing: new Set(["AUDIT"]), capturing: new Map([["shop.totals", []], ["shop.log", []]]) });
    expect(missing.map((m) => m.line)).toEqual([
      'source "orders" of job "shop" reads stream ORDERS, which does not exist',
      'sink "out" of job "shop" publishes to shop.totals, which no stream captures',
      'sink "log" of job "shop" publishes to shop.log, which no stream captures',
    ]);
    expect(missing.map((m) => m.fix)).toEqual([
      { name: "ORDERS", subjects: ["orders.0.>", "orders.1.>"], exists: false },
      { name: "SHOP_TOTALS", subjects: ["shop.totals"], exists: false, duplicateWindowMs: SINK_DUPLICATE_WINDOW_MS },
      { name: "SHOP_LOG", subjects: ["shop.log"], exists: false },
    ]);
    expect(missing.every((m) => m.jobs.join() === "shop")).toBe(true);
  });

  it("cannot create a missing source stream that names no subject, and says so", () => {
    const [m] = missingStreams(needs, { existing: new Set(["ORDERS"]), capturing: new Map([["shop.totals", ["S"]], ["shop.log", ["S"]]]) });
    expect(m!.fix).toBeUndefined();
    expect(m!.line).toMatch(/^source "audit" of job "shop" reads stream AUDIT, which does not exist: create it with the subjects your producers publish to \(nats stream add AUDIT/);
  });

  it("adds the subject to a stream of the proposed name that exists but does not capture it", () => {
    const [m] = missingStreams(needs.slice(2, 3), { existing: new Set(), capturing: new Map([["shop.totals", []]]) }, new Set(["SHOP_TOTALS"]));
    expect(m!.fix).toMatchObject({ name: "SHOP_TOTALS", exists: true });
    expect(natsCommand(m!.fix!)).toBe("nats stream edit SHOP_TOTALS --subjects '<its subjects>,shop.totals'");
  });
});

describe("the message", () => {
  it("has one line per missing thing, each with a ready nats command", () => {
    const missing = missingStreams(streamNeeds(graph), { existing: new Set(["AUDIT"]), capturing: new Map([["shop.totals", []], ["shop.log", ["X"]]]) });
    expect(missingStreamsMessage(missing).split("\n")).toEqual([
      "2 streams the job needs are missing (create them, or deploy with --create-streams):",
      `  source "orders" of job "shop" reads stream ORDERS, which does not exist: nats stream add ORDERS --subjects 'orders.0.>,orders.1.>' --storage file --retention limits --discard old --replicas 1 --defaults`,
      `  sink "out" of job "shop" publishes to shop.totals, which no stream captures: nats stream add SHOP_TOTALS --subjects 'shop.totals' --storage file --retention limits --discard old --replicas 1 --dupe-window 120s --defaults`,
    ]);
  });

  it("asks for the replicas eddy uses on the server (3 on a cluster)", () => {
    const missing = missingStreams(streamNeeds(graph), { existing: new Set(), capturing: new Map([["shop.totals", ["X"]], ["shop.log", ["X"]]]) }, new Set(), 3);
    const lines = missingStreamsMessage(missing, 3).split("\n").slice(1);
    expect(lines).toHaveLength(2);
    for (const line of lines) expect(line).toMatch(/ --replicas 3 /);
  });

  it("proposes sink stream names from the subject's tokens", () => {
    expect(sinkStreamName("counter.out")).toBe("COUNTER_OUT");
    expect(sinkStreamName("results.per-minute")).toBe("RESULTS_PER-MINUTE");
  });
});
