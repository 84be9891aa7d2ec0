/**
 * Which live worker runs which actor: balanced (loads differ by at most one), sticky (an actor
 * stays where it is unless its worker died or has more than its share) and deterministic (the
 * result depends only on the inputs, not on their order), so every supervisor computes the same
 * assignment and a standby that takes over does not reshuffle anything.
 */

/**
 * Owners for `actors` on the live `workers`, moving as few actors as possible away from their
 * `previous` owner: only actors whose owner is not live (or that are new) and the excess of
 * workers above their share move. Of n actors on w workers, n mod w workers get one more than
 * the others; those are the ones that already hold the most (ties: worker id), which is what
 * keeps the moves minimal. Moving actors go, in actor order, to the least loaded worker (ties:
 * worker id). Returns `{}` if no worker is live.
 */
export function assignActors(actors: readonly string[], workers: readonly string[], previous: Readonly<Record<string, string>>): Record<string, string> {
  const live = [...new Set(workers)].sort();
  const owners: Record<string, string> = {};
  if (live.length === 0) return owners;

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
  for (const w of live) {
    const keep = held.get(w)!.slice(0, share.get(w));
    for (const a of keep) owners[a] = w;
    orphans.push(...held.get(w)!.slice(keep.length));
    load.set(w, keep.length);
  }

  // Keep the moving actors in actor order, whatever list they came from.
  const order = new Map(actors.map((a, i) => [a, i]));
  orphans.sort((a, b) => order.get(a)! - order.get(b)!);
  for (const a of orphans) {
    let best: string | undefined;
    for (const w of live) {
      if (load.get(w)! >= share.get(w)!) continue;
      if (best === undefined || load.get(w)! < load.get(best)!) best = w;
    }
    owners[a] = best!;
    load.set(best!, load.get(best!)! + 1);
  }
  return owners;
}
