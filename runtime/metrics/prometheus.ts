/**
 * Prometheus text exposition, written by hand: a handful of gauges and counters with labels
 * needs no client library. `MetricsText` collects samples and renders them grouped by metric.
 */

export type Labels = Readonly<Record<string, string | number>>;

interface Family {
  readonly help: string;
  readonly type: "counter" | "gauge";
  readonly samples: string[];
}

const escape = (v: string | number) => String(v).replace(/\\/g, "\\\\").replace(/\n/g, "\\n").replace(/"/g, '\\"');

export class MetricsText {
  private readonly families = new Map<string, Family>();

  add(name: string, type: Family["type"], help: string, labels: Labels, value: number): void {
    let f = this.families.get(name);
    if (f === undefined) this.families.set(name, (f = { help, type, samples: [] }));
    const l = Object.entries(labels).map(([k, v]) => `${k}="${escape(v)}"`).join(",");
    const v = Number.isFinite(value) ? String(value) : value > 0 ? "+Inf" : value < 0 ? "-Inf" : "NaN";
    f.samples.push(`${name}${l ? `{${l}}` : ""} ${v}`);
  }

  render(): string {
    const out: string[] = [];
    for (const [name, f] of this.families) out.push(`# HELP ${name} ${f.help}`, `# TYPE ${name} ${f.type}`, ...f.samples);
    return out.join("\n") + "\n";
  }
}
