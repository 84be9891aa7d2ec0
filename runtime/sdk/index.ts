/**
 * The eddy SDK: everything a function author imports, as an explicit list. Adding a name here
 * makes it public API; internals that other runtime modules need are exported from
 * `./internal.ts` instead, never from here.
 *
 * @example
 * import { defineFunction, definePipeline, fromStream, fromFunction, windowed, tumbling, boundedOutOfOrderness } from "eddy/sdk";
 * import { testHarness } from "eddy/testing"; // in unit tests: a separate entry, so deployed bundles do not carry it
 * (`eddy/sdk` resolves inside this repository through package.json `exports`; elsewhere import
 * `runtime/sdk/index.ts` by path.)
 */

// Functions and pipelines
export { broadcast, defineFunction, definePipeline, defineSink, fromFunction, fromStream } from "./function.ts";
export type {
  BroadcastContext,
  BroadcastHandles,
  BroadcastLimits,
  BroadcastStateDeclarations,
  ReadOnlyBroadcastHandles,
  ReadOnlyBroadcastState,
  Context,
  FunctionInput,
  FunctionSpec,
  Input,
  InputFormat,
  PipelineSpec,
  SinkSpec,
  StreamInput,
  UpsertSpec,
  RowOf,
  TimerInfo,
  TimerService,
} from "./function.ts";

// Changelog records (rows with a row kind, as Flink's RowKind)
export { asChange, change, isAddition, isChange, ROW_KINDS } from "../spec/changelog.ts";
export type { Change, RowKind } from "../spec/changelog.ts";
export { oplog } from "./oplog.ts";
export type { OplogOptions, OplogRow } from "./oplog.ts";

// Broadcast state (design note bq)
export { BroadcastStateBudgetError, BroadcastStateReadOnlyError } from "../core/broadcast.ts";

// Keyed state
export { InvalidStateDeclarationError, listState, mapState, reducingState, valueState } from "./state.ts";
export type {
  ListState,
  ListStateDeclaration,
  MapEntrySelector,
  MapState,
  MapStateDeclaration,
  ReducingState,
  ReducingStateDeclaration,
  StateDeclaration,
  StateDeclarations,
  StateHandle,
  StateHandles,
  StateOptions,
  StateTtl,
  TtlStateVisibility,
  TtlTimeCharacteristic,
  TtlUpdateType,
  ValueState,
  ValueStateDeclaration,
} from "./state.ts";

// Windows
export {
  continuousEventTimeTrigger,
  continuousProcessingTimeTrigger,
  countTrigger,
  earlyFirings,
  eventTimeTrigger,
  globalWindow,
  InvalidWindowSpecError,
  LATE_RECORDS_DROPPED,
  processingTimeTrigger,
  purging,
  session,
  sliding,
  tumbling,
  windowed,
  windowParameters,
} from "./windows.ts";
export type {
  AggregateFunction,
  EarlyFiringOptions,
  Firing,
  Interval,
  LocalAggregationOptions,
  OnMergeContext,
  ParameterChange,
  ParameterValue,
  TimeWindow,
  Trigger,
  TriggerContext,
  TriggerResult,
  WindowedSpec,
  WindowResult,
  WindowSpec,
  WindowTime,
} from "./windows.ts";

// Distinct counts: exact, HyperLogLog, split distinct (design note cb)
export { approxCountDistinct, countDistinct, distinctBucket, hllStandardError, windowedDistinct } from "./distinct.ts";
export type { ApproxDistinctOptions, BucketCount, DistinctValues, HllSketch, WindowedDistinctSpec } from "./distinct.ts";

// Joins
export { AppendOnlyInputError, intervalJoin, InvalidJoinSpecError, streamJoin, temporalJoin, windowJoin } from "./joins.ts";
export type { ChangelogJoinState, JoinOutput, JoinTtl, JoinType, StoredRow, TemporalJoinState, TemporalVersion } from "./joins.ts";

// Lookup join against a KV bucket (design note by)
export { InvalidLookupJoinError, lookupJoin, LookupJoinRetractionError } from "./lookup.ts";
export type { LookupJoinSpec } from "./lookup.ts";
export { LookupFailedError } from "../core/lookup.ts";
export type { LookupSpec } from "../spec/function.ts";

// Dedup, the "no meaningful change" filter and retracting aggregates (design note bw)
export { dedup, dropUnchanged, InvalidDedupSpecError, RetractionNotAllowedError } from "./dedup.ts";
export type { DedupKeep, DedupSpec, DropUnchangedSpec } from "./dedup.ts";
export { groupAggregate, InvalidAggregateSpecError } from "./aggregate.ts";
export type { GroupAggregateFunction, GroupAggregateSpec } from "./aggregate.ts";

// Watermarks
export { boundedOutOfOrderness, percentileWatermark, withIdleness } from "./watermarks.ts";
export type { WatermarkStrategy } from "./watermarks.ts";

// State bootstrap modules
export { defineBootstrap } from "./bootstrap.ts";
export type { BootstrapContext, BootstrapSpec, SavepointEntry, WindowWriter } from "./bootstrap.ts";

// Complex event processing
export {
  cep,
  InvalidPatternError,
  noSkip,
  pattern,
  PatternBuilder,
  patternFromJson,
  patternToJson,
  skipPastLastEvent,
  skipToFirst,
  skipToLast,
  skipToNext,
} from "./cep.ts";
export type { AfterMatchSkip, CepSpec, CepState, CepTimeout, Condition, ConditionInput, Contiguity, Match, MatchView, Pattern, Quantifier, Stage } from "./cep.ts";

// Live rules (design note bu)
export { checkRuleChange, InvalidLiveRulesError, liveRules, ruleSubjectPrefix } from "./rules.ts";
export type { Alert, KeyedEvent, LiveRulesBroadcastState, LiveRulesOptions, LiveRulesState, Rule, RuleChange, RuleNfa } from "./rules.ts";
