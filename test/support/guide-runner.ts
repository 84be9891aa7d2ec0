/**
 * Runs a guide as written (docs/getting-started.md and docs/guides/deploying-and-scaling.md, each
 * from its test in test/integration/docs-*.test.ts): every command of its `sh` blocks runs, in order, as written, and a plain block after a `sh` block must be
 * what those commands printed (one line after the other, nothing left out unless the guide shows
 * a `…` line). A command that fails fails the test.
 *
 * The guides tell the test in `<!-- test: … -->` comments what their prose says in words:
 * - `skip: <why>` — the next block is not run or not compared (installing eddy, say);
 * - `background <name>…` — the last commands of the next `sh` block keep running (a server, a
 *   supervisor, a worker, `eddy dev`), started in the background under those names; the plain
 *   block after it is what they print, in any order (they run concurrently);
 * - `output of <name>…` — the next plain block is what those processes print from the previous
 *   `sh` block on, in any order (`output of <name> in order`: one line after the other); the
 *   test waits for it. A name with a `/` is a file pattern
 *   (`.eddy/logs/*.log`): what those files hold;
 * - `any order` — the next plain block's lines may come in any order (outputs of several
 *   partitions interleave);
 * - `retry` — the next `sh` block only reads (the output of an exactly-once sink, which appears
 *   at the next checkpoint; `eddy status`): it runs again until it prints what the plain block
 *   after it shows, for up to 30 s;
 * - `refused` — every command of the next `sh` block must fail, with exit code 1;
 * - `signal <name> SIGINT|SIGTERM` — Ctrl-C (the signal goes to the process group, as a
 *   terminal sends it);
 * - `wait <name>` — the process must end by itself, with exit code 0.
 *
 * As written, but with these differences, which do not change what is run:
 * - `npx eddy …`, `npx node …` and `npm run <script>` run the pinned Node directly (what npx and
 *   npm would start, without their start-up time), and `curl -s <url>` is a fetch (so that the
 *   test needs no curl);
 * - the ports the guides use (4222, 9464, 9465) are replaced by free ones, in the commands and
 *   in the output they show, so the test can run next to others; `EDDY_NATS_URL` and `NATS_URL`
 *   name the replacement of 4222, the default of eddy's commands and of the example clients;
 * - the process ids `eddy scale` prints replace the ones the guide shows in later commands;
 * - the working directory is a temporary directory that links every entry of the repository
 *   except `.eddy/`, so `.eddy/` (a server's store, `eddy scale`'s workers and logs) is the test's;
 * - in shown output, the values listed in `NORMALISED` (guide.ts) — times, worker
 *   and supervisor ids, digests, checkpoint ids, durations, sizes, pids, temporary directories —
 *   match any value of their kind, `…` matches anything, and table columns may be aligned
 *   differently.
 * Everything started is stopped at the end: background processes by Ctrl-C (SIGINT to their
 * process group; SIGKILL after 5 s), workers `eddy scale` left running by SIGKILL to their pid.
 */
import { expect } from "vitest";
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync } from "node:fs";
import { tmpdir } from "node:os";
import { basename, dirname, join } from "node:path";
import { freePort } from "../../runtime/nats/local-server.ts";
import { readWorkers } from "../../runtime/dev/scale.ts";
import { CLI, ROOT, runCommand, type CliResult } from "./cli.ts";
import { findShown, markdownBlocks, words } from "./guide.ts";
import { waitFor } from "./wait.ts";

/** The ports the guides use; each is replaced by a free one. */
const GUIDE_PORTS = ["4222", "9464", "9465"];

interface Background {
  readonly name: string;
  readonly child: ChildProcess;
  readonly exited: Promise<number | null>;
  output: string;
  /** Where the output stood when the last `sh` block started. */
  mark: number;
}

class GuideRun implements AsyncDisposable {
  readonly cwd = mkdtempSync(join(tmpdir(), "eddy-guide-"));
  readonly env: Record<string, string | undefined> = { EDDY_METRICS_PORT: undefined };
  readonly processes = new Map<string, Background>();
  /** Guide value -> value of this run (ports, pids), applied to commands and shown output. */
  readonly substitutions = new Map<string, string>();

  readonly guide: string;

  constructor(guide: string) {
    this.guide = guide;
    for (const entry of readdirSync(ROOT)) if (entry !== ".eddy") symlinkSync(join(ROOT, entry), join(this.cwd, entry));
  }

  async ports(): Promise<void> {
    for (const p of GUIDE_PORTS) this.substitutions.set(p, String(await freePort()));
    // The default URL of eddy's commands and of the example clients.
    this.env.EDDY_NATS_URL = this.env.NATS_URL = this.substitute("nats://127.0.0.1:4222");
  }

  substitute(text: string): string {
    let out = text;
    for (const [from, to] of this.substitutions) out = out.replace(new RegExp(`(?<![\\d.])${from}(?![\\d.])`, "g"), to);
    return out;
  }

  /** What the processes printed, for failure messages. */
  logs(): string {
    const scaled = this.outputOf(".eddy/logs/*.log", false);
    return [...[...this.processes.values()].map((p) => `--- ${p.name}\n${p.output.slice(-3000)}`), ...(scaled === "" ? [] : [`--- .eddy/logs\n${scaled.slice(-2000)}`])].join("\n");
  }

  /** The program and arguments a command line runs, or an environment change. */
  argv(line: string): { file: string; args: string[] } | { export: [string, string] } {
    const w = words(this.substitute(line)).map((x) => x.replace(/\$(\w+)/g, (_, v: string) => this.env[v] ?? process.env[v] ?? ""));
    if (w[0] === "export") {
      const [k, ...v] = w[1]!.split("=");
      return { export: [k!, v.join("=")] };
    }
    if (w[0] === "npx" && w[1] === "eddy") return { file: process.execPath, args: [CLI, ...w.slice(2)] };
    if (w[0] === "npx" && w[1] === "node") return { file: process.execPath, args: w.slice(2) };
    if (w[0] === "npm" && w[1] === "run") {
      const script = (JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")) as { scripts: Record<string, string> }).scripts[w[2]!];
      const s = words(script ?? "");
      if (s[0] !== "node") throw new Error(`the test cannot run "${line}" (script ${JSON.stringify(script)})`);
      const extra = w[3] === "--" ? w.slice(4) : w.slice(3);
      return { file: process.execPath, args: [...s.slice(1), ...extra] };
    }
    return { file: w[0]!, args: w.slice(1) };
  }

  start(name: string, line: string): void {
    if (this.processes.get(name)?.child.exitCode === null) throw new Error(`${this.guide}: "${name}" is still running`);
    const a = this.argv(line);
    if ("export" in a) throw new Error(`${this.guide}: cannot run "${line}" in the background`);
    const child = spawn(a.file, a.args, { cwd: this.cwd, env: { ...process.env, ...this.env }, stdio: ["ignore", "pipe", "pipe"], detached: true });
    const p: Background = { name, child, output: "", mark: 0, exited: new Promise((r) => child.once("exit", (code) => r(code))) };
    child.stdout!.on("data", (d) => (p.output += d));
    child.stderr!.on("data", (d) => (p.output += d));
    this.processes.set(name, p);
  }

  /** What a process printed since `mark`, or what the files a pattern names hold. */
  outputOf(name: string, sinceMark: boolean): string {
    if (!name.includes("/")) {
      const p = this.process(name);
      return p.output.slice(sinceMark ? p.mark : 0);
    }
    const dir = join(this.cwd, dirname(name));
    const pattern = new RegExp(`^${basename(name).split("*").map((x) => x.replace(/[.+?^${}()|[\]\\]/g, "\\$&")).join(".*")}$`);
    let files: string[] = [];
    try {
      files = readdirSync(dir).filter((f) => pattern.test(f));
    } catch {
      // not there yet
    }
    return files.map((f) => readFileSync(join(dir, f), "utf8")).join("\n");
  }

  process(name: string): Background {
    const p = this.processes.get(name);
    if (p === undefined) throw new Error(`${this.guide}: no process "${name}" was started`);
    return p;
  }

  async run(line: string): Promise<CliResult | undefined> {
    const a = this.argv(line);
    if ("export" in a) {
      this.env[a.export[0]] = a.export[1];
      return undefined;
    }
    if (a.file === "kill") {
      // Only ever a worker this run started, never a process of someone else's.
      const ours = this.scaledPids();
      const pid = a.args.at(-1)!;
      if (!ours.includes(pid)) throw new Error(`${this.guide}: "${line}" would signal ${pid}, which is not a worker eddy scale started in this run (${ours.join(", ")})`);
    }
    if (a.file === "curl" && a.args.length === 2 && a.args[0] === "-s") {
      const r = await fetch(a.args[1]!).then(async (res) => ({ code: res.ok ? 0 : 22, text: await res.text() }), (e: Error) => ({ code: 7, text: `curl: ${e.message}\n` }));
      return { code: r.code, signal: null, stdout: r.text, stderr: "", output: r.text };
    }
    return runCommand(a.file, a.args, { cwd: this.cwd, env: this.env, timeoutMs: 60_000 }, line);
  }

  /** The workers `eddy scale` started that still run (a pid reused by another process is not one of them). */
  scaledPids(): string[] {
    return readWorkers(join(this.cwd, ".eddy")).map((w) => String(w.pid));
  }

  async [Symbol.asyncDispose](): Promise<void> {
    // Ctrl-C, newest first, so that `eddy dev` and `eddy nats-server` remove their stores; then
    // SIGKILL whatever is left after a few seconds.
    const running = [...this.processes.values()].filter((p) => p.child.exitCode === null && p.child.signalCode === null).reverse();
    const signal = (p: Background, s: NodeJS.Signals) => {
      try {
        process.kill(-p.child.pid!, s);
      } catch {
        // already gone
      }
    };
    for (const p of running) signal(p, "SIGINT");
    const settled = Promise.all(running.map((p) => p.exited));
    if ((await Promise.race([settled, new Promise<"late">((r) => setTimeout(() => r("late"), 5_000))])) === "late") {
      for (const p of running) signal(p, "SIGKILL");
      await settled;
    }
    for (const pid of this.scaledPids()) {
      try {
        process.kill(Number(pid), "SIGKILL");
      } catch {
        // already gone
      }
    }
    rmSync(this.cwd, { recursive: true, force: true });
  }
}

/** Runs a guide's blocks in order, as the comment at the top of this file describes. */
export async function runGuide(path: string): Promise<void> {
  const blocks = markdownBlocks(readFileSync(join(ROOT, path), "utf8"));
  expect(blocks.filter((b) => b.kind === "fence" && b.lang === "sh").length).toBeGreaterThan(5);
  await using run = new GuideRun(path);
  await run.ports();
  let skip = false;
  let anyOrder = false;
  let outputOf: string[] | undefined;
  let background: string[] = [];
  let retry = false;
  let logsInOrder = false;
  let refused = false;
  /** What the last `sh` block left to compare with the next plain block. */
  let last:
    | { kind: "printed"; output: string; what: string }
    | { kind: "background"; names: string[] }
    | { kind: "retry"; commands: string[] }
    | undefined;
  const where = (at: number) => `${path}:${at}`;

  for (const block of blocks) {
    if (block.kind === "test") {
      const [verb, ...rest] = block.text.split(/\s+/);
      if (verb === "skip:") skip = true;
      else if (verb === "any" && rest[0] === "order") anyOrder = true;
      else if (verb === "output" && rest[0] === "of") {
        logsInOrder = rest.at(-2) === "in" && rest.at(-1) === "order";
        outputOf = rest.slice(1, logsInOrder ? -2 : undefined).map((n) => n.replace(/,$/, ""));
      } else if (verb === "background") background = rest;
      else if (verb === "retry") retry = true;
      else if (verb === "refused") refused = true;
      else if (verb === "signal") {
        const p = run.process(rest[0]!);
        process.kill(-p.child.pid!, rest[1] as NodeJS.Signals);
      } else if (verb === "wait") {
        const p = run.process(rest[0]!);
        const code = await Promise.race([p.exited, new Promise<"timeout">((r) => setTimeout(() => r("timeout"), 60_000).unref())]);
        expect(code, `${where(block.at)}: ${rest[0]} should end with code 0\n${p.output}`).toBe(0);
      } else throw new Error(`${where(block.at)}: unknown test comment "${block.text}"`);
      continue;
    }
    if (block.lang === "sh") {
      const commands = block.lines.map((l) => l.replace(/(^|\s)#.*$/, "").trim()).filter((l) => l !== "");
      if (skip) {
        skip = false;
        background = [];
        last = undefined;
        continue;
      }
      for (const p of run.processes.values()) p.mark = p.output.length;
      const inForeground = commands.slice(0, commands.length - background.length);
      if (retry) {
        retry = false;
        last = { kind: "retry", commands: inForeground };
        continue;
      }
      let output = "";
      for (const line of inForeground) {
        const r = await run.run(line);
        if (r === undefined) continue;
        if (refused) expect(r.code, `${where(block.at)}: "${line}" should be refused:\n${r.output}`).toBe(1);
        else expect(r.code, `${where(block.at)}: "${line}" failed:\n${r.output}\n${run.logs()}`).toBe(0);
        output += r.output;
      }
      refused = false;
      commands.slice(inForeground.length).forEach((line, i) => run.start(background[i]!, line));
      last = background.length > 0 ? { kind: "background", names: background } : { kind: "printed", output, what: inForeground.join("; ") };
      background = [];
      continue;
    }
    if (block.lang !== "") continue;
    if (skip) {
      skip = false;
      anyOrder = false;
      outputOf = undefined;
      logsInOrder = false;
      continue;
    }
    const shown = block.lines.map((l) => run.substitute(l));
    const logsOf = outputOf ?? (last?.kind === "background" ? last.names : undefined);
    if (logsOf !== undefined) {
      const since = outputOf !== undefined;
      const text = () => logsOf.map((n) => run.outputOf(n, since)).join("\n");
      const inOrder = logsInOrder;
      await waitFor(`${where(block.at)}: the lines shown there in the output of ${logsOf.join(", ")}`, () => findShown(shown, text(), { inOrder, whole: false }) === undefined, {
        timeoutMs: 40_000,
        logs: () => `${findShown(shown, text(), { inOrder, whole: false })}\n${run.logs()}`,
      });
    } else if (last?.kind === "retry") {
      const commands = last.commands;
      let output = "";
      await waitFor(`${where(block.at)}: "${commands.join("; ")}" to print what the guide shows`, async () => {
        output = "";
        for (const line of commands) {
          const r = await run.run(line);
          if (r === undefined) continue;
          expect(r.code, `${where(block.at)}: "${line}" failed:\n${r.output}\n${run.logs()}`).toBe(0);
          output += r.output;
        }
        return findShown(shown, output, { inOrder: !anyOrder, whole: true }) === undefined;
      }, { timeoutMs: 30_000, intervalMs: 300, logs: () => `${findShown(shown, output, { inOrder: !anyOrder, whole: true })}\n${output}\n${run.logs()}` });
    } else if (last?.kind === "printed") {
      const missing = findShown(shown, last.output, { inOrder: !anyOrder, whole: true });
      expect(missing, `${where(block.at)}: what "${last.what}" printed:\n${last.output}\n${run.logs()}`).toBeUndefined();
      bindPids(run, shown, last.output);
    } else {
      throw new Error(`${where(block.at)}: an output block that follows no command; say whose output it is with <!-- test: output of … -->`);
    }
    // A plain block shows the output of one step; the next needs a step (or a comment) of its own.
    last = undefined;
    anyOrder = false;
    outputOf = undefined;
    logsInOrder = false;
  }
}

/** `eddy scale` printed pids: later commands of the guide use them for the ones it shows. */
function bindPids(run: GuideRun, shown: readonly string[], output: string): void {
  const pids = (text: string) => /local workers?: (\d+(?:, \d+)*)/.exec(text)?.[1]!.split(", ");
  const guide = pids(shown.join("\n"));
  const actual = pids(output);
  if (guide === undefined || actual === undefined) return;
  guide.forEach((g, i) => run.substitutions.set(g, actual[i]!));
}

