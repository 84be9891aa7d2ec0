/**
 * The background sweep that deletes expired TTL state from KV (design note bt): the part of
 * state TTL the in-memory sweep cannot do for keys the working-set cache no longer holds.
 *
 * A round walks the partition's TTL states in KV entry by entry (`Transport.scanState`, which
 * holds nothing but the entry at hand) and deletes each entry that `sweepVerdict` finds expired,
 * conditionally on the revision it read (`deleteStateIf`): a key written meanwhile is left alone.
 * Event-time entries are judged by the committed watermark, so that no recovery can bring back a
 * state in which a deleted entry was alive (runtime/core/ttl-sweep.ts says why that is safe).
 * A round's failure is counted and logged, never the actor's: the next round tries again.
 */
import type { Transport } from "./ports.ts";
import { stateFilter } from "../core/kv-keys.ts";
import { SweepSchedule, sweepVerdict, type SweepClock } from "../core/ttl-sweep.ts";

/** Deletes in flight at once: enough to hide round trips, few enough to leave the server to processing. */
const DELETES_IN_FLIGHT = 32;

export interface TtlKvSweeperOptions {
  readonly transport: Pick<Transport, "scanState" | "deleteStateIf">;
  readonly bucket: string;
  readonly partition: number;
  /** The names of the states declared with a TTL. */
  readonly states: readonly string[];
  readonly intervalMs: number;
  /** When the actor started (ms): the first round is due an interval later. */
  readonly startedAt: number;
  /** Read at each entry: the committed watermark moves while a round runs. */
  readonly clock: () => SweepClock;
  readonly onRound?: (result: SweepRoundResult) => void;
}

/** What one round did. */
export interface SweepRoundResult {
  readonly scanned: number;
  readonly deleted: number;
  /** Expired, but written again before the delete reached KV: left alone. */
  readonly changed: number;
  readonly undecodable: number;
  readonly error?: unknown;
}

export class TtlKvSweeper {
  private readonly options: TtlKvSweeperOptions;
  private readonly schedule: SweepSchedule;
  private round: Promise<void> | undefined;
  private stopped = false;

  constructor(options: TtlKvSweeperOptions) {
    this.options = options;
    this.schedule = new SweepSchedule(options.intervalMs, options.startedAt);
  }

  /** Starts a round if one is due and none runs; returns at once. */
  maybeStart(now: number): void {
    if (this.stopped || this.options.states.length === 0 || !this.schedule.start(now)) return;
    this.round = this.run().finally(() => {
      this.schedule.finished();
      this.round = undefined;
    });
  }

  /** Stops after the entry at hand; resolves once the round in progress has settled. */
  async stop(): Promise<void> {
    this.stopped = true;
    await this.round;
  }

  private async run(): Promise<void> {
    const { transport, bucket, partition, states, clock } = this.options;
    let scanned = 0;
    let deleted = 0;
    let changed = 0;
    let undecodable = 0;
    let error: unknown;
    const inFlight = new Set<Promise<void>>();
    try {
      for (const state of states) {
        for await (const entry of transport.scanState(bucket, stateFilter(partition, state))) {
          if (this.stopped) break;
          scanned++;
          const verdict = sweepVerdict(entry.value, clock());
          if (verdict === "undecodable") undecodable++;
          if (verdict !== "delete") continue;
          const d: Promise<void> = transport.deleteStateIf(bucket, entry.key, entry.revision).then(
            (ok) => {
              inFlight.delete(d);
              if (ok) deleted++;
              else changed++;
            },
            (e: unknown) => {
              inFlight.delete(d);
              error ??= e;
            },
          );
          inFlight.add(d);
          if (inFlight.size >= DELETES_IN_FLIGHT) await Promise.race(inFlight);
          if (error !== undefined) break;
        }
        if (this.stopped || error !== undefined) break;
      }
    } catch (e) {
      error ??= e;
    }
    await Promise.all(inFlight);
    this.options.onRound?.({ scanned, deleted, changed, undecodable, ...(error === undefined ? {} : { error }) });
  }
}
