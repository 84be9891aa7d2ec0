/** Formatting helpers shared by the console's pages. */

/** Escapes text for HTML (and attribute values). */
export function esc(x: unknown): string {
  return String(x ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]!);
}

export const dash = "–";

export function rate(n: number | null | undefined): string {
  if (n === null || n === undefined) return dash;
  return n >= 10_000 ? `${(n / 1000).toFixed(1)}k` : String(n);
}

export function num(n: number | null | undefined): string {
  return n === null || n === undefined ? dash : n.toLocaleString("en");
}

export function ms(n: number | null | undefined): string {
  if (n === null || n === undefined) return dash;
  if (n < 1000) return `${Math.round(n)} ms`;
  if (n < 120_000) return `${(n / 1000).toFixed(2)} s`;
  if (n < 7_200_000) return `${(n / 60_000).toFixed(1)} min`;
  return `${(n / 3_600_000).toFixed(1)} h`;
}

export function bytes(n: number | null | undefined): string {
  if (n === null || n === undefined) return dash;
  return n < 1024 ? `${n} B` : n < 1024 * 1024 ? `${(n / 1024).toFixed(1)} KiB` : `${(n / 1024 / 1024).toFixed(1)} MiB`;
}

export function time(t: number | null | undefined): string {
  if (t === null || t === undefined || !Number.isFinite(t)) return dash;
  return new Date(t).toISOString().replace("T", " ").slice(0, 23);
}

export function ago(t: number | null | undefined, now: number): string {
  if (t === null || t === undefined) return dash;
  return `${ms(Math.max(0, now - t))} ago`;
}
