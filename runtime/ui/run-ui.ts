/**
 * `eddy ui`: the web console on one NATS connection until SIGINT/SIGTERM. Prints the URL on
 * stdout (scripts and tests read it), the mode on stderr.
 */
import * as Effect from "effect/Effect";
import { connectNats, natsUrlOf } from "../nats/connection.ts";
import { waitForSignal } from "../process/wait-for-signal.ts";
import { startConsole } from "./server.ts";

export interface UiOptions {
  readonly natsUrl: string | undefined;
  readonly host: string | undefined;
  readonly port: number | undefined;
  readonly admin: boolean;
}

export async function runUi(o: UiOptions): Promise<number> {
  const nc = await connectNats(natsUrlOf(o.natsUrl), "eddy-ui");
  try {
    const ui = await startConsole({ nc, host: o.host ?? "127.0.0.1", port: o.port ?? 8080, admin: o.admin });
    try {
      console.log(ui.url);
      process.stderr.write(`eddy ui: ${o.admin ? "admin mode: state puts and deletes allowed, each confirmed" : "read-only"}; Ctrl-C stops it\n`);
      await Effect.runPromise(waitForSignal);
    } finally {
      await ui.close();
    }
  } finally {
    await nc.close();
  }
  return 0;
}
