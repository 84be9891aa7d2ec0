/**
 * Metrics of the actors a worker process hosts: records in and out, dead letters, input lag,
 * watermark and its lag behind wall time, the last materialized checkpoint and the
 * materialization lag (checkpoints and keys committed but not in KV), where the actors' time
 * goes (busy, backpressured, idle: Flink's *TimeMsPerSecond), per job,
 * function and partition; and the control-plane input this process refused (rejections.ts).
 */
import type { ActorStats } from "../actor/partition-actor.ts";
import { MetricsText } from "./prometheus.ts";
import { addRejectionMetrics } from "./rejections.ts";

export function actorMetrics(jobs: ReadonlyArray<{ readonly job: string; readonly stats: readonly ActorStats[] }>, now = Date.now()): string {
  const m = new MetricsText();
  for (const { job, stats } of jobs) {
    for (const s of stats) {
      const l = { job, function: s.fn, partition: s.partition };
      m.add("eddy_records_in_total", "counter", "Records handed to the function.", l, s.recordsIn);
      m.add("eddy_records_out_total", "counter", "Records the function emitted.", l, s.recordsOut);
      m.add("eddy_dead_letters_total", "counter", "Records sent to the dead-letter stream.", l, s.deadLettered);
      for (const [event, n] of s.events ?? []) m.add("eddy_function_events_total", "counter", "Events a function counted (ctx.count), e.g. late records windowed() dropped.", { ...l, event }, n);
      m.add("eddy_input_lag_messages", "gauge", "Input messages waiting after the last one read.", l, s.lag);
      m.add("eddy_watermark_ms", "gauge", "Event-time watermark of the actor (epoch ms).", l, s.watermark);
      if (Number.isFinite(s.watermark)) m.add("eddy_watermark_lag_seconds", "gauge", "How far the watermark is behind wall-clock time.", l, (now - s.watermark) / 1000);
      m.add("eddy_checkpoint_applied", "gauge", "Last checkpoint this actor materialized in KV.", l, s.applied);
      m.add("eddy_held_bytes", "gauge", "Bytes held in memory: exactly-once sink output awaiting commit and messages held by an alignment.", l, s.heldBytes);
      m.add("eddy_spilled_bytes", "gauge", "Bytes of exactly-once sink output awaiting commit in the job's spill stream.", l, s.spilledBytes);
      m.add("eddy_alignments_declined_total", "counter", "Checkpoints declined because their alignment held more than maxAlignmentBytes.", l, s.declinedAlignments);
      m.add("eddy_materialization_lag_checkpoints", "gauge", "Committed checkpoints whose delta is not in KV yet.", l, s.materializationLagCheckpoints);
      m.add("eddy_materialization_lag_keys", "gauge", "Distinct KV keys changed by committed checkpoints not in KV yet.", l, s.materializationLagKeys);
      m.add("eddy_materialization_rounds_total", "counter", "Materialization rounds (one round writes every checkpoint committed while the previous one ran).", l, s.materializationRounds);
      m.add("eddy_output_rounds_total", "counter", "Publishes of committed exactly-once sink output ahead of the materialization round that writes its state.", l, s.outputRounds);
      m.add("eddy_materialized_checkpoints_total", "counter", "Committed checkpoints written to KV.", l, s.materializedCheckpoints);
      m.add("eddy_materialization_writes_total", "counter", "KV puts and deletes of materialization (each key once per round).", l, s.materializationWrites);
      m.add("eddy_materialization_backpressure", "gauge", "1 while the actor stops reading because materialization is behind its bound.", l, s.materializationBackpressure ? 1 : 0);
      m.add("eddy_materialization_wait_seconds_total", "counter", "Time the actor stopped reading for materialization to catch up.", l, s.materializationWaitMs / 1000);
      m.add("eddy_state_cache_keys", "gauge", "Keys whose state the actor holds in memory (absent ones included).", l, s.cacheKeys);
      m.add("eddy_state_cache_bytes", "gauge", "Bytes the state in memory is charged against the state cache budget.", l, s.cacheBytes);
      m.add("eddy_state_cache_hits_total", "counter", "Keys a message needed that were in memory.", l, s.cacheHits);
      m.add("eddy_state_cache_misses_total", "counter", "Keys a message needed that were not in memory (read from KV, or new).", l, s.cacheMisses);
      m.add("eddy_state_cache_evictions_total", "counter", "Keys dropped from memory to stay within the state cache budget.", l, s.cacheEvictions);
      m.add("eddy_state_gets_total", "counter", "State entries read from KV one at a time: value states and map entries (a KV get each).", l, s.stateGets);
      m.add("eddy_state_listings_total", "counter", "Map states read whole from KV (a listing of one key's entries each).", l, s.stateListings);
      m.add("eddy_timers_resident", "gauge", "Timers in memory: those of the time buckets near the watermark and the wall clock.", l, s.timersResident);
      m.add("eddy_timer_buckets_far", "gauge", "Time buckets beyond the resident ones that may hold timers in KV.", l, s.timerBucketsFar);
      m.add("eddy_timer_bucket_loads_total", "counter", "Timer buckets listed from KV (at restore and as the clocks came near).", l, s.timerBucketLoads);
      m.add("eddy_ttl_sweep_deleted_total", "counter", "Expired TTL state entries the background KV sweep deleted (keys not in memory).", l, s.ttlSweepDeleted);
      m.add("eddy_ttl_sweep_failures_total", "counter", "Background KV sweeps of TTL state that failed (the next one tries again).", l, s.ttlSweepFailures);
      m.add("eddy_input_purge_failures_total", "counter", "Purges of consumed input the server did not acknowledge in time (the next materialization round purges again).", l, s.purgeFailures);
      m.add("eddy_broadcast_held", "gauge", "Broadcast records held until the checkpoint barrier of their epoch.", l, s.broadcastHeld);
      m.add("eddy_broadcast_applied_total", "counter", "Broadcast records applied by processBroadcast.", l, s.broadcastApplied);
      m.add("eddy_broadcast_rejected_total", "counter", "Broadcast records refused: over the held bound, or processBroadcast threw (e.g. past the state budget).", l, s.broadcastRejected);
      m.add("eddy_broadcast_state_bytes", "gauge", "Bytes of broadcast state, against broadcastLimits.stateBytes.", l, s.broadcastStateBytes);
      // Flink's busyTimeMsPerSecond, backPressuredTimeMsPerSecond, idleTimeMsPerSecond, and their totals for rate().
      m.add("eddy_busy_time_ms_per_second", "gauge", "Milliseconds of the last second the actor spent handling input.", l, s.busyMsPerSecond);
      m.add("eddy_backpressured_time_ms_per_second", "gauge", "Milliseconds of the last second the actor waited for downstream (publish window full, sink output or materialization behind).", l, s.backpressuredMsPerSecond);
      m.add("eddy_idle_time_ms_per_second", "gauge", "Milliseconds of the last second the actor waited for input.", l, s.idleMsPerSecond);
      m.add("eddy_busy_time_seconds_total", "counter", "Time the actor spent handling input.", l, s.busyMs / 1000);
      m.add("eddy_backpressured_time_seconds_total", "counter", "Time the actor waited for downstream.", l, s.backpressuredMs / 1000);
      m.add("eddy_idle_time_seconds_total", "counter", "Time the actor waited for input.", l, s.idleMs / 1000);
      if (s.lookupHits !== undefined) {
        m.add("eddy_lookup_cache_hits_total", "counter", "Lookup keys a batch needed that the worker's lookup cache held.", l, s.lookupHits);
        m.add("eddy_lookup_gets_total", "counter", "Lookup keys read from the lookup bucket (cache misses).", l, s.lookupGets ?? 0);
      }
    }
  }
  addRejectionMetrics(m);
  return m.render();
}
