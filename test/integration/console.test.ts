/**
 * The web console in a real browser (issue 17): `eddy ui` as a process over a real nats-server
 * with a supervisor and a worker process running test/fixtures/console-job.ts, driven by Debian's
 * headless Chromium through playwright-core (scripts/ensure-chromium.ts installs it for
 * `npm test`). The pages must show what the cluster does: every function in the graph, the one
 * function that waits for its sink's commit marked backpressured, a checkpoint the test asked
 * for in the history, a value from the state browser, and a SIGKILLed worker as a restart.
 *
 * Checkpoints come only when the test asks (`--checkpoint-interval 0`) and the worker bounds held
 * sink output to 1 byte, so `audit` (a source that sinks) is backpressured from its first record
 * until the next commit: deterministic, not a matter of load.
 *
 * With EDDY_CONSOLE_SCREENSHOTS=<dir> the test also saves the main pages there (docs/console/).
 */
import { spawn, spawnSync } from "node:child_process";
import { mkdirSync } from "node:fs";
import { request as httpRequest } from "node:http";
import { join, resolve } from "node:path";
import { describe, expect, it } from "vitest";
import { chromium, type Page } from "playwright-core";
import { requestCheckpoint } from "../../runtime/nats/control.ts";
import type { NatsConnection } from "../../runtime/nats/connection.ts";
import { ensureStream, publishAll } from "../../runtime/nats/streams.ts";
import { findChromium } from "../../scripts/ensure-chromium.ts";
import { connect, natsServer } from "../support/nats-server.ts";
import { startEddy, type EddyProcess } from "../support/processes.ts";
import { waitFor } from "../support/wait.ts";

const ROOT = resolve(import.meta.dirname, "../..");
const SHOTS = process.env.EDDY_CONSOLE_SCREENSHOTS;

/** The fixture's worker as a process of its own (so that it can be SIGKILLed). */
function startConsoleWorker(url: string): EddyProcess {
  const child = spawn(process.execPath, [join(ROOT, "test/fixtures/console-worker.ts"), url], { cwd: ROOT, stdio: ["ignore", "pipe", "pipe"] });
  let out = "";
  child.stdout!.on("data", (d) => (out += d));
  child.stderr!.on("data", (d) => (out += d));
  const exited = new Promise<void>((r) => child.once("exit", () => r()));
  const kill = async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
    await exited;
  };
  return { child, output: () => out, kill, stop: kill, [Symbol.asyncDispose]: kill };
}

/**
 * Saves a screenshot when asked to. Meanwhile it publishes clicks of other users (the
 * assertions count u0–u2 only), so that the pictures show records flowing.
 */
async function shot(page: Page, name: string, nc?: NatsConnection): Promise<void> {
  if (SHOTS === undefined) return;
  mkdirSync(SHOTS, { recursive: true });
  let flowing = nc !== undefined;
  const traffic = (async () => {
    while (flowing) {
      await publishAll(nc!, Array.from({ length: 40 }, (_, j) => ({ subject: "console.in", data: JSON.stringify({ user: `v${j % 7}` }) })));
      await new Promise((r) => setTimeout(r, 300));
    }
  })();
  await page.waitForTimeout(nc === undefined ? 1_200 : 4_000); // two updates at least, so that rates and charts have samples
  await page.screenshot({ path: join(SHOTS, `${name}.png`), fullPage: true });
  flowing = false;
  await traffic;
}

/** What the page showed when a step failed: its URL, its errors and the rendered view (shortened). */
async function pageDiagnosis(page: Page | undefined, errors: readonly string[]): Promise<string> {
  if (page === undefined) return "--- page: not opened";
  const html = await page.locator("#view").innerHTML({ timeout: 2_000 }).catch((e: unknown) => `(unreadable: ${String(e)})`);
  return `--- page ${page.url()}\nerrors: ${JSON.stringify(errors)}\n${html.slice(0, 4_000)}`;
}

describe("eddy ui in headless Chromium", () => {
  it("shows the graph with a backpressured function, checkpoints, state, and a killed worker as a restart", async () => {
    const executablePath = findChromium();
    expect(executablePath, "chromium is missing: npm test installs it (scripts/ensure-chromium.ts)").toBeDefined();
    await using server = await natsServer();
    const nc = await connect(server);
    await ensureStream(nc, "CONSOLE_IN", ["console.in"]);
    await ensureStream(nc, "CONSOLE_OUT", ["console.out", "console.audit"]);
    await using supervisor = startEddy(["supervisor", "--nats", server.url, "--checkpoint-interval", "0"]);
    let worker = startConsoleWorker(server.url);
    await using ui = startEddy(["ui", "--nats", server.url, "--port", "0", "--admin"]);
    const logs = () => `--- supervisor\n${supervisor.output()}\n--- worker\n${worker.output()}\n--- ui\n${ui.output()}`;
    const browser = await chromium.launch({ executablePath: executablePath! });
    let opened: Page | undefined;
    const errors: string[] = [];
    try {
      const base = await waitFor("the console's URL", () => /^http:\/\/127\.0\.0\.1:\d+$/m.exec(ui.output())?.[0], { timeoutMs: 60_000, logs });
      await publishAll(nc, Array.from({ length: 30 }, (_, i) => ({ subject: "console.in", data: JSON.stringify({ user: `u${i % 3}` }) })));

      const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
      opened = page;
      page.on("pageerror", (e) => errors.push(e.message));

      // Jobs: the job runs.
      await page.goto(`${base}/#/`);
      await page.locator('tr[data-job="console"] .badge.RUNNING').waitFor({ timeout: 60_000 });

      // The graph: every function, the edges between them, audit backpressured and named as the cause.
      await page.goto(`${base}/#/job/console`);
      for (const fn of ["clicks", "count", "out", "audit"]) await page.locator(`g.node[data-fn="${fn}"]`).waitFor({ timeout: 30_000 });
      expect(await page.locator('g.edge[data-from="clicks"][data-to="count"]').count()).toBe(1);
      expect(await page.locator('g.edge[data-from="count"][data-to="out"]').count()).toBe(1);
      expect(await page.locator('g.node[data-stream="CONSOLE_IN"]').count()).toBe(1);
      await page.locator('g.node[data-fn="audit"][data-pressure="backpressured"]').waitFor({ timeout: 30_000 });
      await expect.poll(() => page.locator("[data-causes]").textContent(), { timeout: 10_000 }).toContain("audit");
      // And what audit waits for, from its read loop: the commit of its held sink output.
      await expect.poll(() => page.locator('[data-waiting-for="audit"]').textContent(), { timeout: 10_000 }).toBe("(waiting for a commit of held sink output)");
      // Nothing else waits on downstream: count and out read on without holding output back.
      for (const fn of ["clicks", "count", "out"]) expect(await page.locator(`g.node[data-fn="${fn}"]`).getAttribute("data-pressure")).not.toBe("backpressured");
      await shot(page, "job-graph", nc);

      // A checkpoint the test asks for appears in the history, committed.
      const checkpoint = await requestCheckpoint(nc, "console");
      expect(checkpoint.status).toBe("committed");
      await page.goto(`${base}/#/job/console/checkpoints`);
      await page.locator(`tr[data-checkpoint="${checkpoint.id}"][data-status="committed"]`).waitFor({ timeout: 30_000 });
      // With each actor's part: every actor of the job, its synchronous part and its upload timed.
      await page.locator(`table[data-checkpoint-actors="${checkpoint.id}"]`).waitFor({ timeout: 30_000 });
      expect((await page.locator("#checkpoint-actors tr[data-actor]").evaluateAll((rows) => rows.map((r) => r.getAttribute("data-actor")))).sort()).toEqual(["audit/0", "clicks/0", "count/0", "count/1", "out/0"]);
      expect(await page.locator('#checkpoint-actors tr[data-actor="count/1"] td').nth(2).textContent()).toMatch(/^\d+(\.\d+)? (ms|s)$/);
      await shot(page, "checkpoints");

      // The state browser: each user was counted 10 times.
      await page.goto(`${base}/#/job/console/state`);
      // The page has loaded once its header is there (the form above it no longer moves).
      await page.locator("#head [data-state]").waitFor({ timeout: 30_000 });
      await page.locator("#state-form").waitFor();
      await page.fill('input[name="fn"]', "count");
      await page.fill('input[name="state"]', "n");
      await page.fill('input[name="key"]', "u1");
      // Each read must reach the server: the answer is awaited, not only the text (the same before and after).
      const stateAnswer = () => page.waitForResponse((r) => new URL(r.url()).pathname === "/api/jobs/console/state" && r.request().method() === "GET", { timeout: 30_000 });
      // Enter in the key field submits as Get (the form's first button); the Get button is clicked below.
      let answer = stateAnswer();
      await page.press('input[name="key"]', "Enter");
      expect(((await (await answer).json()) as { value: unknown }).value).toBe(10);
      const stateValue = async () => {
        const text = (await page.locator("#state-result").textContent()) ?? "";
        try {
          return (JSON.parse(text) as { value?: unknown } | null)?.value;
        } catch {
          return `(not JSON yet: ${JSON.stringify(text)})`;
        }
      };
      await expect.poll(stateValue, { timeout: 30_000 }).toBe(10);
      // Admin writes are confirmed first; a dismissed confirmation writes nothing.
      const confirmation = new Promise<string>((shown) =>
        page.once("dialog", (d) => {
          shown(d.message());
          void d.dismiss();
        }),
      );
      await page.fill('textarea[name="value"]', "99");
      await page.click('button[value="put"]');
      expect(await confirmation).toContain('put count.n["u1"] = 99');
      answer = stateAnswer();
      await page.click('button[value="get"]');
      expect(((await (await answer).json()) as { value: unknown }).value).toBe(10);
      await expect.poll(stateValue, { timeout: 30_000 }).toBe(10);
      await shot(page, "state");

      // A function's partitions and charts.
      await page.goto(`${base}/#/job/console/fn/count`);
      await page.locator('tr[data-partition="1"]').waitFor({ timeout: 30_000 });
      expect(await page.locator(".chart .uplot").count()).toBe(3);
      // Each partition says what its read loop awaits now.
      await expect.poll(() => page.locator('tr[data-partition="1"] [data-step]').textContent(), { timeout: 10_000 }).toMatch(/^waiting for |^reading |^uploading /);
      await shot(page, "function", nc);

      // Workers: the one worker with its five actors.
      await page.goto(`${base}/#/workers`);
      await expect.poll(() => page.locator("tr[data-worker]").textContent(), { timeout: 30_000 }).toContain("count/1");
      await shot(page, "workers");

      // A SIGKILLed worker: the supervisor recovers the job on a new one, and the console shows the restart.
      await worker.kill();
      worker = startConsoleWorker(server.url);
      await page.goto(`${base}/#/`);
      await page.locator('tr[data-job="console"] td[data-restarts="1"]').waitFor({ timeout: 90_000 });
      await page.locator('tr[data-job="console"] .badge.RUNNING').waitFor({ timeout: 60_000 });
      await shot(page, "jobs");
      // The job page says the same: a restart (generation 2), none counted as a failure by the restart strategy.
      await page.goto(`${base}/#/job/console`);
      await page.locator('[data-restarts="1"]').waitFor({ timeout: 30_000 });
      expect(await page.locator("[data-generation]").textContent()).toBe("2");

      // On a phone-sized screen the graph still shows every function.
      const phone = await browser.newPage({ viewport: { width: 390, height: 844 } });
      await phone.goto(`${base}/#/job/console`);
      for (const fn of ["clicks", "count", "out", "audit"]) await phone.locator(`g.node[data-fn="${fn}"]`).waitFor({ timeout: 30_000 });
      await shot(phone, "phone");
      expect(errors).toEqual([]);
    } catch (e) {
      throw new Error(`${e instanceof Error ? e.message : String(e)}\n${await pageDiagnosis(opened, errors)}\n${logs()}`);
    } finally {
      await browser.close();
      await worker.kill();
      await nc.close();
    }
  }, 300_000);

  it("answers hostile API requests with 400 and a reason, unknown jobs with 404, and refuses writes when read-only", async () => {
    await using server = await natsServer();
    await using ui = startEddy(["ui", "--nats", server.url, "--port", "0"]);
    const base = await waitFor("the console's URL", () => /^http:\/\/127\.0\.0\.1:\d+$/m.exec(ui.output())?.[0], { timeoutMs: 60_000, logs: ui.output });
    const get = async (path: string, init?: RequestInit) => {
      const r = await fetch(base + path, init);
      return { status: r.status, body: (await r.json()) as { error?: string } };
    };
    expect(await get("/api/jobs/a.b")).toEqual({ status: 400, body: { error: expect.stringContaining("not a name") } });
    expect(await get("/api/jobs/%E0%A4%A")).toMatchObject({ status: 400 });
    expect(await get("/api/jobs/nope")).toMatchObject({ status: 404, body: { error: expect.stringContaining("not known") } });
    expect(await get("/api/jobs/nope/state?fn=x.y&state=n&key=k")).toEqual({ status: 400, body: { error: expect.stringContaining("function") } });
    expect(await get("/api/jobs/nope/state?fn=x&state=n")).toEqual({ status: 400, body: { error: "key: missing" } });
    expect(await get("/api/events?view=nonsense")).toMatchObject({ status: 400 });
    expect(await get("/api/jobs/nope/state", { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ op: "delete", fn: "f", state: "s", key: "k", confirm: true }) })).toEqual({ status: 403, body: { error: expect.stringContaining("read-only") } });
    expect(await get("/no/such/page")).toMatchObject({ status: 404 });
    // On 127.0.0.1 it answers only to loopback names (no DNS rebinding from another site).
    const port = new URL(base).port;
    const rebound = await new Promise<number>((done, fail) => {
      const req = httpRequest({ host: "127.0.0.1", port, path: "/api/jobs", headers: { host: `attacker.example:${port}` } }, (res) => {
        res.resume();
        done(res.statusCode ?? 0);
      });
      req.on("error", fail);
      req.end();
    });
    expect(rebound).toBe(403);
    // Still serving after all that.
    expect((await fetch(base + "/")).status).toBe(200);
    expect(await get("/api/jobs")).toEqual({ status: 200, body: { at: expect.any(Number), jobs: [] } });
  });

  it("refuses bad arguments with one line and exit code 2, before connecting", () => {
    for (const args of [["--port", "70000"], ["--port", "x"], ["--host", "a b"], ["--bogus"]]) {
      const r = spawnSync(process.execPath, [join(ROOT, "runtime/cli/main.mjs"), "ui", ...args, "--nats", "nats://127.0.0.1:1"], { cwd: ROOT, encoding: "utf8", timeout: 30_000 });
      expect(r.status, args.join(" ")).toBe(2);
      expect(r.stderr.trim().split("\n"), args.join(" ")).toHaveLength(1);
      expect(r.stderr).toMatch(/^eddy: /);
    }
  });
});
