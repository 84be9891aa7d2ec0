/**
 * Materialization rounds: a round takes every committed delta waiting, writes each key once with
 * the newest checkpoint's value, keeps each checkpoint's sink output in checkpoint order, and
 * records the newest checkpoint as applied; writes nothing for a key created and deleted within
 * the round; the lag past which an actor stops reading; and when a round may wait for more commits.
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { materializationBehind, planRound, roundDelay, type CommittedDelta, type RoundState } from "../../../runtime/core/materialization.ts";
import { DeltaLog, type DeltaEntry } from "../../../runtime/core/delta-log.ts";

const v = (s: string) => new TextEncoder().encode(s);
const text = (b: Uint8Array | null | undefined) => (b == null ? b : new TextDecoder().decode(b));
const delta = (id: number, entries: Array<[string, string | null]>): CommittedDelta<string> => ({
  id,
  entries: entries.map(([k, x]): DeltaEntry => [k, x === null ? null : v(x)]),
  output: `out-${id}`,
});
const created = (d: CommittedDelta<string>, ...keys: string[]): CommittedDelta<string> => ({ ...d, created: new Set(keys) });

describe("planRound", () => {
  it("has nothing to do for an empty queue", () => {
    expect(planRound([])).toBeUndefined();
  });

  it("writes a key changed in several checkpoints once, with the newest checkpoint's value", () => {
    const round = planRound([delta(3, [["a", "1"], ["b", "1"]]), delta(4, [["a", "2"]]), delta(7, [["a", "3"], ["c", "3"]])])!;
    expect(round.puts.map(([k, x]) => [k, text(x)])).toEqual([["a", "3"], ["b", "1"], ["c", "3"]]);
    expect(round.deletes).toEqual([]);
    expect(round.entriesIn).toBe(5);
    expect(round.applied).toBe(7);
    expect(round.ids).toEqual([3, 4, 7]);
  });

  it("deletes a key once when the newest change deletes it, and puts it when a later one sets it again", () => {
    const round = planRound([delta(1, [["gone", "1"], ["back", null]]), delta(2, [["gone", null], ["back", "2"]])])!;
    expect(round.deletes).toEqual(["gone"]);
    expect(round.puts.map(([k, x]) => [k, text(x)])).toEqual([["back", "2"]]);
    expect(round.merged("gone")).toBeNull();
    expect(text(round.merged("back"))).toBe("2");
    expect(round.merged("other")).toBeUndefined();
  });

  it("writes nothing for a key created and deleted within the round: KV never had it", () => {
    const round = planRound([created(delta(1, [["window", "1"], ["timer", "t"]]), "window", "timer"), delta(2, [["window", "5"]]), delta(3, [["window", null], ["timer", null]])])!;
    expect(round.puts).toEqual([]);
    expect(round.deletes).toEqual([]);
    expect(round.skipped).toBe(2);
  });

  it("still deletes a key whose first change in the round was not its creation", () => {
    // "old" was in KV before the round; "again" was deleted by checkpoint 1 and created anew by 2.
    const round = planRound([delta(1, [["old", "2"], ["again", null]]), created(delta(2, [["again", "x"]]), "again"), delta(3, [["old", null], ["again", null]])])!;
    expect([...round.deletes].sort()).toEqual(["again", "old"]);
    expect(round.skipped).toBe(0);
  });

  it("puts a created key that is still alive at the end of the round", () => {
    const round = planRound([created(delta(1, [["k", "1"]]), "k"), delta(2, [["k", "2"]])])!;
    expect(round.puts.map(([k, x]) => [k, text(x)])).toEqual([["k", "2"]]);
    expect(round.skipped).toBe(0);
  });

  it("keeps each checkpoint's sink output, oldest checkpoint first", () => {
    expect(planRound([delta(5, []), delta(6, [["k", "x"]]), delta(9, [])])!.outputs).toEqual(["out-5", "out-6", "out-9"]);
  });

  it("writes a single delta from the log (each key once) as a round of several would", () => {
    const keys = fc.uniqueArray(fc.constantFrom("a", "b", "c", "d", "e", "f"), { maxLength: 6 });
    fc.assert(
      fc.property(keys, fc.array(fc.boolean(), { minLength: 6, maxLength: 6 }), fc.array(fc.boolean(), { minLength: 6, maxLength: 6 }), (ks, deleted, born) => {
        const d = created(delta(4, ks.map((k, i) => [k, deleted[i] ? null : `v${i}`])), ...ks.filter((_, i) => born[i]));
        const alone = planRound([d])!;
        const merged = planRound([d, delta(5, [])])!;
        expect(alone.puts).toEqual(merged.puts);
        expect(alone.deletes).toEqual(merged.deletes);
        expect(alone.skipped).toBe(merged.skipped);
        expect(alone.entriesIn).toBe(merged.entriesIn);
        for (const k of ["a", "b", "c", "d", "e", "f"]) expect(alone.merged(k)).toEqual(merged.merged(k));
        expect([alone.applied, alone.ids, alone.outputs]).toEqual([4, [4], ["out-4"]]);
      }),
    );
  });

  it("merges a stored delta that names a key twice (read back by a restore: no `created`)", () => {
    const round = planRound([delta(2, [["k", null], ["k", "x"], ["j", "1"], ["j", null]])])!;
    expect(round.puts.map(([k, x]) => [k, text(x)])).toEqual([["k", "x"]]);
    expect(round.deletes).toEqual(["j"]);
  });

  it("refuses a queue out of commit order", () => {
    expect(() => planRound([delta(2, []), delta(2, [])])).toThrow(RangeError);
    expect(() => planRound([delta(3, []), delta(1, [])])).toThrow(/out of order/);
  });
});

describe("planRound over the delta log's commits", () => {
  it("writes nothing for a timer stored by one checkpoint and fired by the next within one round, and both writes for one it could not vouch for", () => {
    const log = new DeltaLog<string>(0, [], (k) => k.startsWith("_t."));
    const none = new Uint8Array();
    log.putCreated("_t.vouched", none, 1);
    log.put("_t.blind", none, 1);
    log.snapshot(1);
    log.seal(1, "1");
    log.delete("_t.vouched", 2);
    log.delete("_t.blind", 2);
    log.snapshot(2);
    log.seal(2, "2");
    const first = log.committed(1)!;
    const second = log.committed(2)!;
    const round = planRound([
      { id: 1, entries: first.entries, created: first.created, output: "1" },
      { id: 2, entries: second.entries, created: second.created, output: "2" },
    ])!;
    expect(round.puts.map(([k]) => k)).toEqual([]);
    expect(round.deletes).toEqual(["_t.blind"]);
    expect(round.skipped).toBe(1);
  });
});

describe("materializationBehind", () => {
  const bounds = { maxCheckpoints: 4, maxKeys: 1000 };
  it("reads on up to either bound", () => {
    expect(materializationBehind({ checkpoints: 0, keys: 0 }, bounds)).toBe(false);
    expect(materializationBehind({ checkpoints: 4, keys: 1000 }, bounds)).toBe(false);
  });
  it("stops reading past either bound", () => {
    expect(materializationBehind({ checkpoints: 5, keys: 0 }, bounds)).toBe(true);
    expect(materializationBehind({ checkpoints: 1, keys: 1001 }, bounds)).toBe(true);
  });
  it("ignores a bound of 0 or Infinity", () => {
    expect(materializationBehind({ checkpoints: 50, keys: 5 }, { maxCheckpoints: 0, maxKeys: 1000 })).toBe(false);
    expect(materializationBehind({ checkpoints: 1, keys: 1e9 }, { maxCheckpoints: 4, maxKeys: Infinity })).toBe(false);
  });
});

describe("roundDelay", () => {
  const bounds = { maxCheckpoints: 16, maxKeys: 1000 };
  const state = (s: Partial<RoundState>): RoundState => ({ queued: 1, sinceLastRoundMs: 2000, lag: { checkpoints: 1, keys: 10 }, urgent: false, ...s });

  it("defers a round until the interval since the previous one has passed", () => {
    expect(roundDelay(state({ sinceLastRoundMs: 2000 }), bounds, 10_000)).toBe(8000);
    expect(roundDelay(state({ sinceLastRoundMs: 10_000 }), bounds, 10_000)).toBe(0);
    expect(roundDelay(state({ sinceLastRoundMs: Infinity }), bounds, 10_000)).toBe(0);
  });

  it("starts at once when someone waits or without an interval (sink output does not wait for rounds: note ck)", () => {
    expect(roundDelay(state({ urgent: true }), bounds, 10_000)).toBe(0);
    expect(roundDelay(state({}), bounds, 0)).toBe(0);
    expect(roundDelay(state({ queued: 0 }), bounds, 10_000)).toBe(0);
  });

  it("starts at once when the lag reaches half of either bound, so deferring never stops the read loop", () => {
    expect(roundDelay(state({ lag: { checkpoints: 7, keys: 10 } }), bounds, 10_000)).toBeGreaterThan(0);
    expect(roundDelay(state({ lag: { checkpoints: 8, keys: 10 } }), bounds, 10_000)).toBe(0);
    expect(roundDelay(state({ lag: { checkpoints: 1, keys: 500 } }), bounds, 10_000)).toBe(0);
    expect(roundDelay(state({ lag: { checkpoints: 100, keys: 1e6 } }), { maxCheckpoints: 0, maxKeys: Infinity }, 10_000)).toBeGreaterThan(0);
  });
});
