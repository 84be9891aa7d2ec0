/**
 * The console's pages in the browser: a hash router (`#/`, `#/job/<job>`, its `/fn/<fn>`,
 * `/checkpoints`, `/dlq`, `/state`, and `#/workers`), one server-sent event stream per page for
 * the figures that change, and plain DOM rendering. No framework: the pages are tables, an SVG
 * graph and a few charts, and the bundle stays small enough for a phone.
 */
import type { JobPayload, JobsPayload, WorkerRow } from "../server.ts";
import { restartsOf, type CheckpointRow, type FunctionSummary, type PartitionRow } from "../../core/console-view.ts";
import { graphSvg } from "./graph.ts";
import { drawCharts, dropCharts, record } from "./charts.ts";
import { ago, bytes, dash, esc, ms, num, rate, time } from "./format.ts";

type Route =
  | { page: "jobs" }
  | { page: "workers" }
  | { page: "job"; job: string; tab: "graph" | "checkpoints" | "dlq" | "state" }
  | { page: "fn"; job: string; fn: string };

function routeOf(hash: string): Route {
  const parts = hash.replace(/^#\/?/, "").split("/").filter((p) => p !== "").map((p) => {
    try {
      return decodeURIComponent(p);
    } catch {
      return p;
    }
  });
  if (parts[0] === "workers") return { page: "workers" };
  if (parts[0] === "job" && parts[1] !== undefined) {
    if (parts[2] === "fn" && parts[3] !== undefined) return { page: "fn", job: parts[1], fn: parts[3] };
    const tab = parts[2] === "checkpoints" || parts[2] === "dlq" || parts[2] === "state" ? parts[2] : "graph";
    return { page: "job", job: parts[1], tab };
  }
  return { page: "jobs" };
}

const view = document.getElementById("view")!;
const conn = document.getElementById("conn")!;
let source: EventSource | undefined;
let route: Route = { page: "jobs" };
let admin = false;
let lastJob: JobPayload | undefined;

const jobHref = (job: string, rest = "") => `#/job/${encodeURIComponent(job)}${rest}`;

function listen(url: string, onData: (data: unknown) => void): void {
  source?.close();
  conn.textContent = "connecting…";
  conn.className = "conn";
  const s = new EventSource(url);
  source = s;
  s.onmessage = (e) => {
    conn.textContent = "live";
    conn.className = "conn live";
    onData(JSON.parse(e.data as string));
  };
  s.addEventListener("problem", (e) => {
    const p = JSON.parse((e as MessageEvent).data as string) as { status: number; error: string };
    conn.textContent = "problem";
    conn.className = "conn down";
    const slot = document.getElementById("problem");
    if (slot !== null) slot.innerHTML = `<div class="warn" data-problem="${p.status}">${esc(p.error)}</div>`;
  });
  s.onerror = () => {
    conn.textContent = "reconnecting…";
    conn.className = "conn down";
  };
}

function setNav(name: string): void {
  for (const a of document.querySelectorAll<HTMLAnchorElement>("[data-nav]")) a.classList.toggle("active", a.dataset.nav === name);
}

// ---------------------------------------------------------------------------------------------
// Jobs.
// ---------------------------------------------------------------------------------------------

function showJobs(): void {
  setNav("jobs");
  view.innerHTML = `<h1>Jobs</h1><div id="problem"></div><div class="scroll" id="jobs"><p class="note">Loading…</p></div>`;
  listen("/api/events?view=jobs", (d) => {
    const p = d as JobsPayload;
    const slot = document.getElementById("jobs");
    if (slot === null) return;
    document.getElementById("problem")!.innerHTML = "";
    if (p.jobs.length === 0) {
      slot.innerHTML = `<p class="note">No jobs. Deploy one with <code>eddy deploy</code>.</p>`;
      return;
    }
    slot.innerHTML = `<table><thead><tr><th>job</th><th>state</th><th class="num">version</th><th class="num">generation</th><th class="num">restarts</th><th class="num">throughput</th><th class="num">max lag</th><th>last checkpoint</th><th class="num">functions</th></tr></thead><tbody>${p.jobs
      .map(
        (j) =>
          `<tr data-job="${esc(j.job)}"><td><a href="${jobHref(j.job)}">${esc(j.job)}</a></td><td><span class="badge ${esc(j.state)}">${esc(j.state)}</span></td><td class="num">${j.version ?? dash}</td><td class="num">${j.generation}</td><td class="num" data-restarts="${j.restarts}" title="restarts from a checkpoint; ${j.failureRestarts} after failures">${j.restarts}${j.failureRestarts > 0 ? ` <span class="note">(${j.failureRestarts} failed)</span>` : ""}</td><td class="num">${j.throughput === null ? dash : `${rate(j.throughput)}/s`}</td><td class="num">${num(j.maxLag)}</td><td>${j.lastCheckpointId === null ? dash : `${j.lastCheckpointId} (${ms(j.lastCheckpointAgeMs)} ago)`}</td><td class="num">${j.functions}</td></tr>`,
      )
      .join("")}</tbody></table>`;
  });
}

// ---------------------------------------------------------------------------------------------
// A job.
// ---------------------------------------------------------------------------------------------

function header(p: JobPayload): string {
  const s = p.status;
  const c = s.lastCheckpoint;
  const ex = s.failure ?? s.lastException;
  const where = (r: NonNullable<typeof ex>) => esc([r.function === undefined ? "" : `${r.function}${r.partition === undefined ? "" : `/${r.partition}`}`, r.worker === undefined ? "" : `on ${r.worker}`].filter((x) => x !== "").join(" "));
  const exLine = ex === null ? "" : `<div class="warn" data-exception>${s.failure !== null ? "failed" : "last exception"}: ${where(ex)} ${esc(time(ex.at))} (${ago(ex.at, p.at)}): ${esc(ex.reason)}</div>`;
  // The restart history the supervisor keeps (its failure-rate window), newest first.
  const history = s.recentRestarts.length === 0 ? "" : `<details data-restart-history><summary>${s.recentRestarts.length} failure${s.recentRestarts.length === 1 ? "" : "s"} within the restart window</summary><ul>${[...s.recentRestarts].reverse().map((r) => `<li>${esc(time(r.at))} (${ago(r.at, p.at)}) ${where(r)}: ${esc(r.reason)}</li>`).join("")}</ul></details>`;
  return `<div class="card"><div class="facts">
    <div><b>state</b><span class="badge ${esc(s.state)}" data-state>${esc(s.state)}</span></div>
    <div><b>version</b>${s.deployedVersion ?? (s.mode === "pipeline" ? "pipeline" : dash)}</div>
    <div><b>generation</b><span data-generation>${s.generation}</span></div>
    <div><b>restarts</b><span data-restarts="${restartsOf(s)}">${restartsOf(s)}</span> <span class="note">(${s.restarts} after failures)</span></div>
    <div><b>workers</b>${p.workers}</div>
    <div><b>last checkpoint</b>${c === null ? "none yet" : `${c.id} · ${ago(c.committedAt, p.at)} · took ${ms(c.durationMs)}`}</div>
    ${s.nextRestartAt !== null && s.state === "RESTARTING" ? `<div><b>next restart</b>${ms(Math.max(0, s.nextRestartAt - p.at))}</div>` : ""}
  </div>${exLine}${history}${s.rules.map((r) => `<div class="note">rules of ${esc(r.function)}: ${r.active === null ? "unknown" : r.active.length === 0 ? "none active" : esc(r.active.join(", "))}</div>`).join("")}${s.parameters.map((q) => `<div class="note" data-parameters="${esc(q.function)}">parameters of ${esc(q.function)}: ${q.active === null ? "unknown" : Object.keys(q.active).length === 0 ? "none set" : esc(Object.entries(q.active).map(([k, v]) => `${k}=${JSON.stringify(v)}`).join(", "))}</div>`).join("")}${s.damaged.map((d) => `<div class="warn">damaged record (shown as absent): ${esc(d)}</div>`).join("")}</div>`;
}

function tabs(job: string, active: string): string {
  const t = (name: string, label: string, rest: string) => `<a class="${active === name ? "active" : ""}" href="${jobHref(job, rest)}" data-tab="${name}">${label}</a>`;
  return `<div class="tabs">${t("graph", "Graph", "")}${t("checkpoints", "Checkpoints", "/checkpoints")}${t("dlq", "Dead letters", "/dlq")}${t("state", "State", "/state")}</div>`;
}

function activity(r: { busyMsPerSecond: number | null; backpressuredMsPerSecond: number | null; idleMsPerSecond: number | null }): string {
  if (r.busyMsPerSecond === null) return dash;
  const pct = (x: number | null) => `${Math.min(100, (x ?? 0) / 10)}%`;
  return `<span class="bar" title="busy / backpressured / idle ms per second"><span class="b" style="width:${pct(r.busyMsPerSecond)}"></span><span class="p" style="width:${pct(r.backpressuredMsPerSecond)}"></span><span class="i" style="width:${pct(r.idleMsPerSecond)}"></span></span>${r.busyMsPerSecond} / ${r.backpressuredMsPerSecond} / ${r.idleMsPerSecond}`;
}

const pressureBadge = (p: string | null) => (p === null ? dash : `<span class="pressure ${esc(p)}">${esc(p)}</span>`);

function functionTable(job: string, fs: readonly FunctionSummary[]): string {
  return `<div class="scroll"><table><thead><tr><th>function</th><th class="num">partitions</th><th class="num">in/s</th><th class="num">out/s</th><th class="num">max lag</th><th class="num">watermark lag</th><th>busy / backpressured / idle ms/s</th><th>pressure</th><th class="num">state in memory</th></tr></thead><tbody>${fs
    .map(
      (f) =>
        `<tr data-fn-row="${esc(f.function)}"><td><a href="${jobHref(job, `/fn/${encodeURIComponent(f.function)}`)}">${esc(f.function)}</a></td><td class="num">${f.livePartitions}/${f.partitions}</td><td class="num">${rate(f.recordsInPerSecond)}</td><td class="num">${rate(f.recordsOutPerSecond)}</td><td class="num">${num(f.maxLag)}</td><td class="num">${ms(f.maxWatermarkLagMs)}</td><td>${activity(f)}</td><td>${pressureBadge(f.pressure)}</td><td class="num">${bytes(f.stateBytes)}</td></tr>`,
    )
    .join("")}</tbody></table></div>`;
}

/** The checkpoint whose per-actor breakdown is shown (clicked), else the newest one that has one. */
let selectedCheckpoint: number | undefined;

function checkpointTable(rows: readonly CheckpointRow[]): string {
  if (rows.length === 0) return `<p class="note">No checkpoints recorded yet.</p>`;
  const selected = rows.find((r) => r.id === selectedCheckpoint && r.perActor.length > 0) ?? rows.find((r) => r.perActor.length > 0);
  const breakdown =
    selected === undefined
      ? `<p class="note">No checkpoint has per-actor figures yet (actors of older versions do not report them).</p>`
      : `<h2>Checkpoint ${selected.id} per actor</h2><p class="note">sync: from the aligned barrier until the actor forwarded it (it handled nothing else); upload and ack wait: in the background while records flow. Slowest first; click an id above for another checkpoint.</p><div class="scroll"><table id="checkpoint-actors" data-checkpoint-actors="${selected.id}"><thead><tr><th>actor</th><th class="num">alignment</th><th class="num">sync</th><th class="num">upload</th><th class="num">ack wait</th><th class="num">size</th><th class="num">keys changed</th></tr></thead><tbody>${selected.perActor
          .map((a) => `<tr data-actor="${esc(a.actor)}"><td>${esc(a.actor)}</td><td class="num">${ms(a.alignmentMs)}</td><td class="num">${ms(a.syncMs)}</td><td class="num">${ms(a.uploadMs)}</td><td class="num">${ms(a.ackWaitMs)}</td><td class="num">${bytes(a.bytes)}</td><td class="num">${num(a.keysChanged)}</td></tr>`)
          .join("")}</tbody></table></div>`;
  return `<div class="scroll"><table id="checkpoints"><thead><tr><th class="num">id</th><th>status</th><th>kind</th><th class="num">gen</th><th>started (UTC)</th><th class="num">duration</th><th class="num">alignment</th><th class="num">sync (max)</th><th class="num">async (max)</th><th class="num">size</th><th class="num">keys changed</th><th class="num">actors</th><th>reason</th></tr></thead><tbody>${rows
    .map(
      (r) =>
        `<tr data-checkpoint="${r.id}" data-status="${esc(r.status)}"><td class="num">${r.perActor.length > 0 ? `<a href="" data-select-checkpoint="${r.id}">${r.id}</a>` : r.id}</td><td><span class="badge ${esc(r.status)}">${esc(r.status)}</span></td><td>${esc(r.kind)}</td><td class="num">${r.generation}</td><td>${time(r.startedAt)}</td><td class="num">${ms(r.durationMs)}</td><td class="num">${ms(r.alignmentMs)}</td><td class="num" title="after alignment: ${ms(r.afterAlignmentMs)}">${ms(r.syncMs)}</td><td class="num">${ms(r.asyncMs)}</td><td class="num">${bytes(r.bytes)}</td><td class="num">${num(r.keysChanged)}</td><td class="num">${num(r.actors)}</td><td class="wrap">${esc(r.reason ?? "")}</td></tr>`,
    )
    .join("")}</tbody></table></div>${breakdown}`;
}

function showJob(r: Extract<Route, { page: "job" }>): void {
  setNav("");
  view.innerHTML = `<h1>${esc(r.job)}</h1><div id="problem"></div><div id="head"></div>${tabs(r.job, r.tab)}<div id="body"></div><div id="extra"></div>`;
  const body = document.getElementById("body")!;
  body.addEventListener("click", (e) => {
    const id = (e.target as HTMLElement).closest<HTMLElement>("[data-select-checkpoint]")?.dataset.selectCheckpoint;
    if (id === undefined) return;
    e.preventDefault();
    selectedCheckpoint = Number(id);
    if (lastJob !== undefined && lastJob.status.job === r.job) body.innerHTML = checkpointTable(lastJob.checkpoints);
  });
  if (r.tab === "dlq") void showDeadLetters(r.job, body);
  if (r.tab === "state") showState(r.job, body);
  listen(`/api/events?view=job&job=${encodeURIComponent(r.job)}`, (d) => {
    const p = d as JobPayload;
    lastJob = p;
    record(r.job, p.at, p.functions);
    document.getElementById("problem")!.innerHTML = "";
    document.getElementById("head")!.innerHTML = header(p);
    if (r.tab === "graph") {
      // A cause that is itself backpressured waits on something outside the graph: its read loop says what.
      const why = (fn: string) => {
        const s = p.functions.find((f) => f.function === fn);
        return s?.pressure === "backpressured" && s.waitingFor.length > 0 ? ` <span data-waiting-for="${esc(fn)}">(${s.waitingFor.map(esc).join("; ")})</span>` : "";
      };
      const causes = p.causes.length === 0 ? "" : `<p class="note" data-causes>Backpressure comes from: ${p.causes.map((c) => `<b>${esc(c)}</b>${why(c)}`).join(", ")} (outlined).</p>`;
      body.innerHTML = `<div class="card graph" id="graph">${p.graph.edgesUnknown ? `<p class="note">This job's spec predates recorded inputs: edges between functions are not shown.</p>` : ""}${graphSvg(r.job, p.graph, p.functions, p.causes)}<div class="legend">${["idle", "ok", "busy", "backpressured"].map((x) => `<span class="pressure ${x}">${x}</span>`).join("")}<span class="note">colour: the function's most pressed partition (busy or backpressured &gt; 500 ms/s)</span></div>${causes}</div>${functionTable(r.job, p.functions)}`;
    } else if (r.tab === "checkpoints") {
      body.innerHTML = checkpointTable(p.checkpoints);
    }
  });
}

// ---------------------------------------------------------------------------------------------
// A function.
// ---------------------------------------------------------------------------------------------

function partitionTable(rows: readonly PartitionRow[], now: number): string {
  return `<div class="scroll"><table><thead><tr><th class="num">partition</th><th>owner</th><th class="num">lag (committed)</th><th class="num">lag (live)</th><th>watermark (UTC)</th><th class="num">watermark lag</th><th class="num">in/s</th><th class="num">out/s</th><th>busy / backpressured / idle ms/s</th><th>pressure</th><th>now</th><th class="num">cache hit rate</th><th class="num">state in memory</th><th class="num">held output</th></tr></thead><tbody>${rows
    .map(
      (p) =>
        `<tr data-partition="${p.partition}" data-pressure="${p.pressure ?? ""}"><td class="num">${p.partition}</td><td>${esc(p.owner ?? dash)}</td><td class="num">${num(p.lag)}</td><td class="num">${num(p.liveLag)}</td><td>${p.watermark === "end" ? "end of input" : time(p.watermark)}</td><td class="num">${ms(p.watermarkLagMs)}</td><td class="num">${rate(p.recordsInPerSecond)}</td><td class="num">${rate(p.recordsOutPerSecond)}</td><td>${activity(p)}</td><td>${pressureBadge(p.pressure)}</td><td data-step>${esc(p.step ?? dash)}</td><td class="num">${p.cacheHitRate === null ? dash : `${Math.round(p.cacheHitRate * 100)} %`}</td><td class="num">${bytes(p.stateBytes)}</td><td class="num">${bytes(p.heldBytes)}</td></tr>`,
    )
    .join("")}</tbody></table></div><p class="note">Updated ${time(now)} UTC.</p>`;
}

function showFunction(r: Extract<Route, { page: "fn" }>): void {
  setNav("");
  view.innerHTML = `<h1><a href="${jobHref(r.job)}">${esc(r.job)}</a> / ${esc(r.fn)}</h1><div id="problem"></div><div id="summary"></div><h2>Partitions</h2><div id="partitions"></div><h2>Last minutes</h2><div class="charts"><div class="chart" data-chart="throughput"><h3>Throughput (records/s)</h3></div><div class="chart" data-chart="lag"><h3>Lag (records, worst partition)</h3></div><div class="chart" data-chart="wm"><h3>Watermark lag (s, worst partition)</h3></div></div>`;
  listen(`/api/events?view=job&job=${encodeURIComponent(r.job)}`, (d) => {
    const p = d as JobPayload;
    record(r.job, p.at, p.functions);
    document.getElementById("problem")!.innerHTML = p.functions.some((f) => f.function === r.fn) ? "" : `<div class="warn">job ${esc(r.job)} has no function ${esc(r.fn)}</div>`;
    document.getElementById("summary")!.innerHTML = functionTable(r.job, p.functions.filter((f) => f.function === r.fn));
    document.getElementById("partitions")!.innerHTML = partitionTable(p.partitions.filter((x) => x.function === r.fn), p.at);
    drawCharts(view, r.job, r.fn);
  });
}

// ---------------------------------------------------------------------------------------------
// Dead letters and state (asked for, not streamed).
// ---------------------------------------------------------------------------------------------

async function getJson(url: string, init?: RequestInit): Promise<{ ok: boolean; status: number; body: Record<string, unknown> }> {
  const r = await fetch(url, init);
  let body: Record<string, unknown>;
  try {
    body = (await r.json()) as Record<string, unknown>;
  } catch {
    body = { error: `HTTP ${r.status}` };
  }
  return { ok: r.ok, status: r.status, body };
}

async function showDeadLetters(job: string, el: HTMLElement): Promise<void> {
  el.innerHTML = `<p class="note">Loading dead letters…</p>`;
  const r = await getJson(`/api/jobs/${encodeURIComponent(job)}/dlq`);
  if (!r.ok) {
    el.innerHTML = `<div class="warn">${esc(r.body.error)}</div>`;
    return;
  }
  const letters = r.body.letters as Array<{ seq: number; function: string | null; time: number; reason: string | null; size: number; origin: string | null; preview: string }>;
  el.innerHTML = `<p class="note">${num(r.body.total as number)} dead letters${letters.length < (r.body.total as number) ? `, the newest ${letters.length} shown` : ""}. <a href="" id="reload-dlq">Reload</a> · <code>eddy dlq replay ${esc(job)}</code> republishes those from a source stream.</p>${
    letters.length === 0
      ? ""
      : `<div class="scroll"><table id="dlq"><thead><tr><th class="num">seq</th><th>function</th><th>time (UTC)</th><th>reason</th><th>origin</th><th class="num">size</th><th>payload</th></tr></thead><tbody>${letters
          .map((d) => `<tr data-seq="${d.seq}"><td class="num">${d.seq}</td><td>${esc(d.function ?? dash)}</td><td>${time(d.time)}</td><td class="wrap">${esc(d.reason ?? dash)}</td><td>${esc(d.origin ?? dash)}</td><td class="num">${bytes(d.size)}</td><td class="wrap"><code>${esc(d.preview)}</code></td></tr>`)
          .join("")}</tbody></table></div>`
  }`;
  document.getElementById("reload-dlq")?.addEventListener("click", (e) => {
    e.preventDefault();
    void showDeadLetters(job, el);
  });
}

function showState(job: string, el: HTMLElement): void {
  const fns = lastJob?.status.job === job ? lastJob.functions.map((f) => f.function) : [];
  el.innerHTML = `<div class="card"><form class="state" id="state-form">
    <label>function<input name="fn" list="fns" required autocomplete="off" value="${esc(fns[0] ?? "")}"><datalist id="fns">${fns.map((f) => `<option value="${esc(f)}">`).join("")}</datalist></label>
    <label>state<input name="state" autocomplete="off" placeholder="(scan: all)"></label>
    <label>key<input name="key" autocomplete="off" placeholder="(scan: prefix)"></label>
    <label>subkey (map entry)<input name="subkey" autocomplete="off"></label>
    <label><span><input type="checkbox" name="committed"> committed (from KV)</span></label>
    <div><button name="op" value="get" type="submit">Get</button> <button name="op" value="scan" type="submit">Scan</button></div>
  </form></div>
  ${admin ? `<div class="card"><h2>Write (admin)</h2><form class="state" id="write-form"><label>value (JSON)<textarea name="value" rows="2" placeholder='{"n": 1}'></textarea></label><div><button type="submit" name="op" value="put">Put</button> <button class="danger" type="submit" name="op" value="delete">Delete</button></div></form><p class="note">Writes go through the function's input log, in order with the data; function, state, key and subkey come from the form above. Each asks for confirmation.</p></div>` : `<p class="note">Read-only console: start it with <code>eddy ui --admin</code> to put or delete state.</p>`}
  <pre class="result" id="state-result" hidden></pre>`;
  const form = document.getElementById("state-form") as HTMLFormElement;
  const out = document.getElementById("state-result")!;
  const show = (x: unknown) => {
    out.hidden = false;
    out.textContent = JSON.stringify(x, null, 2);
  };
  const field = (name: string) => (form.elements.namedItem(name) as HTMLInputElement).value;
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    const op = ((e as SubmitEvent).submitter as HTMLButtonElement | null)?.value ?? "get";
    const q = new URLSearchParams({ op, fn: field("fn") });
    if (field("state") !== "") q.set("state", field("state"));
    if (op === "get") q.set("key", field("key"));
    else if (field("key") !== "") q.set("prefix", field("key"));
    if (field("subkey") !== "" && op === "get") q.set("subkey", field("subkey"));
    if ((form.elements.namedItem("committed") as HTMLInputElement).checked) q.set("committed", "1");
    out.hidden = false;
    out.textContent = "…";
    void getJson(`/api/jobs/${encodeURIComponent(job)}/state?${q}`).then((r) => show(r.body));
  });
  const write = document.getElementById("write-form") as HTMLFormElement | null;
  write?.addEventListener("submit", (e) => {
    e.preventDefault();
    const op = ((e as SubmitEvent).submitter as HTMLButtonElement | null)?.value ?? "put";
    let value: unknown;
    if (op === "put") {
      try {
        value = JSON.parse((write.elements.namedItem("value") as HTMLTextAreaElement).value);
      } catch {
        show({ error: "value: not JSON" });
        return;
      }
    }
    const what = `${op} ${field("fn")}.${field("state")}[${JSON.stringify(field("key"))}]${field("subkey") === "" ? "" : `[${JSON.stringify(field("subkey"))}]`}${op === "put" ? ` = ${JSON.stringify(value)}` : ""}`;
    if (!window.confirm(`Really ${what} in job ${job}? The running job applies it in order with its input.`)) return;
    const body = { op, fn: field("fn"), state: field("state"), key: field("key"), subkey: field("subkey"), confirm: true, ...(op === "put" ? { value } : {}) };
    void getJson(`/api/jobs/${encodeURIComponent(job)}/state`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) }).then((r) => show(r.body));
  });
}

// ---------------------------------------------------------------------------------------------
// Workers.
// ---------------------------------------------------------------------------------------------

function showWorkers(): void {
  setNav("workers");
  view.innerHTML = `<h1>Workers</h1><div id="problem"></div><div class="scroll" id="workers"><p class="note">Loading…</p></div>`;
  listen("/api/events?view=workers", (d) => {
    const p = d as { at: number; workers: WorkerRow[] };
    const slot = document.getElementById("workers");
    if (slot === null) return;
    document.getElementById("problem")!.innerHTML = "";
    slot.innerHTML =
      p.workers.length === 0
        ? `<p class="note">No live worker heartbeats.</p>`
        : `<table><thead><tr><th>worker</th><th class="num">pid</th><th>up since (UTC)</th><th>job</th><th class="num">running generation</th><th>actors</th></tr></thead><tbody>${p.workers
            .flatMap((w) =>
              w.jobs.map(
                (j, i) =>
                  `<tr data-worker="${esc(w.worker)}">${i === 0 ? `<td rowspan="${w.jobs.length}">${esc(w.worker)}${w.leaving ? ` <span class="badge">leaving</span>` : ""}</td><td class="num" rowspan="${w.jobs.length}">${w.pid}</td><td rowspan="${w.jobs.length}">${time(w.startedAt)}</td>` : ""}<td><a href="${jobHref(j.job)}">${esc(j.job)}</a></td><td class="num">${j.running ?? dash}</td><td class="wrap">${j.actors.map(esc).join(", ") || dash}</td></tr>`,
              ),
            )
            .join("")}</tbody></table><p class="note">A worker writes a heartbeat every second; one that stops is gone from this list within 5 s.</p>`;
  });
}

// ---------------------------------------------------------------------------------------------

function render(): void {
  route = routeOf(location.hash);
  dropCharts();
  if (route.page === "jobs") showJobs();
  else if (route.page === "workers") showWorkers();
  else if (route.page === "job") showJob(route);
  else showFunction(route);
}

window.addEventListener("hashchange", render);
void getJson("/api/config").then((r) => {
  admin = r.body.admin === true;
  render();
});
