/** `eddy state get|scan|put|delete|bootstrap|repartition`: query and write functions' keyed state. */
import * as Argument from "effect/cli/Argument";
import * as Command from "effect/cli/Command";
import * as Flag from "effect/cli/Flag";
import * as Option from "effect/Option";
import { jobArg, jsonFlag, natsFlag } from "../flags.ts";
import { exitWith, UsageError } from "../run.ts";

const stateTarget = {
  job: jobArg,
  fn: Argument.String("function").pipe(Argument.withDescription("function name")),
  nats: natsFlag(),
  json: jsonFlag(),
};
const stateName = Argument.String("state").pipe(Argument.withDescription("state name, as the function declares it"));
const stateKeyArg = Argument.String("key").pipe(Argument.withDescription("the key (as the function's key selector returns it)"));
const subkeyFlag = Flag.String("subkey").pipe(Flag.withDescription("one entry of a map state"), Flag.optional);
const committedFlag = Flag.Boolean("committed").pipe(
  Flag.withDescription("read the last committed checkpoint from KV (works with the job stopped) instead of the live actor"),
  Flag.withDefault(false),
);

const broadcastFlag = Flag.Boolean("broadcast").pipe(
  Flag.withDescription("read the function's broadcast state: <state> is a broadcast state, <key> its entry"),
  Flag.withDefault(false),
);

const stateGet = Command.make(
  "get",
  { ...stateTarget, state: stateName, key: stateKeyArg, subkey: subkeyFlag, committed: committedFlag, broadcast: broadcastFlag },
  ({ job, fn, state, key, subkey, committed, broadcast, nats, json }) =>
    exitWith(async () => {
      if (broadcast && Option.isSome(subkey)) throw new UsageError("--subkey does not go with --broadcast: the key is the broadcast state's entry");
      const { runStateGet } = await import("../state.ts");
      return runStateGet({ job, fn, state, key, subkey: Option.getOrUndefined(subkey), committed, broadcast, natsUrl: Option.getOrUndefined(nats), json });
    }),
).pipe(Command.withDescription("Read one key's state (live from the owning actor, or --committed), or with --broadcast an entry of the broadcast state"));

const stateScan = Command.make(
  "scan",
  {
    ...stateTarget,
    state: Flag.String("state").pipe(Flag.withDescription("only this state (default: all)"), Flag.optional),
    prefix: Flag.String("prefix").pipe(Flag.withDescription("only keys starting with this"), Flag.optional),
    limit: Flag.Int("limit").pipe(Flag.withDescription("at most this many entries (default: 100)"), Flag.withDefault(100)),
    committed: committedFlag,
    broadcast: Flag.Boolean("broadcast").pipe(Flag.withDescription("list the function's broadcast state (keys are its entries)"), Flag.withDefault(false)),
  },
  ({ job, fn, state, prefix, limit, committed, broadcast, nats, json }) =>
    exitWith(async () => {
      if (limit < 1) throw new UsageError("--limit must be at least 1");
      const { runStateScan } = await import("../state.ts");
      return runStateScan({ job, fn, state: Option.getOrUndefined(state), prefix: Option.getOrUndefined(prefix), limit, committed, broadcast, natsUrl: Option.getOrUndefined(nats), json });
    }),
).pipe(Command.withDescription("List keys and their state, by key prefix, over every partition"));

const statePut = Command.make(
  "put",
  { ...stateTarget, state: stateName, key: stateKeyArg, value: Argument.String("value").pipe(Argument.withDescription("the new value, as JSON")), subkey: subkeyFlag },
  ({ job, fn, state, key, value, subkey, nats, json }) =>
    exitWith(async () => {
      const { runStatePut } = await import("../state.ts");
      return runStatePut({ job, fn, state, key, value, subkey: Option.getOrUndefined(subkey), natsUrl: Option.getOrUndefined(nats), json });
    }),
).pipe(Command.withDescription("Write one key's state through the input log; returns once the actor applied it"));

const stateDelete = Command.make(
  "delete",
  { ...stateTarget, state: stateName, key: stateKeyArg, subkey: subkeyFlag },
  ({ job, fn, state, key, subkey, nats, json }) =>
    exitWith(async () => {
      const { runStateDelete } = await import("../state.ts");
      return runStateDelete({ job, fn, state, key, subkey: Option.getOrUndefined(subkey), natsUrl: Option.getOrUndefined(nats), json });
    }),
).pipe(Command.withDescription("Delete one key's state (or one map entry) through the input log"));

const stateBootstrap = Command.make(
  "bootstrap",
  {
    job: jobArg,
    fn: Argument.String("function").pipe(Argument.withDescription("function whose state to fill (as the deployed code declares it)")),
    from: Flag.String("from").pipe(Flag.withDescription("old items: savepoint:<id>, file:<path.ndjson> or stream:<name>")),
    with: Flag.String("with").pipe(Flag.withDescription("bootstrap module (.ts) exporting defineBootstrap({...})")),
    nats: natsFlag(),
    json: jsonFlag(),
  },
  ({ job, fn, from, with: module, nats, json }) =>
    exitWith(async () => {
      const { runStateBootstrap } = await import("../state.ts");
      return runStateBootstrap({ job, fn, from, module, natsUrl: Option.getOrUndefined(nats), json });
    }),
).pipe(Command.withDescription("Fill a function's state (windows included) from old data through a bootstrap module; works stopped or running"));

const stateRepartition = Command.make(
  "repartition",
  {
    job: jobArg,
    fn: Argument.String("function").pipe(Argument.withDescription("function to spread over a new number of partitions")),
    partitions: Flag.Int("partitions").pipe(Flag.withDescription("the new partition count")),
    fromSavepoint: Flag.String("from-savepoint").pipe(Flag.withDescription("savepoint to rewrite (it stays; a new one is written)")),
    nats: natsFlag(),
    json: jsonFlag(),
  },
  ({ job, fn, partitions, fromSavepoint, nats, json }) =>
    exitWith(async () => {
      if (partitions < 1 || partitions > 4096) throw new UsageError("--partitions must be in 1..4096");
      const { runRepartition } = await import("../savepoints.ts");
      return runRepartition({ job, fn, partitions, savepoint: fromSavepoint, natsUrl: Option.getOrUndefined(nats), json });
    }),
).pipe(Command.withDescription("Write a new savepoint with a function's state rewritten for another partition count"));

/** Subcommands of `eddy state`. */
const stateSubcommands = [stateGet, stateScan, statePut, stateDelete, stateBootstrap, stateRepartition];

export const stateCommand = Command.make("state").pipe(
  Command.withDescription("Query and write functions' keyed state"),
  Command.withSubcommands(stateSubcommands),
);
