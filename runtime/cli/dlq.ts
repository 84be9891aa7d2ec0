/**
 * `eddy dlq ls|show|replay <job>`: a job's dead letters, for the person fixing what sent them there.
 * `replay` publishes dead letters that came from a source stream (they carry `Eddy-Source-Subject`)
 * to that subject again, after the pipeline (or the data it depends on) was fixed; the copies in the
 * dead-letter stream stay. Dead letters raised inside the job (a function downstream of a source,
 * a timer, a sink) have no source message to replay and are reported as skipped.
 */
import { HEADER } from "../core/naming.ts";
import { withNats } from "../nats/connection.ts";
import { getDeadLetter, listDeadLetters, republish, type DeadLetter } from "../nats/dead-letters.ts";

/** A dead letter as `ls --json` prints it. */
export interface DeadLetterSummary {
  readonly seq: number;
  readonly function: string;
  /** Where the input came from: the source subject, or the producing function's partition (`fn/p`). */
  readonly from?: string;
  readonly reason: string;
  readonly time: string;
  readonly bytes: number;
}

export function summarize(d: DeadLetter): DeadLetterSummary {
  const source = d.headers[HEADER.sourceSubject];
  const from = source ?? d.headers[HEADER.producer];
  return {
    seq: d.seq,
    function: d.headers[HEADER.fn] ?? d.subject.split(".").at(-1) ?? "?",
    ...(from === undefined ? {} : { from }),
    reason: d.headers[HEADER.reason] ?? "",
    time: new Date(d.time).toISOString(),
    bytes: d.data.length,
  };
}

/** What to replay: by sequence (`--seq`, repeatable) and/or reason prefix (`--reason`); none given = all. */
export interface ReplaySelection {
  readonly seqs: readonly number[];
  readonly reason: string | undefined;
}

export interface ReplayPlan {
  readonly replay: ReadonlyArray<{ readonly seq: number; readonly subject: string }>;
  readonly skipped: ReadonlyArray<{ readonly seq: number; readonly why: string }>;
  /** `--seq` values that name no dead letter. */
  readonly unknown: readonly number[];
}

/** Decides which dead letters go back to which subject. Pure. */
export function planReplay(letters: readonly DeadLetter[], sel: ReplaySelection): ReplayPlan {
  const wanted = new Set(sel.seqs);
  const chosen = letters.filter(
    (d) => (wanted.size === 0 || wanted.has(d.seq)) && (sel.reason === undefined || (d.headers[HEADER.reason] ?? "").startsWith(sel.reason)),
  );
  const replay: Array<{ seq: number; subject: string }> = [];
  const skipped: Array<{ seq: number; why: string }> = [];
  for (const d of chosen) {
    const subject = d.headers[HEADER.sourceSubject];
    if (subject === undefined || subject === "") skipped.push({ seq: d.seq, why: "not from a source stream (no Eddy-Source-Subject)" });
    else replay.push({ seq: d.seq, subject });
  }
  const present = new Set(letters.map((d) => d.seq));
  return { replay, skipped, unknown: sel.seqs.filter((s) => !present.has(s)) };
}

function table(head: string[], rows: string[][]): void {
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  for (const r of [head, ...rows]) console.log(r.map((c, i) => c.padEnd(widths[i]!)).join("  ").trimEnd());
}

const shorten = (s: string, n: number) => (s.length <= n ? s : `${s.slice(0, n - 1)}…`);

export async function runDlqLs(o: { job: string; natsUrl: string | undefined; json: boolean }): Promise<number> {
  const list = (await withNats(o.natsUrl, (nc) => listDeadLetters(nc, o.job))).map(summarize);
  if (o.json) {
    console.log(JSON.stringify(list));
    return 0;
  }
  if (list.length === 0) {
    console.log(`no dead letters of ${o.job}`);
    return 0;
  }
  table(
    ["seq", "function", "from", "time (UTC)", "size", "reason"],
    list.map((d) => [String(d.seq), d.function, d.from ?? "-", d.time.replace("T", " ").slice(0, 19), `${d.bytes} B`, shorten(d.reason, 100)]),
  );
  return 0;
}

/** The payload as text when it is UTF-8 without control characters, else as base64. */
function payloadText(data: Uint8Array): { encoding: "utf8" | "base64"; payload: string } {
  try {
    const text = new TextDecoder("utf-8", { fatal: true }).decode(data);
    // eslint-disable-next-line no-control-regex
    if (!/[\u0000-\u0008\u000e-\u001f\u007f]/.test(text)) return { encoding: "utf8", payload: text };
  } catch {
    // not UTF-8
  }
  return { encoding: "base64", payload: Buffer.from(data).toString("base64") };
}

export async function runDlqShow(o: { job: string; seq: number; natsUrl: string | undefined; json: boolean }): Promise<number> {
  const d = await withNats(o.natsUrl, (nc) => getDeadLetter(nc, o.job, o.seq));
  const p = payloadText(d.data);
  if (o.json) {
    console.log(JSON.stringify({ ...summarize(d), subject: d.subject, headers: d.headers, ...p }));
    return 0;
  }
  console.log(`dead letter ${d.seq} of ${o.job}, ${d.subject}, ${new Date(d.time).toISOString()}, ${d.data.length} B`);
  for (const [k, v] of Object.entries(d.headers)) console.log(`${k}: ${v}`);
  console.log(p.encoding === "utf8" ? `\n${p.payload}` : `\n(base64) ${p.payload}`);
  return 0;
}

export async function runDlqReplay(o: { job: string; seqs: readonly number[]; reason: string | undefined; natsUrl: string | undefined; json: boolean }): Promise<number> {
  const result = await withNats(o.natsUrl, async (nc) => {
    const letters = await listDeadLetters(nc, o.job);
    const plan = planReplay(letters, { seqs: o.seqs, reason: o.reason });
    const bySeq = new Map(letters.map((d) => [d.seq, d]));
    const replayed: Array<{ seq: number; subject: string; stream: string; newSeq: number }> = [];
    for (const r of plan.replay) {
      const ack = await republish(nc, r.subject, bySeq.get(r.seq)!.data);
      replayed.push({ seq: r.seq, subject: r.subject, stream: ack.stream, newSeq: ack.seq });
    }
    return { replayed, skipped: plan.skipped, unknown: plan.unknown };
  });
  if (o.json) console.log(JSON.stringify({ job: o.job, ...result }));
  else {
    for (const r of result.replayed) console.log(`${r.seq} -> ${r.subject} (${r.stream} #${r.newSeq})`);
    for (const s of result.skipped) console.log(`${s.seq} skipped: ${s.why}`);
    console.log(`${o.job}: replayed ${result.replayed.length}, skipped ${result.skipped.length}${result.unknown.length > 0 ? `, unknown --seq ${result.unknown.join(", ")}` : ""}`);
  }
  return result.unknown.length > 0 ? 1 : 0;
}
