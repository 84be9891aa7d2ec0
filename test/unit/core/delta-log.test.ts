/**
 * The delta log: which changes a snapshot carries, what a commit hands over for materialization,
 * which deletions cost nothing, the overlay a read of KV must be corrected with, and how a
 * restore walks and applies the chain of committed deltas.
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { applyChain, CorruptCheckpointError, DeltaLog, fetchChain, mergeSegments, type DeltaEntry } from "../../../runtime/core/delta-log.ts";

const v = (s: string) => new TextEncoder().encode(s);
const text = (e: DeltaEntry) => [e[0], e[1] === null ? null : new TextDecoder().decode(e[1])];
const texts = (es: readonly DeltaEntry[] | undefined) => (es ?? []).map(text);
const overlayText = (log: DeltaLog<unknown>, key: string) => {
  const o = log.overlay(key);
  return o === undefined ? undefined : o.value === null ? null : new TextDecoder().decode(o.value);
};

describe("DeltaLog: snapshots and commits", () => {
  it("gives a snapshot every change since the last commit, including those of a snapshot never committed", () => {
    const log = new DeltaLog();
    log.put("a", v("1"), 1);
    expect(texts(log.snapshot(1))).toEqual([["a", "1"]]);
    // Checkpoint 1 is aborted; snapshot 2 carries its change again.
    log.put("b", v("2"), 2);
    expect(texts(log.snapshot(2))).toEqual([["a", "1"], ["b", "2"]]);
  });

  it("hands the committed snapshot over for materialization and keeps later changes for the next one", () => {
    const log = new DeltaLog<string>();
    log.put("a", v("1"), 1);
    log.snapshot(1);
    log.seal(1, "delta 1");
    log.put("a", v("2"), 2);
    log.put("b", v("3"), 2);
    log.snapshot(2);
    const c = log.committed(1);
    expect(c?.payload).toBe("delta 1");
    expect(texts(c?.entries)).toEqual([["a", "1"]]);
    expect(log.lastCommitted).toBe(1);
    // a's later value was taken in epoch 2: it stays, and so does b.
    log.put("c", v("4"), 3);
    expect(texts(log.snapshot(3))).toEqual([["a", "2"], ["b", "3"], ["c", "4"]]);
  });

  for (const [case_, before, after] of [["few", 10, 1], ["most", 1, 10]] as const) {
    it(`keeps exactly the changes taken after the snapshot when a commit leaves ${case_} of them`, () => {
      const log = new DeltaLog();
      for (let i = 0; i < before; i++) log.put(`0.s.old${i}`, v("old"), 1);
      log.snapshot(1);
      for (let i = 0; i < after; i++) log.put(`0.s.new${i}`, v("new"), 2);
      log.put("0.t.cut", v("segment"), 2);
      log.cut();
      log.put("0.t.open", v("since the cut"), 2);
      expect(texts(log.committed(1)?.entries)).toHaveLength(before);
      expect(log.uncommittedCount).toBe(after + 2);
      expect(log.pending("0.s.old0")).toBeUndefined();
      expect(overlayText(log, "0.s.new0")).toBe("new");
      // What the next cut takes is what changed since the last cut, no more.
      expect(log.sinceCutCount).toBe(1);
      expect([...log.overlayGroup("0.s").keys()].sort()).toEqual([...Array.from({ length: after }, (_, i) => `0.s.new${i}`), ...Array.from({ length: before }, (_, i) => `0.s.old${i}`)].sort());
      expect([...log.overlayGroup("0.t").keys()].sort()).toEqual(["0.t.cut", "0.t.open"]);
      log.materialized(1);
      expect([...log.overlayGroup("0.s").keys()].sort()).toEqual(Array.from({ length: after }, (_, i) => `0.s.new${i}`).sort());
      expect(texts(log.snapshot(2)).map(([k]) => k).sort()).toEqual([...Array.from({ length: after }, (_, i) => `0.s.new${i}`), "0.t.cut", "0.t.open"].sort());
    });
  }

  it("ignores a commit not newer than the last, and one of a snapshot it did not take (changes up to it go)", () => {
    const log = new DeltaLog(5);
    log.put("a", v("1"), 6);
    expect(log.committed(5)).toBeUndefined();
    expect(log.uncommittedCount).toBe(1);
    expect(log.committed(6)).toBeUndefined();
    expect(log.lastCommitted).toBe(6);
    expect(log.uncommittedCount).toBe(0);
  });

  it("drops older held snapshots when a later checkpoint commits", () => {
    const log = new DeltaLog<string>();
    log.put("a", v("1"), 1);
    log.snapshot(1);
    log.seal(1, "1");
    log.put("b", v("2"), 2);
    log.snapshot(2);
    log.seal(2, "2");
    expect(log.committed(2)?.payload).toBe("2");
    expect(log.committed(1)).toBeUndefined();
  });
});

describe("DeltaLog: keys a snapshot creates", () => {
  it("names the keys a snapshot puts that KV neither holds nor may receive", () => {
    const log = new DeltaLog(0, ["restored"]);
    log.put("restored", v("1"), 1);
    log.put("fresh", v("1"), 1);
    log.snapshot(1);
    expect([...log.committed(1)!.created]).toEqual(["fresh"]);
  });

  it("does not name a key an earlier snapshot put that committed meanwhile", () => {
    const log = new DeltaLog();
    log.put("k", v("1"), 1);
    log.snapshot(1); // checkpoint 1 still in flight when snapshot 2 is taken
    log.put("k", v("2"), 2);
    log.snapshot(2);
    log.committed(1); // its round writes k to KV
    expect([...log.committed(2)!.created]).toEqual([]);
  });

  it("names a key an aborted snapshot created: no commit ever wrote it to KV", () => {
    const log = new DeltaLog();
    log.put("k", v("1"), 1);
    log.snapshot(1); // checkpoint 1 is aborted
    log.put("k", v("2"), 2);
    log.snapshot(2);
    expect([...log.committed(2)!.created]).toEqual(["k"]);
  });

  it("names a key again once a committed delta deleted it", () => {
    const log = new DeltaLog(0, ["k"]);
    log.delete("k", 1);
    log.snapshot(1);
    log.committed(1);
    log.put("k", v("new"), 2);
    log.snapshot(2);
    expect([...log.committed(2)!.created]).toEqual(["k"]);
  });
});

describe("DeltaLog: keys it does not track, created as their owner vouches (timers)", () => {
  const timers = (k: string) => k.startsWith("_t.");

  it("names a vouched put as created, and not a plain one: a round can skip the timer it fires", () => {
    const log = new DeltaLog(0, [], timers);
    log.putCreated("_t.new", v(""), 1);
    log.put("_t.blind", v(""), 1);
    log.snapshot(1);
    expect([...log.committed(1)!.created]).toEqual(["_t.new"]);
  });

  it("drops a vouched put deleted before the next cut: no segment and no KV value ever had it", () => {
    const log = new DeltaLog(0, [], timers);
    log.putCreated("_t.brief", v(""), 1);
    log.delete("_t.brief", 1);
    expect(log.pending("_t.brief")).toBeUndefined();
    expect(log.snapshot(1)).toEqual([]);
  });

  it("records the deletion once a segment holds the vouched put, and names the put created", () => {
    const log = new DeltaLog(0, [], timers);
    log.putCreated("_t.k", v(""), 1);
    expect(texts(log.cut()?.entries)).toEqual([["_t.k", ""]]);
    log.delete("_t.k", 1);
    expect(texts(log.snapshot(1))).toEqual([["_t.k", null]]);
    const c = log.committed(1)!;
    expect([...c.created]).toEqual(["_t.k"]);
    expect(texts(c.entries)).toEqual([["_t.k", null]]);
  });

  it("does not vouch for a key with an uncommitted change: its deletion there may be what clears KV", () => {
    const log = new DeltaLog(0, [], timers);
    log.delete("_t.k", 1); // an untracked deletion is always recorded
    log.cut();
    log.putCreated("_t.k", v(""), 1);
    log.delete("_t.k", 1);
    expect(texts(log.snapshot(1))).toEqual([["_t.k", null]]);
    expect([...log.committed(1)!.created]).toEqual([]);
  });
});

describe("DeltaLog: deletions", () => {
  it("drops the deletion of a key created since the last snapshot: KV never had it", () => {
    const log = new DeltaLog();
    log.put("window", v("x"), 1);
    log.delete("window", 1);
    expect(log.snapshot(1)).toEqual([]);
  });

  it("records the deletion of a key the restored state has", () => {
    const log = new DeltaLog(3, ["old"]);
    log.delete("old", 4);
    expect(texts(log.snapshot(4))).toEqual([["old", null]]);
  });

  it("records the deletion of a key a snapshot put, even one never committed", () => {
    const log = new DeltaLog();
    log.put("k", v("1"), 1);
    log.snapshot(1);
    log.delete("k", 2);
    expect(texts(log.snapshot(2))).toEqual([["k", null]]);
  });

  it("forgets a key once a committed deletion removes it from KV, unless a later snapshot put it again", () => {
    const log = new DeltaLog(0, ["gone", "back"]);
    log.delete("gone", 1);
    log.delete("back", 1);
    log.snapshot(1);
    log.put("back", v("again"), 2);
    log.snapshot(2);
    log.committed(1);
    // gone is not in KV any more: creating and deleting it again is no change.
    log.put("gone", v("x"), 3);
    log.delete("gone", 3);
    // back was put by snapshot 2, which may commit: deleting it is a change.
    log.delete("back", 3);
    expect(texts(log.snapshot(3))).toEqual([["back", null]]);
  });
});

describe("DeltaLog: the overlay of a read of KV", () => {
  it("has nothing for a key whose KV value is current", () => {
    const log = new DeltaLog(0, ["k"]);
    expect(log.overlay("k")).toBeUndefined();
  });

  it("answers the latest uncommitted value, snapshotted or not, and a deletion as null", () => {
    const log = new DeltaLog(0, ["k", "d"]);
    log.put("k", v("1"), 1);
    expect(overlayText(log, "k")).toBe("1");
    log.snapshot(1);
    log.put("k", v("2"), 2);
    log.delete("d", 2);
    expect(overlayText(log, "k")).toBe("2");
    expect(overlayText(log, "d")).toBeNull();
  });

  it("answers a committed value until it is materialized, and nothing after", () => {
    const log = new DeltaLog();
    log.put("k", v("1"), 1);
    log.snapshot(1);
    log.committed(1);
    expect(log.unmaterializedIds).toEqual([1]);
    expect(overlayText(log, "k")).toBe("1");
    log.materialized(1);
    expect(log.overlay("k")).toBeUndefined();
    expect(log.unmaterializedIds).toEqual([]);
  });

  it("counts the lag: committed checkpoints and distinct keys KV does not have yet", () => {
    const log = new DeltaLog();
    log.put("a", v("1"), 1);
    log.put("b", v("1"), 1);
    log.snapshot(1);
    log.committed(1);
    log.put("a", v("2"), 2);
    log.put("c", v("2"), 2);
    log.snapshot(2);
    log.committed(2);
    expect(log.unmaterializedIds).toEqual([1, 2]);
    // "a" is in both deltas but one key KV lacks.
    expect(log.unmaterializedKeyCount).toBe(3);
    log.materialized(1);
    expect(log.unmaterializedKeyCount).toBe(2);
    log.restoredDelta(3, [["d", null]]);
    expect(log.unmaterializedKeyCount).toBe(3);
    log.materialized(3);
    expect(log.unmaterializedKeyCount).toBe(0);
    expect(log.unmaterializedIds).toEqual([]);
  });

  it("counts the lag in keys whenever it is asked: after one commit, between commits, after a partial materialization, for a restored delta that repeats a key", () => {
    const log = new DeltaLog();
    for (const k of ["a", "b", "c"]) log.put(k, v("1"), 1);
    log.put("a", v("2"), 1);
    log.snapshot(1);
    log.committed(1);
    // One commit: its keys, each once.
    expect(log.unmaterializedKeyCount).toBe(3);
    log.put("c", v("3"), 2);
    log.put("d", v("3"), 2);
    log.snapshot(2);
    log.committed(2);
    expect(log.unmaterializedKeyCount).toBe(4);
    log.put("e", v("4"), 3);
    log.snapshot(3);
    log.committed(3);
    // Not asked in between: counted when asked, and counted down by a partial materialization.
    log.materialized(2);
    expect(log.unmaterializedKeyCount).toBe(1);
    // A restored delta's entries may name a key twice: counted, not taken by length.
    log.materialized(3);
    log.restoredDelta(4, [["x", v("1")], ["x", null]]);
    expect(log.unmaterializedKeyCount).toBe(1);
    log.materialized(4);
    expect(log.unmaterializedKeyCount).toBe(0);
  });

  it("bounds the lag in keys without counting: every unmaterialized delta's entries, exact for one commit", () => {
    const log = new DeltaLog();
    log.put("a", v("1"), 1);
    log.put("b", v("1"), 1);
    log.snapshot(1);
    log.committed(1);
    expect(log.unmaterializedKeyBound).toBe(2);
    log.put("a", v("2"), 2);
    log.snapshot(2);
    log.committed(2);
    // "a" is in both deltas: the bound counts it twice, the count once.
    expect(log.unmaterializedKeyBound).toBe(3);
    expect(log.unmaterializedKeyCount).toBe(2);
    log.put("c", v("3"), 3);
    log.snapshot(3);
    log.committed(3);
    // Partly materialized, counted before (delta 1) and not (delta 3): both figures count down.
    log.materialized(1);
    expect(log.unmaterializedKeyBound).toBe(2);
    expect(log.unmaterializedKeyCount).toBe(2);
    expect(log.unmaterializedCount).toBe(2);
    log.materialized(3);
    expect(log.unmaterializedKeyBound).toBe(0);
    expect(log.unmaterializedKeyCount).toBe(0);
  });

  it("counts down a partial materialization of deltas it never counted, and counts the rest when asked", () => {
    const log = new DeltaLog();
    for (let id = 1; id <= 3; id++) {
      log.put("a", v(String(id)), id);
      log.put(`k${id}`, v("1"), id);
      log.snapshot(id);
      log.committed(id);
    }
    log.materialized(2);
    expect(log.unmaterializedKeyBound).toBe(2);
    expect(log.unmaterializedKeyCount).toBe(2);
  });

  it("keeps the index of uncommitted keys by group current once asked, and builds it again after a commit", () => {
    const log = new DeltaLog(0, ["0.m.u.gone"]);
    log.put("0.m.u.x", v("1"), 1);
    expect([...log.overlayGroup("0.m.u").keys()]).toEqual(["0.m.u.x"]);
    // Changes after the first lookup: added and removed in the index as they happen.
    log.put("0.m.u.y", v("2"), 1);
    log.delete("0.m.u.x", 1);
    log.delete("0.m.u.gone", 1);
    expect(new Map([...log.overlayGroup("0.m.u")].map(([k, e]) => [k, e === null ? null : new TextDecoder().decode(e)]))).toEqual(
      new Map([["0.m.u.y", "2"], ["0.m.u.gone", null]]),
    );
    log.snapshot(1);
    log.put("0.m.u.z", v("3"), 2);
    log.committed(1);
    // After the commit: the uncommitted z, and checkpoint 1's y and gone from the unmaterialized delta.
    expect([...log.overlayGroup("0.m.u").keys()].sort()).toEqual(["0.m.u.gone", "0.m.u.y", "0.m.u.z"]);
    log.materialized(1);
    expect([...log.overlayGroup("0.m.u").keys()]).toEqual(["0.m.u.z"]);
  });

  it("prefers the newest: uncommitted over committed, a later commit over an earlier one", () => {
    const log = new DeltaLog(0, ["k"]);
    log.put("k", v("1"), 1);
    log.put("j", v("a"), 1);
    log.snapshot(1);
    log.committed(1);
    log.put("k", v("2"), 2);
    log.snapshot(2);
    log.committed(2);
    // Both are committed, neither materialized.
    expect(overlayText(log, "k")).toBe("2");
    expect(overlayText(log, "j")).toBe("a");
    log.delete("k", 3);
    expect(overlayText(log, "k")).toBeNull();
    log.materialized(1);
    expect(overlayText(log, "j")).toBeUndefined();
    expect(overlayText(log, "k")).toBeNull();
  });

  it("answers the deltas a restore read back until they are materialized", () => {
    const log = new DeltaLog(7, ["k"]);
    log.restoredDelta(6, [["k", v("6")], ["x", null]]);
    log.restoredDelta(7, [["k", v("7")]]);
    expect(overlayText(log, "k")).toBe("7");
    expect(overlayText(log, "x")).toBeNull();
    log.materialized(6);
    expect(overlayText(log, "x")).toBeUndefined();
    expect(overlayText(log, "k")).toBe("7");
  });
});

describe("restore: the chain of committed deltas", () => {
  const stored = new Map([
    [3, { id: 3, base: 1 }],
    [5, { id: 5, base: 3 }],
    [8, { id: 8, base: 5 }],
  ]);
  const fetch = async (id: number) => stored.get(id);

  it("walks back from the committed checkpoint by each delta's base to what KV has, oldest first", async () => {
    expect((await fetchChain(8, 1, fetch, "f/0")).map((d) => d.id)).toEqual([3, 5, 8]);
    expect((await fetchChain(8, 3, fetch, "f/0")).map((d) => d.id)).toEqual([5, 8]);
  });

  it("fetches nothing when KV has the checkpoint already", async () => {
    expect(await fetchChain(8, 8, fetch, "f/0")).toEqual([]);
  });

  it("refuses a chain with a missing delta or a base that does not go back", async () => {
    await expect(fetchChain(9, 1, fetch, "f/0")).rejects.toThrow(new CorruptCheckpointError("f/0: snapshot delta of checkpoint 9 is missing"));
    await expect(fetchChain(4, 0, async () => ({ id: 4, base: 4 }), "f/0")).rejects.toThrow("f/0: delta 4 has base 4");
    await expect(fetchChain(8, 0, fetch, "f/0")).rejects.toThrow("snapshot delta of checkpoint 1 is missing");
  });

  it("applies the deltas forwards over the state read from KV", () => {
    const state = new Map([
      ["a", v("kv")],
      ["b", v("kv")],
    ]);
    applyChain(state, [
      [["a", v("3")], ["b", null], ["c", v("3")]],
      [["c", null], ["b", v("5")]],
    ]);
    expect([...state].map(([k, x]) => [k, new TextDecoder().decode(x)])).toEqual([
      ["a", "3"],
      ["b", "5"],
    ]);
  });
});

describe("DeltaLog: segments cut between barriers (design note bh)", () => {
  it("cuts only the changes since the previous cut, with the epoch of the next snapshot, and nothing when none", () => {
    const log = new DeltaLog(4);
    expect(log.openEpoch).toBe(5);
    expect(log.cut()).toBeUndefined();
    log.put("a", v("1"), log.openEpoch);
    log.put("b", v("1"), log.openEpoch);
    const first = log.cut()!;
    expect(first).toMatchObject({ seq: 1, epoch: 5 });
    expect(texts(first.entries)).toEqual([["a", "1"], ["b", "1"]]);
    log.put("a", v("2"), log.openEpoch);
    expect(texts(log.cut()!.entries)).toEqual([["a", "2"]]);
    expect(log.sinceCutCount).toBe(0);
  });

  it("has a snapshot cut the remainder and reference every segment since the last commit; its merged entries are the newest per key", () => {
    const log = new DeltaLog<string, string>();
    log.put("a", v("1"), 1);
    log.cut();
    log.put("a", v("2"), 1);
    log.put("b", v("1"), 1);
    const { segments, remainder } = log.snapshotSegments(1);
    expect(segments.map((s) => s.seq)).toEqual([1, 2]);
    expect(remainder?.seq).toBe(2);
    expect(remainder?.epoch).toBe(1);
    log.seal(1, "manifest 1");
    expect(texts(log.committed(1)?.entries)).toEqual([["a", "2"], ["b", "1"]]);
    expect(log.openSegments).toEqual([]);
  });

  it("references the segments of an aborted checkpoint again in the next snapshot instead of cutting them again", () => {
    const log = new DeltaLog<string, string>();
    log.put("a", v("1"), 1);
    log.attach(log.cut()!.seq, "seg-1");
    log.put("b", v("1"), 1);
    const s1 = log.snapshotSegments(1);
    log.attach(s1.remainder!.seq, "seg-2");
    // Checkpoint 1 fails; changes go on, one more cut, then snapshot 2.
    log.put("c", v("1"), log.openEpoch);
    log.attach(log.cut()!.seq, "seg-3");
    const s2 = log.snapshotSegments(2);
    expect(s2.remainder).toBeUndefined();
    expect(s2.segments.map((s) => s.ref)).toEqual(["seg-1", "seg-2", "seg-3"]);
    expect(s2.segments.map((s) => s.epoch)).toEqual([1, 1, 2]);
  });

  it("keeps the segments cut after a snapshot when that checkpoint commits: the next snapshot references only them", () => {
    const log = new DeltaLog<string, string>();
    log.put("a", v("1"), 1);
    log.snapshotSegments(1);
    log.put("b", v("1"), log.openEpoch);
    log.cut();
    log.committed(1);
    log.put("c", v("1"), 3);
    const { segments } = log.snapshotSegments(3);
    expect(segments.map((s) => texts(s.entries))).toEqual([[["b", "1"]], [["c", "1"]]]);
  });

  it("records the deletion of a key whose put is in an uploaded segment: a restore applies that segment", () => {
    const log = new DeltaLog();
    log.put("window", v("x"), log.openEpoch);
    log.cut();
    log.delete("window", log.openEpoch);
    expect(texts(log.snapshot(1))).toEqual([["window", null]]);
  });

  it("still drops the deletion of a key created and deleted between two cuts", () => {
    const log = new DeltaLog();
    log.put("a", v("1"), log.openEpoch);
    log.cut();
    log.put("window", v("x"), log.openEpoch);
    log.delete("window", log.openEpoch);
    expect(log.cut()).toBeUndefined();
    expect(texts(log.snapshot(1))).toEqual([["a", "1"]]);
  });

  it("commits what merging every segment of the snapshot gives, whatever the order of changes, cuts, snapshots and commits", () => {
    const op = fc.oneof(
      fc.record({ kind: fc.constant("put" as const), key: fc.integer({ min: 0, max: 6 }), value: fc.integer({ min: 0, max: 99 }) }),
      fc.record({ kind: fc.constant("delete" as const), key: fc.integer({ min: 0, max: 6 }) }),
      fc.record({ kind: fc.constant("cut" as const) }),
      // Checkpoint ids this actor never sees (aborted before its barrier) are skipped.
      fc.record({ kind: fc.constant("snapshot" as const), skip: fc.integer({ min: 0, max: 2 }) }),
      fc.record({ kind: fc.constant("commit" as const), back: fc.integer({ min: 0, max: 2 }) }),
      // A commit of a checkpoint this log took no snapshot of hands nothing over.
      fc.record({ kind: fc.constant("commit-unseen" as const) }),
    );
    fc.assert(
      fc.property(fc.array(op, { maxLength: 60 }), (ops) => {
        const log = new DeltaLog<undefined>(0, ["k0", "k1"]);
        const snapshots = new Map<number, DeltaEntry[]>();
        let nextId = 1;
        for (const o of ops) {
          if (o.kind === "put") log.put(`k${o.key}`, v(String(o.value)), log.openEpoch);
          else if (o.kind === "delete") log.delete(`k${o.key}`, log.openEpoch);
          else if (o.kind === "cut") log.cut();
          else if (o.kind === "snapshot") {
            const id = nextId + o.skip;
            nextId = id + 1;
            snapshots.set(id, mergeSegments(log.snapshotSegments(id).segments.map((s) => s.entries)));
          } else if (o.kind === "commit-unseen") {
            const id = nextId++;
            expect(log.committed(id)).toBeUndefined();
          } else {
            const ids = [...snapshots.keys()].filter((id) => id > log.lastCommitted);
            const id = ids[ids.length - 1 - o.back];
            if (id === undefined) continue;
            const committed = log.committed(id);
            expect(texts(committed?.entries)).toEqual(texts(snapshots.get(id)));
            expect(new Set(committed!.entries.map(([k]) => k)).size).toBe(committed!.entries.length);
          }
        }
      }),
      { numRuns: 500 },
    );
  });

  it("merges segments in order, later wins, first position kept", () => {
    expect(texts(mergeSegments([[["a", v("1")], ["b", v("1")]], [["a", null]], [["c", v("1")], ["a", v("3")]]]))).toEqual([["a", "3"], ["b", "1"], ["c", "1"]]);
  });
});
