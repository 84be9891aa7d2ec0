/**
 * The files around the render: the checked-in manifests under infra/k8s are what `eddy k8s render`
 * prints (EDDY_UPDATE_K8S=1 rewrites them), the nats.conf of each overlay is accepted by
 * nats-server itself, and the Dockerfile builds the image the manifests expect.
 */
import { describe, expect, it } from "vitest";
import { spawnSync } from "node:child_process";
import { copyFileSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parse } from "yaml";
import { findNatsServerBinary } from "../../../runtime/nats/local-server.ts";
import { DEFAULT_IMAGE, METRICS_PORT, natsConfig, OVERLAYS, renderYaml } from "../../../runtime/cli/k8s-render.ts";
import { makeTestCa } from "../../support/tls.ts";

const root = join(import.meta.dirname, "../../..");
const update = process.env.EDDY_UPDATE_K8S === "1";

describe("infra/k8s", () => {
  for (const overlay of OVERLAYS) {
    it(`infra/k8s/${overlay}/eddy.yaml is \`eddy k8s render --overlay ${overlay}\``, () => {
      const file = join(root, "infra/k8s", overlay, "eddy.yaml");
      const rendered = renderYaml({ overlay });
      if (update) writeFileSync(file, rendered);
      expect(readFileSync(file, "utf8"), `stale: regenerate with EDDY_UPDATE_K8S=1 npx vitest run test/unit/k8s`).toBe(rendered);
    });

    it(`infra/k8s/${overlay}/kustomization.yaml builds from it`, () => {
      const k = parse(readFileSync(join(root, "infra/k8s", overlay, "kustomization.yaml"), "utf8")) as Record<string, unknown>;
      expect(k).toEqual({ apiVersion: "kustomize.config.k8s.io/v1beta1", kind: "Kustomization", resources: ["eddy.yaml"] });
    });
  }
});

describe("nats.conf", () => {
  const bin = findNatsServerBinary();
  for (const overlay of OVERLAYS) {
    it.skipIf(bin === undefined)(`nats-server -t accepts the ${overlay} configuration`, () => {
      const dir = mkdtempSync(join(tmpdir(), "eddy-k8s-"));
      try {
        const file = join(dir, "nats.conf");
        // The production servers read their certificate from a Secret mounted at /etc/nats/tls:
        // here, from a CA made for the test, so that the tls block is checked with real files.
        let conf = natsConfig({ namespace: "eddy", overlay });
        if (conf.includes("/etc/nats/tls/")) {
          using ca = makeTestCa();
          for (const [from, to] of [[ca.ca, "ca.crt"], [ca.serverCert, "tls.crt"], [ca.serverKey, "tls.key"]] as const) copyFileSync(from, join(dir, to));
          conf = conf.replaceAll("/etc/nats/tls/", `${dir}/`);
        }
        writeFileSync(file, conf);
        const r = spawnSync(bin!, ["-t", "-c", file], { env: { ...process.env, SERVER_NAME: "eddy-nats-0" }, encoding: "utf8" });
        expect(r.status, r.stderr + r.stdout).toBe(0);
        expect(r.stderr + r.stdout).toMatch(/is valid/);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    });
  }
});

describe("infra/docker/Dockerfile", () => {
  const text = readFileSync(join(root, "infra/docker/Dockerfile"), "utf8");
  const instructions = text
    .replace(/\\\n/g, " ")
    .split("\n")
    .map((l) => l.trim())
    .filter((l) => l !== "" && !l.startsWith("#"));
  const of = (op: string) => instructions.filter((l) => l.toUpperCase().startsWith(op + " ")).map((l) => l.slice(op.length + 1).trim());

  it("is Node 24 without nats-server, production dependencies only, as a non-root user", () => {
    expect(of("FROM")).toHaveLength(1);
    expect(of("FROM")[0]).toMatch(/^node:24[-.\w]*$/);
    const runs = of("RUN").join("\n");
    expect(runs).toMatch(/npm ci\b.*--omit=dev/);
    expect(text).not.toMatch(/^\s*RUN\b.*nats-server/m);
    const user = of("USER").at(-1);
    expect(user).toBeDefined();
    expect(user!.split(":")[0]).toMatch(/^[1-9][0-9]*$/);
    expect(JSON.parse(of("ENTRYPOINT")[0]!)).toEqual(["node", "runtime/cli/main.mjs"]);
    expect(of("EXPOSE")).toContain(String(METRICS_PORT));
  });

  it("copies what exists, including what npm ci needs for package.json's overrides", () => {
    const sources = of("COPY").flatMap((l) => l.split(/\s+/).slice(0, -1)).filter((s) => !s.startsWith("--"));
    for (const s of sources) expect(existsSync(join(root, s)), s).toBe(true);
    const pkg = JSON.parse(readFileSync(join(root, "package.json"), "utf8")) as { overrides?: Record<string, unknown> };
    const local = JSON.stringify(pkg.overrides ?? {}).match(/file:\.\/([^"]+)/g) ?? [];
    for (const ref of local) {
      const path = ref.slice("file:./".length);
      expect(sources.some((s) => path.startsWith(s.replace(/\/$/, ""))), `${path} copied before npm ci`).toBe(true);
    }
    // The entry point and what it imports at start-up are in the image.
    for (const dir of ["runtime/", "bin/"]) expect(sources).toContain(dir);
  });

  it("is the image the manifests use by default", () => {
    expect(text).toContain(`-t ${DEFAULT_IMAGE} `);
  });
});
