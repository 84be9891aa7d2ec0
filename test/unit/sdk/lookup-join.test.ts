/**
 * `lookupJoin` and `ctx.lookup()` in the test harness (design note by): a record joins the value
 * its key has in the lookup table when it is processed; inner drops and left pads a missing key;
 * a bucket that does not exist, a value that is not JSON and a retraction on the input fail the
 * record (a worker dead-letters it); the output never retracts when the table changes.
 */
import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { DatabaseSync } from "node:sqlite";
import { change, defineFunction, fromFunction, fromStream, InvalidLookupJoinError, lookupJoin } from "../../../runtime/sdk/index.ts";
import { testHarness, UserFunctionError } from "../../../runtime/sdk/test-harness.ts";
import { InvalidPipelineError, buildJobGraph } from "../../../runtime/core/job-graph.ts";
import { definePipeline } from "../../../runtime/sdk/function.ts";

interface Order {
  readonly id: string;
  readonly user: string;
}
interface User {
  readonly level: string;
}

const enrich = (type?: "inner" | "left") =>
  lookupJoin<Order, User, { id: string; level: string | null }>({
    name: "enrich",
    input: fromFunction("orders"),
    bucket: "users",
    key: (o) => o.user,
    ...(type === undefined ? {} : { type }),
    output: (o, u) => ({ id: o.id, level: u === null ? null : u.level }),
  });

describe("lookupJoin", () => {
  it("inner (the default) joins the current value of the record's key and drops a record whose key has none", () => {
    const users = new Map<string, unknown>([["ann", { level: "gold" }]]);
    const h = testHarness(enrich(), { lookupTable: users });
    h.send({ id: "o1", user: "ann" });
    h.send({ id: "o2", user: "bob" });
    expect(h.output()).toEqual([{ id: "o1", level: "gold" }]);
  });

  it("left pads a record whose key has no value with null", () => {
    const h = testHarness(enrich("left"), { lookupTable: new Map([["ann", { level: "gold" }]]) });
    h.send({ id: "o1", user: "ann" });
    h.send({ id: "o2", user: "bob" });
    expect(h.output()).toEqual([
      { id: "o1", level: "gold" },
      { id: "o2", level: null },
    ]);
  });

  it("joins what the table holds when the record is processed; earlier output is never retracted", () => {
    const users = new Map<string, unknown>([["ann", { level: "silver" }]]);
    const h = testHarness(enrich("left"), { lookupTable: users });
    h.send({ id: "o1", user: "ann" });
    users.set("ann", { level: "gold" });
    h.send({ id: "o2", user: "ann" });
    users.delete("ann");
    h.send({ id: "o3", user: "ann" });
    expect(h.output()).toEqual([
      { id: "o1", level: "silver" },
      { id: "o2", level: "gold" },
      { id: "o3", level: null },
    ]);
  });

  it("takes additions of a changelog input by their row, and refuses a retraction (its output is append-only)", () => {
    const h = testHarness(enrich("left"), { lookupTable: new Map([["ann", { level: "gold" }]]) });
    h.send(change({ id: "o1", user: "ann" }, "+I") as never);
    h.send(change({ id: "o1", user: "ann" }, "+U") as never);
    expect(h.output()).toEqual([
      { id: "o1", level: "gold" },
      { id: "o1", level: "gold" },
    ]);
    expect(() => h.send(change({ id: "o1", user: "ann" }, "-D") as never)).toThrow(/append-only: it cannot take a -D retraction/);
  });

  it("fails the record, naming the bucket, when the bucket does not exist", () => {
    const h = testHarness(enrich("left"));
    expect(() => h.send({ id: "o1", user: "ann" })).toThrow(UserFunctionError);
    expect(() => h.send({ id: "o1", user: "ann" })).toThrow(/KV bucket users does not exist/);
  });

  it("fails the record when the key's value is not JSON, even for a left join (not silently null)", () => {
    const h = testHarness(enrich("left"), { lookupTable: new Map([["ann", new TextEncoder().encode("gold")]]) });
    expect(() => h.send({ id: "o1", user: "ann" })).toThrow(/value of key "ann" in KV bucket users is not JSON/);
    expect(h.output()).toEqual([]);
  });

  it("treats a key that KV cannot store as missing", () => {
    const h = testHarness(enrich("left"), { lookupTable: new Map([["ann", { level: "gold" }]]) });
    h.send({ id: "o1", user: "a b" });
    expect(h.output()).toEqual([{ id: "o1", level: null }]);
  });

  it("hands out frozen values: one read serves every record of a worker", () => {
    const fn = defineFunction<Order, unknown>({
      name: "mutate",
      input: fromStream("orders"),
      lookup: { bucket: "users", key: (o) => o.user },
      process(ctx) {
        (ctx.lookup<{ level: string }>() as { level: string }).level = "hacked";
      },
    });
    const h = testHarness(fn, { lookupTable: new Map([["ann", { level: "gold" }]]) });
    expect(() => h.send({ id: "o1", user: "ann" })).toThrow(/read only|read-only|Cannot assign/);
  });

  it("ctx.lookup() is refused outside process and without a lookup declaration", () => {
    const noLookup = defineFunction<Order, unknown>({ name: "plain", input: fromStream("orders"), process: (ctx) => void ctx.lookup() });
    expect(() => testHarness(noLookup).send({ id: "o1", user: "ann" })).toThrow(/declares no lookup/);
    const inTimer = defineFunction<Order, unknown>({
      name: "timer",
      input: fromStream("orders"),
      key: (o) => o.user,
      lookup: { bucket: "users", key: (o) => o.user },
      process: (ctx) => ctx.timers.registerProcessingTimeTimer(10),
      onTimer: (ctx) => void ctx.lookup(),
    });
    const h = testHarness(inTimer, { lookupTable: new Map() });
    h.send({ id: "o1", user: "ann" });
    expect(() => h.advanceProcessingTime(10)).toThrow(/only in process/);
  });

  it("equals SQL's inner and left join of the same orders with a fixed table (node:sqlite)", () => {
    const db = new DatabaseSync(":memory:");
    db.exec("CREATE TABLE users (id TEXT PRIMARY KEY, level TEXT NOT NULL); CREATE TABLE orders (id TEXT NOT NULL, user TEXT NOT NULL)");
    const userIds = ["a", "b", "c", "d", "e"];
    fc.assert(
      fc.property(
        fc.array(fc.constantFrom(...userIds), { maxLength: 30 }),
        fc.dictionary(fc.constantFrom(...userIds), fc.constantFrom("bronze", "silver", "gold")),
        (orderUsers, table) => {
          db.exec("DELETE FROM users; DELETE FROM orders");
          for (const [id, level] of Object.entries(table)) db.prepare("INSERT INTO users VALUES (?, ?)").run(id, level);
          orderUsers.forEach((user, i) => db.prepare("INSERT INTO orders VALUES (?, ?)").run(`o${i}`, user));
          for (const type of ["inner", "left"] as const) {
            const h = testHarness(enrich(type), { lookupTable: new Map(Object.entries(table).map(([id, level]) => [id, { level }])) });
            orderUsers.forEach((user, i) => h.send({ id: `o${i}`, user }));
            const sql = db.prepare(`SELECT o.id AS id, u.level AS level FROM orders o ${type === "left" ? "LEFT" : ""} JOIN users u ON o.user = u.id`).all();
            const rows = (r: ReadonlyArray<{ id: unknown; level: unknown }>) => r.map((x) => `${String(x.id)}|${String(x.level)}`).sort();
            expect(rows(h.output())).toEqual(rows(sql as Array<{ id: unknown; level: unknown }>));
          }
        },
      ),
      { numRuns: 100 },
    );
  });

  it("with shuffle, is keyed by the lookup key (of a change's row), so one partition looks each key up", () => {
    const shuffled = lookupJoin({ ...enrichSpec(), shuffle: true });
    expect(shuffled.key?.({ id: "o1", user: "ann" }, 0)).toBe("ann");
    expect(shuffled.key?.(change({ id: "o1", user: "bob" }, "+U") as never, 0)).toBe("bob");
    expect(lookupJoin(enrichSpec()).key).toBeUndefined();
    expect(buildJobGraph(definePipeline({ name: "j", functions: [defineFunction({ name: "orders", input: fromStream("S"), process: () => undefined }), shuffled] })).node("enrich").partitions).toBe(8);
    expect(() => lookupJoin({ ...enrichSpec(), input: fromStream("S"), shuffle: true })).toThrow(/shuffle needs a function input/);
  });

  it("refuses a bad definition when it is built, and a deployment refuses a bad lookup declaration", () => {
    expect(() => lookupJoin({ ...enrichSpec(), bucket: "no.dots" })).toThrow(InvalidLookupJoinError);
    expect(() => lookupJoin({ ...enrichSpec(), type: "full" as never })).toThrow(/type must be "inner" or "left"/);
    expect(() => lookupJoin({ ...enrichSpec(), cache: { ttlMs: -5 } })).toThrow(/ttlMs must be a number >= 0/);
    const bad = defineFunction<Order, unknown>({ name: "bad", input: fromStream("orders"), lookup: { bucket: "", key: (o) => o.user }, process: () => undefined });
    expect(() => buildJobGraph(definePipeline({ name: "j", functions: [bad] }))).toThrow(InvalidPipelineError);
  });
});

function enrichSpec() {
  return { name: "enrich", input: fromFunction("orders"), bucket: "users", key: (o: Order) => o.user, output: (o: Order) => o };
}
