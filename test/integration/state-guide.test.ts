/**
 * docs/state.md is executable: every `$ eddy …` line of its `sh` blocks runs, in order, against a
 * real nats-server with a supervisor and a worker process, and what the guide shows after a
 * command must be in what it printed (`...` stands for what differs per run, such as ids and
 * times). A command the guide marks `# refused` must fail. `<!-- test: … -->` comments say where
 * the test publishes the page views the guide talks about. `$SP` is the savepoint id the last
 * `savepoint`, `stop` or `repartition` command printed.
 */
import { describe, expect, it } from "vitest";
import { readFileSync } from "node:fs";
import { resolve } from "node:path";
import { ensureStream, publishAll, readAll } from "../../runtime/nats/streams.ts";
import { stateClient } from "../../runtime/nats/state-client.ts";
import { startSupervisor } from "../../runtime/supervisor/supervisor.ts";
import { connect, natsServer } from "../support/nats-server.ts";
import { runEddy } from "../support/cli.ts";
import { startEddy } from "../support/processes.ts";
import { markdownBlocks, words } from "../support/guide.ts";
import { waitFor } from "../support/wait.ts";

const ROOT = resolve(import.meta.dirname, "../..");
const GUIDE = resolve(ROOT, "docs/state.md");

/** A step of the guide: a command with the output it shows, or a marker. */
type Step = { kind: "command"; line: string; args: string[]; refused: boolean; shown: string[] } | { kind: "marker"; what: string };

function steps(markdown: string): Step[] {
  const out: Step[] = [];
  for (const block of markdownBlocks(markdown)) {
    if (block.kind === "test") {
      out.push({ kind: "marker", what: block.text });
      continue;
    }
    if (block.lang !== "sh") continue;
    let current: Extract<Step, { kind: "command" }> | undefined;
    for (const raw of block.lines) {
      if (raw.startsWith("$ ")) {
        const [command, comment] = raw.slice(2).split(/\s+#\s*/);
        current = { kind: "command", line: raw.slice(2), args: words(command!).slice(1), refused: comment?.trim() === "refused", shown: [] };
        out.push(current);
      } else if (current !== undefined && raw.trim() !== "") {
        current.shown.push(raw.trim());
      }
    }
  }
  return out;
}

describe("docs/state.md", () => {
  it("runs as written", async () => {
    const guide = steps(readFileSync(GUIDE, "utf8"));
    expect(guide.filter((s) => s.kind === "command").length).toBeGreaterThan(15);

    await using server = await natsServer();
    const nc = await connect(server);
    const supervisor = await startSupervisor(nc, { checkpointIntervalMs: 200 });
    const worker = startEddy(["worker", "--nats", server.url]);
    const eddy = (args: string[]) => runEddy([...args, "--nats", server.url]);
    const patiently = { timeoutMs: 60_000, logs: worker.output, retryErrors: true };
    const views = (list: Array<[string, string, number]>) => publishAll(nc, list.map(([page, user, ts]) => ({ subject: "views.in", data: JSON.stringify({ page, user, ts }) })));
    const outputs = async () => (await readAll(nc, "VIEWS_OUT")).length;
    let sp = "";
    try {
      await ensureStream(nc, "VIEWS_IN", ["views.in"]);
      await ensureStream(nc, "VIEWS_OUT", ["views.out"]);
      for (const step of guide) {
        if (step.kind === "marker") {
          if (step.what === "publish before") {
            await views([["/a", "u1", 1_000], ["/a", "u2", 2_000], ["/b", "u1", 3_000], ["/a", "u1", 61_000], ["/a", "u3", 62_000], ["/b", "u2", 63_000], ["/a", "u9", 100_000]]);
            const counts = await stateClient(nc, "views", "counts");
            await waitFor("the views counted", async () => JSON.stringify(await counts.get("windows", "/a")) === JSON.stringify({ "60000": 3 }) && (await outputs()) === 2, patiently);
          } else if (step.what === "publish after, expect v2 windows") {
            await views([["/a", "u4", 110_000], ["/b", "u4", 115_000], ["/z", "u0", 250_000]]);
            await waitFor("the bootstrapped windows to fire", async () => (await outputs()) === 4, patiently);
          } else {
            throw new Error(`unknown test marker ${JSON.stringify(step.what)} in docs/state.md`);
          }
          continue;
        }
        const args = step.args.map((a) => a.replaceAll("$SP", sp));
        const r = await eddy(args);
        const what = `eddy ${args.join(" ")}\n${r.output}\n${worker.output().slice(-3000)}`;
        if (step.refused) expect(r.code, what).not.toBe(0);
        else expect(r.code, what).toBe(0);
        for (const shown of step.shown) {
          // Each piece between "..." must appear, in order within the line.
          let at = 0;
          for (const piece of shown.split("...").map((p) => p.trim()).filter((p) => p !== "")) {
            const i = r.output.indexOf(piece, at);
            expect(i, `"${piece}" (from "${shown}") in the output of ${what}`).toBeGreaterThanOrEqual(0);
            at = i + piece.length;
          }
        }
        if (["savepoint", "stop", "state"].includes(args[0]!)) sp = /sp-[A-Za-z0-9-]+/.exec(r.output)?.[0] ?? sp;
      }
      // The upgrade counted every view once: minute 1 of /a and /b fired by version 2 with the
      // counts from before the savepoint plus the one view each after it.
      const fired = (await readAll(nc, "VIEWS_OUT")).map((m) => JSON.parse(new TextDecoder().decode(m.data)) as { key: string; start: number; value: unknown });
      expect(fired.slice(2).map((o) => [o.key, o.start, o.value]).sort()).toEqual([
        ["/a", 60_000, { count: 4, distinctUsers: 1 }],
        ["/b", 60_000, { count: 2, distinctUsers: 1 }],
      ]);
    } finally {
      await worker.kill();
      await supervisor.stop();
      await nc.close();
    }
  }, 300_000);
});
