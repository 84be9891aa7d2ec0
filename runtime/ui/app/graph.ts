/**
 * The job graph as SVG: laid out by dagre (left to right, as data flows), a node per function
 * coloured by its backpressure, a dashed node per user stream a source reads; a function node
 * links to its page. Drawn from the pure graph model (runtime/core/console-view.ts).
 */
import dagre from "@dagrejs/dagre";
import type { FunctionSummary, JobGraphModel } from "../../core/console-view.ts";
import { esc, rate } from "./format.ts";

const W = 190;
const H = 62;

export function graphSvg(job: string, graph: JobGraphModel, functions: readonly FunctionSummary[], causes: readonly string[]): string {
  const g = new dagre.graphlib.Graph();
  // A phone is taller than wide: the graph flows downwards there.
  g.setGraph({ rankdir: window.innerWidth < 700 ? "TB" : "LR", nodesep: 24, ranksep: 56, marginx: 8, marginy: 8 });
  g.setDefaultEdgeLabel(() => ({}));
  // A chain (functions fused in one actor, design note ch) is one node, as wide as its label.
  for (const n of graph.nodes) g.setNode(n.id, { width: n.kind === "stream" ? 150 : n.chain === undefined ? W : Math.max(W, 24 + n.label.length * 7.5), height: n.kind === "stream" ? 40 : H });
  for (const e of graph.edges) g.setEdge(e.from, e.to);
  dagre.layout(g);
  const by = new Map(functions.map((f) => [f.function, f]));
  const size = g.graph() as { width?: number; height?: number };
  const width = Math.ceil(size.width ?? 400);
  const height = Math.ceil(size.height ?? 100);
  const parts: string[] = [];
  parts.push(`<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse"><path d="M 0 0 L 10 5 L 0 10 z" fill="#555"/></marker></defs>`);
  for (const e of graph.edges) {
    const pts = (g.edge(e.from, e.to) as { points?: Array<{ x: number; y: number }> } | undefined)?.points ?? [];
    if (pts.length === 0) continue;
    const d = pts.map((p, i) => `${i === 0 ? "M" : "L"}${p.x.toFixed(1)},${p.y.toFixed(1)}`).join(" ");
    parts.push(`<g class="edge${e.broadcast ? " broadcast" : ""}" data-from="${esc(e.from)}" data-to="${esc(e.to)}"><path d="${d}" marker-end="url(#arrow)"/>${e.output ? `<title>side output ${esc(e.output)}</title>` : ""}</g>`);
  }
  for (const n of graph.nodes) {
    const p = g.node(n.id) as { x: number; y: number; width: number; height: number };
    const x = p.x - p.width / 2;
    const y = p.y - p.height / 2;
    if (n.kind === "stream") {
      parts.push(`<g class="node stream" data-stream="${esc(n.label)}"><rect x="${x}" y="${y}" width="${p.width}" height="${p.height}"/><text x="${p.x}" y="${p.y + 4}" text-anchor="middle">${esc(n.label)}</text></g>`);
      continue;
    }
    const f = by.get(n.id);
    const pressure = f?.pressure ?? "unknown";
    const cause = causes.includes(n.id);
    const lines = [
      `${n.label}`,
      `×${n.partitions ?? "?"}${f?.stateBytes ? ` · ${bytes(f.stateBytes)} state` : ""}${f?.maxLag ? ` · lag ${f.maxLag}` : ""}`,
      f === undefined || f.livePartitions === 0 ? "no live figures" : `in ${rate(f.recordsInPerSecond)}/s · out ${rate(f.recordsOutPerSecond)}/s`,
    ];
    const title = f?.busyMsPerSecond == null ? "" : `busy ${f.busyMsPerSecond} ms/s, backpressured ${f.backpressuredMsPerSecond} ms/s, idle ${f.idleMsPerSecond} ms/s`;
    parts.push(
      `<a href="#/job/${encodeURIComponent(job)}/fn/${encodeURIComponent(n.id)}"><g class="node fn ${pressure}${cause ? " cause" : ""}${n.chain === undefined ? "" : " chain"}" data-fn="${esc(n.id)}" data-pressure="${pressure}"><title>${esc(n.chain === undefined ? title : `chained: ${n.label}${title === "" ? "" : `; ${title}`}`)}</title><rect x="${x}" y="${y}" width="${p.width}" height="${p.height}"/>` +
        lines.map((l, i) => `<text x="${x + 10}" y="${y + 18 + i * 16}"${i === 0 ? ' font-weight="700"' : ""}>${esc(l)}</text>`).join("") +
        `</g></a>`,
    );
  }
  return `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 ${width} ${height}" width="${width}" height="${height}" role="img" aria-label="job graph">${parts.join("")}</svg>`;
}

function bytes(n: number): string {
  return n < 1024 ? `${n} B` : n < 1024 * 1024 ? `${(n / 1024).toFixed(0)} KiB` : `${(n / 1024 / 1024).toFixed(1)} MiB`;
}
