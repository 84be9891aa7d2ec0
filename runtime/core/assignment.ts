/**
 * Which live worker runs which actor: balanced (loads differ by at most one), sticky (an actor
 * stays where it is unless its worker died or has more than its share), spread (the partitions
 * of one function go to different workers as far as balance allows, as Flink places the
 * parallel subtasks of one operator in different slots) and deterministic (the result depends
 * only on the inputs, not on their order), so every supervisor computes the same assignment and
 * a standby that takes over does not reshuffle anything.
 *
 * Spreading matters because a function's partitions do the same kind of work: the two source
 * partitions of a job on one of two workers leave the other worker with little to do.
 */

import { actorFunction as functionOf } from "./protocol.ts";

/**
 * Owners for `actors` on the live `workers`, moving as few actors as possible away from their
 * `previous` owner: only actors whose owner is not live (or that are new) and the excess of
 * workers above their share move. Of n actors on w workers, n mod w workers get one more than
 * the others; those are the ones that already hold the most (ties: worker id), which is what
 * keeps the moves minimal. A worker above its share gives away the actors of the functions it
 * holds most of beyond their fair share (partitions / workers; ties: the later actor). Moving
 * actors go, function by function, to the worker below its share that holds the fewest actors of
 * the same function, then the least loaded (ties: worker id). Returns `{}` if no worker is live.
 */
export function assignActors(actors: readonly string[], workers: readonly string[], previous: Readonly<Record<string, string>>): Record<string, string> {
  const live = [...new Set(workers)].sort();
  const owners: Record<string, string> = {};
  if (live.length === 0) return owners;
  const order = new Map(actors.map((a, i) => [a, i]));
  const partitions = new Map<string, number>();
  for (const a of actors) partitions.set(functionOf(a), (partitions.get(functionOf(a)) ?? 0) + 1);

  // What each live worker holds now, in actor order.
  const held = new Map<string, string[]>(live.map((w) => [w, []]));
  const orphans: string[] = [];
  for (const a of actors) {
    const list = held.get(previous[a] as string);
    if (list !== undefined) list.push(a);
    else orphans.push(a);
  }

  // Shares: floor(n/w) each, one more for the n mod w workers that hold the most already.
  const base = Math.floor(actors.length / live.length);
  const extra = actors.length % live.length;
  const byHolding = [...live].sort((a, b) => held.get(b)!.length - held.get(a)!.length || (a < b ? -1 : a > b ? 1 : 0));
  const share = new Map(byHolding.map((w, i) => [w, base + (i < extra ? 1 : 0)]));

  const load = new Map<string, number>();
  /** Worker → function → actors of it the worker runs. */
  const perFunction = new Map<string, Map<string, number>>(live.map((w) => [w, new Map()]));
  for (const w of live) {
    const keep = trimToShare(held.get(w)!, share.get(w)!, partitions, live.length, order, orphans);
    for (const a of keep) {
      owners[a] = w;
      const counts = perFunction.get(w)!;
      counts.set(functionOf(a), (counts.get(functionOf(a)) ?? 0) + 1);
    }
    load.set(w, keep.length);
  }

  // The moving actors function by function (in the order functions first appear), each in actor
  // order: dealt out this way, one function's partitions spread before the next one's come.
  const firstOf = new Map<string, number>();
  actors.forEach((a, i) => {
    if (!firstOf.has(functionOf(a))) firstOf.set(functionOf(a), i);
  });
  orphans.sort((a, b) => firstOf.get(functionOf(a))! - firstOf.get(functionOf(b))! || order.get(a)! - order.get(b)!);
  for (const a of orphans) {
    const fn = functionOf(a);
    let best: string | undefined;
    let bestOfFn = 0;
    for (const w of live) {
      if (load.get(w)! >= share.get(w)!) continue;
      const ofFn = perFunction.get(w)!.get(fn) ?? 0;
      if (best === undefined || ofFn < bestOfFn || (ofFn === bestOfFn && load.get(w)! < load.get(best)!)) {
        best = w;
        bestOfFn = ofFn;
      }
    }
    owners[a] = best!;
    load.set(best!, load.get(best!)! + 1);
    perFunction.get(best!)!.set(fn, bestOfFn + 1);
  }
  return owners;
}

/**
 * The actors a worker keeps of those it `holds` (in actor order) when its share is `share`; the
 * others are appended to `orphans`. It gives away, one at a time, an actor of the function it
 * holds most of beyond that function's fair share, the last of them in actor order.
 */
function trimToShare(holds: readonly string[], share: number, partitions: ReadonlyMap<string, number>, workers: number, order: ReadonlyMap<string, number>, orphans: string[]): string[] {
  if (holds.length <= share) return [...holds];
  const byFunction = new Map<string, string[]>();
  for (const a of holds) {
    const list = byFunction.get(functionOf(a));
    if (list === undefined) byFunction.set(functionOf(a), [a]);
    else list.push(a);
  }
  const dropped = new Set<string>();
  for (let n = holds.length; n > share; n--) {
    let worst: string[] | undefined;
    let worstExcess = -Infinity;
    for (const [fn, list] of byFunction) {
      if (list.length === 0) continue;
      const excess = list.length - partitions.get(fn)! / workers;
      if (excess > worstExcess || (excess === worstExcess && order.get(list.at(-1)!)! > order.get(worst!.at(-1)!)!)) {
        worst = list;
        worstExcess = excess;
      }
    }
    dropped.add(worst!.pop()!);
  }
  for (const a of holds) if (dropped.has(a)) orphans.push(a);
  return holds.filter((a) => !dropped.has(a));
}
