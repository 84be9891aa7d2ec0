/**
 * Which heartbeats bring the supervisor's next poll forward (design note co): what it acts on —
 * a worker joining or removed, the generation its actors run, leaving — and not the progress
 * counters every beat repeats.
 */
import { describe, expect, it } from "vitest";
import { HeartbeatNews, MAX_TRACKED_HEARTBEATS } from "../../../runtime/core/heartbeat-news.ts";
import type { WorkerHeartbeat } from "../../../runtime/core/protocol.ts";

const hb = (over: Partial<WorkerHeartbeat> = {}): WorkerHeartbeat => ({ id: "w1", pid: 1, startedAt: 0, jobs: ["orders"], ...over });

describe("heartbeat news", () => {
  it("is a worker the last poll did not read, once", () => {
    const news = new HeartbeatNews();
    news.polled([["orders.w1", hb()]]);
    expect(news.put("orders.w2", hb({ id: "w2" }))).toBe(true);
    expect(news.put("orders.w2", hb({ id: "w2" }))).toBe(false);
  });

  it("is a change of the generation running, of leaving, or of the jobs; not of progress", () => {
    const news = new HeartbeatNews();
    const base = hb({ running: { orders: 1 }, progress: { generation: 1, beat: 1, actors: { "src/0": 10 } } });
    news.polled([["orders.w1", base]]);
    expect(news.put("orders.w1", { ...base, progress: { generation: 1, beat: 2, actors: { "src/0": 99 } } })).toBe(false);
    expect(news.put("orders.w1", { ...base, running: { orders: 2 } })).toBe(true);
    expect(news.put("orders.w1", { ...base, running: { orders: 2 }, leaving: true })).toBe(true);
    expect(news.put("orders.w1", { ...base, running: { orders: 2 }, leaving: true, jobs: ["orders", "audit"] })).toBe(true);
  });

  it("is the removal of a heartbeat the last poll read, not of one it did not", () => {
    const news = new HeartbeatNews();
    news.polled([["orders.w1", hb()]]);
    expect(news.deleted("orders.w1")).toBe(true);
    expect(news.deleted("orders.w1")).toBe(false);
    expect(news.deleted("orders.w9")).toBe(false);
  });

  it("is measured against the latest poll: what it read is no longer news", () => {
    const news = new HeartbeatNews();
    news.polled([]);
    news.polled([["orders.w2", hb({ id: "w2", running: { orders: 3 } })]]);
    expect(news.put("orders.w2", hb({ id: "w2", running: { orders: 3 } }))).toBe(false);
    // A worker the previous poll read and this one did not (it expired) is news when it beats again.
    news.polled([]);
    expect(news.put("orders.w2", hb({ id: "w2", running: { orders: 3 } }))).toBe(true);
  });

  it("tracks a bounded number of keys: a flood of new ones waits for the regular poll", () => {
    const news = new HeartbeatNews();
    news.polled([]);
    for (let i = 0; i < MAX_TRACKED_HEARTBEATS; i++) expect(news.put(`orders.w${i}`, hb({ id: `w${i}` }))).toBe(true);
    expect(news.put("orders.one-more", hb({ id: "one-more" }))).toBe(false);
    // Known keys still change.
    expect(news.put("orders.w0", hb({ id: "w0", leaving: true }))).toBe(true);
  });
});
