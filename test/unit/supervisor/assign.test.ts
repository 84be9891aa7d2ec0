/**
 * The supervisor's actor assignment: every actor gets a live owner, loads differ by at most one,
 * a balanced assignment over live workers is kept as it is, the result does not depend on the
 * order workers are listed in, and the only actors that move are those without a live owner plus
 * the excess of workers above their share — the fewest moves any balanced assignment needs.
 */
import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { assignActors } from "../../../runtime/core/assignment.ts";

const actorsOf = (n: number) => Array.from({ length: n }, (_, i) => `f${i % 3}/${Math.floor(i / 3)}`);

/** Actors, live workers, and a previous assignment that may name dead workers or miss actors. */
const scenario = fc
  .record({
    actors: fc.integer({ min: 0, max: 40 }),
    live: fc.uniqueArray(fc.constantFrom("w1", "w2", "w3", "w4", "w5", "w6", "w7"), { minLength: 1, maxLength: 7 }),
    seed: fc.array(fc.option(fc.constantFrom("w1", "w2", "w3", "w4", "w5", "w6", "w7", "dead1", "dead2"), { nil: undefined }), { minLength: 40, maxLength: 40 }),
  })
  .map(({ actors, live, seed }) => {
    const list = actorsOf(actors);
    const previous: Record<string, string> = {};
    list.forEach((a, i) => {
      if (seed[i] !== undefined) previous[a] = seed[i]!;
    });
    return { actors: list, live: live as string[], previous };
  });

const loads = (owners: Record<string, string>, live: readonly string[]) => {
  const m = new Map(live.map((w) => [w, 0]));
  for (const w of Object.values(owners)) m.set(w, (m.get(w) ?? 0) + 1);
  return [...m.values()];
};

/** The fewest moves a balanced assignment needs: orphans plus each worker's excess over its share. */
function minimalMoves(actors: readonly string[], live: readonly string[], previous: Record<string, string>): number {
  const held = new Map(live.map((w) => [w, 0]));
  let orphans = 0;
  for (const a of actors) {
    const w = previous[a];
    if (w !== undefined && held.has(w)) held.set(w, held.get(w)! + 1);
    else orphans++;
  }
  const base = Math.floor(actors.length / live.length);
  const extra = actors.length % live.length;
  const counts = [...held.values()].sort((a, b) => b - a);
  return orphans + counts.reduce((n, c, i) => n + Math.max(0, c - (base + (i < extra ? 1 : 0))), 0);
}

describe("assignActors", () => {
  it("gives every actor a live owner and balances the load (max - min <= 1)", () => {
    fc.assert(
      fc.property(scenario, ({ actors, live, previous }) => {
        const owners = assignActors(actors, live, previous);
        expect(Object.keys(owners).sort()).toEqual([...actors].sort());
        for (const w of Object.values(owners)) expect(live).toContain(w);
        const l = loads(owners, live);
        expect(Math.max(...l) - Math.min(...l)).toBeLessThanOrEqual(1);
      }),
      { numRuns: 500 },
    );
  });

  it("is sticky: a balanced assignment over live workers stays as it is", () => {
    fc.assert(
      fc.property(scenario, ({ actors, live }) => {
        const first = assignActors(actors, live, {});
        expect(assignActors(actors, live, first)).toEqual(first);
        // Also when the workers are listed differently.
        expect(assignActors(actors, [...live].reverse(), first)).toEqual(first);
      }),
      { numRuns: 300 },
    );
  });

  it("is deterministic: the same inputs in any order give the same owners", () => {
    fc.assert(
      fc.property(scenario, fc.integer(), ({ actors, live, previous }, k) => {
        const shuffled = [...live].sort((a, b) => ((a.charCodeAt(1) * k) % 7) - ((b.charCodeAt(1) * k) % 7));
        const reordered = Object.fromEntries(Object.entries(previous).reverse());
        expect(assignActors(actors, shuffled, reordered)).toEqual(assignActors(actors, live, previous));
      }),
      { numRuns: 300 },
    );
  });

  it("moves only orphans and the excess of overloaded workers", () => {
    fc.assert(
      fc.property(scenario, ({ actors, live, previous }) => {
        const owners = assignActors(actors, live, previous);
        const moved = actors.filter((a) => owners[a] !== previous[a]);
        expect(moved.length).toBe(minimalMoves(actors, live, previous));
        // A live worker only gives actors away when it had more than it keeps, and one that
        // receives actors gives none away.
        const count = (o: Record<string, string>, w: string) => actors.filter((a) => o[a] === w).length;
        for (const a of moved) {
          const from = previous[a];
          if (from !== undefined && live.includes(from)) expect(count(previous, from)).toBeGreaterThan(count(owners, from));
          expect(actors.some((b) => previous[b] === owners[a] && owners[b] !== owners[a])).toBe(false);
        }
      }),
      { numRuns: 500 },
    );
  });

  it("gives a joining worker its share (4 actors on 2 workers, a third joins)", () => {
    const previous = { "f/0": "w1", "f/1": "w1", "f/2": "w2", "f/3": "w2" };
    const owners = assignActors(Object.keys(previous), ["w1", "w2", "w3"], previous);
    expect(loads(owners, ["w1", "w2", "w3"]).sort()).toEqual([1, 1, 2]);
    // Exactly one actor moved, to the newcomer.
    expect(Object.keys(owners).filter((a) => owners[a] !== previous[a as keyof typeof previous]).map((a) => owners[a])).toEqual(["w3"]);
  });

  it("moves the actors of a dead worker and nothing else when the rest stays balanced", () => {
    const previous = { "f/0": "w1", "f/1": "w2", "f/2": "w3", "f/3": "w1", "f/4": "w2", "f/5": "w3" };
    const owners = assignActors(Object.keys(previous), ["w1", "w2"], previous);
    expect(owners).toEqual({ "f/0": "w1", "f/1": "w2", "f/2": "w1", "f/3": "w1", "f/4": "w2", "f/5": "w2" });
  });

  it("spreads each function's partitions: from scratch, a function's actors per worker differ by at most one", () => {
    fc.assert(
      fc.property(scenario, ({ actors, live }) => {
        const owners = assignActors(actors, live, {});
        for (const fn of new Set(actors.map((a) => a.split("/")[0]!))) {
          const perWorker = live.map((w) => actors.filter((a) => a.startsWith(`${fn}/`) && owners[a] === w).length);
          expect(Math.max(...perWorker) - Math.min(...perWorker), `${fn} on ${live.join(",")}`).toBeLessThanOrEqual(1);
        }
      }),
      { numRuns: 500 },
    );
  });

  it("gives a worker that joins a share of every function the other holds too much of (two sources do not stay on one of two workers)", () => {
    // The skewed page-view job: 2 source partitions, 1 parameters partition, 8 aggregating, 1 sink.
    const actors = ["views/0", "views/1", "params/0", ...Array.from({ length: 8 }, (_, p) => `page-stats/${p}`), "page-stats-out/0"];
    const allOnW1 = Object.fromEntries(actors.map((a) => [a, "w1"]));
    const owners = assignActors(actors, ["w1", "w2"], allOnW1);
    const on = (w: string, fn: string) => actors.filter((a) => a.startsWith(`${fn}/`) && owners[a] === w).length;
    expect([on("w1", "views"), on("w2", "views")]).toEqual([1, 1]);
    expect([on("w1", "page-stats"), on("w2", "page-stats")]).toEqual([4, 4]);
    expect(loads(owners, ["w1", "w2"])).toEqual([6, 6]);
  });

  it("assigns nothing without live workers", () => {
    expect(assignActors(["f/0"], [], { "f/0": "w1" })).toEqual({});
  });
});
