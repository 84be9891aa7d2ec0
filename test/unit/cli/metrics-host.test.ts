/** The metrics endpoint listens on loopback unless told otherwise; containers are told 0.0.0.0. */
import { describe, expect, it } from "vitest";
import { metricsHostFrom, startMetricsServer } from "../../../runtime/metrics/server.ts";
import { renderManifests } from "../../../runtime/cli/k8s-render.ts";

describe("metrics bind address", () => {
  it("--metrics-host first, then EDDY_METRICS_HOST, then 127.0.0.1", () => {
    expect(metricsHostFrom("0.0.0.0", { EDDY_METRICS_HOST: "10.0.0.1" })).toBe("0.0.0.0");
    expect(metricsHostFrom(undefined, { EDDY_METRICS_HOST: "10.0.0.1" })).toBe("10.0.0.1");
    expect(metricsHostFrom(undefined, {})).toBe("127.0.0.1");
    expect(metricsHostFrom(undefined, { EDDY_METRICS_HOST: "" })).toBe("127.0.0.1");
  });

  it("serves on the address it was given", async () => {
    const s = await startMetricsServer(0, () => "up 1\n", {}, "127.0.0.1");
    try {
      expect(s.host).toBe("127.0.0.1");
      const r = await fetch(`http://127.0.0.1:${s.port}/metrics`);
      expect(await r.text()).toBe("up 1\n");
    } finally {
      await s.close();
    }
  });

  it("the rendered Kubernetes containers of eddy listen on every interface", () => {
    const containers = renderManifests()
      .filter((o) => o.kind === "Deployment")
      .flatMap((o) => (o as { spec: { template: { spec: { containers: Array<{ env: Array<{ name: string; value?: string }> }> } } } }).spec.template.spec.containers);
    expect(containers).toHaveLength(2);
    for (const c of containers) expect(c.env).toContainEqual({ name: "EDDY_METRICS_HOST", value: "0.0.0.0" });
  });
});
