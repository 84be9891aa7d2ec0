/** `eddy ui`: the web console over the cluster (runtime/ui). */
import * as Command from "effect/cli/Command";
import * as Flag from "effect/cli/Flag";
import * as Option from "effect/Option";
import { natsFlag } from "../flags.ts";
import { checkPort, exitWith, UsageError } from "../run.ts";

export const ui = Command.make(
  "ui",
  {
    port: Flag.Int("port").pipe(Flag.withDescription("port to serve the console on (default 8080; 0: a free one)"), Flag.optional),
    host: Flag.String("host").pipe(Flag.withDescription("address to listen on (default 127.0.0.1; 0.0.0.0 for every interface)"), Flag.optional),
    admin: Flag.Boolean("admin").pipe(Flag.withDescription("allow state puts and deletes from the state page (each confirmed); default read-only"), Flag.withDefault(false)),
    nats: natsFlag(),
  },
  ({ port, host, admin, nats }) =>
    exitWith(async () => {
      const h = Option.getOrUndefined(host);
      if (h !== undefined && (h === "" || /[\s/]/.test(h))) throw new UsageError("--host must be an address or host name");
      const opts = { natsUrl: Option.getOrUndefined(nats), host: h, port: checkPort(Option.getOrUndefined(port), "--port"), admin };
      const { runUi } = await import("../../ui/run-ui.ts");
      return runUi(opts);
    }, { handlesSignals: true }),
).pipe(Command.withDescription("Serve the web console: jobs, job graph with backpressure, partitions, checkpoints, dead letters, workers, state"));
