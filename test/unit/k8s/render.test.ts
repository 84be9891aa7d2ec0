/**
 * `eddy k8s render`: every object of every overlay (and of renders with every option set) is valid
 * against the Kubernetes schema of its apiVersion/kind (npm `kubernetes-models`) and the
 * ScaledObject against KEDA's (npm `@kubernetes-models/keda`, generated from KEDA's Go API types);
 * the objects fit together (selectors, names, DNS names, ports); and the options reach every place
 * they should.
 */
import { describe, expect, it, vi } from "vitest";
import { ConfigMap } from "kubernetes-models/v1/ConfigMap";
import { Namespace } from "kubernetes-models/v1/Namespace";
import { Service } from "kubernetes-models/v1/Service";
import { ServiceAccount } from "kubernetes-models/v1/ServiceAccount";
import { Deployment } from "kubernetes-models/apps/v1/Deployment";
import { StatefulSet } from "kubernetes-models/apps/v1/StatefulSet";
import { PodDisruptionBudget } from "kubernetes-models/policy/v1/PodDisruptionBudget";
import { ScaledObject } from "@kubernetes-models/keda/keda.sh/v1alpha1/ScaledObject";
import type { IContainer } from "kubernetes-models/v1/Container";
import type { IPodTemplateSpec } from "kubernetes-models/v1/PodTemplateSpec";
import type { IService } from "kubernetes-models/v1/Service";
import type { IDeployment } from "kubernetes-models/apps/v1/Deployment";
import type { IStatefulSet } from "kubernetes-models/apps/v1/StatefulSet";
import type { IPodDisruptionBudget } from "kubernetes-models/policy/v1/PodDisruptionBudget";
import type { IConfigMap } from "kubernetes-models/v1/ConfigMap";
import type { IScaledObject } from "@kubernetes-models/keda/keda.sh/v1alpha1/ScaledObject";
import {
  DEFAULT_IMAGE,
  DEFAULT_LAG_TARGET,
  DEFAULT_NAMESPACE,
  DEFAULT_NATS_IMAGE,
  K8sRenderOptionsError,
  OVERLAY_SETTINGS,
  OVERLAYS,
  parseSourceConsumer,
  renderManifests,
  runK8sRender,
  type K8sObject,
  type K8sRenderOptions,
} from "../../../runtime/cli/k8s-render.ts";

/** The schema model of each apiVersion/kind the renderer may produce. */
const MODELS: Record<string, new (data: never) => { validate(): void }> = {
  "v1/Namespace": Namespace,
  "v1/ServiceAccount": ServiceAccount,
  "v1/ConfigMap": ConfigMap,
  "v1/Service": Service,
  "apps/v1/StatefulSet": StatefulSet,
  "apps/v1/Deployment": Deployment,
  "policy/v1/PodDisruptionBudget": PodDisruptionBudget,
  "keda.sh/v1alpha1/ScaledObject": ScaledObject,
};

function validate(o: K8sObject): void {
  const Model = MODELS[`${o.apiVersion}/${o.kind}`];
  if (Model === undefined) throw new Error(`no schema for ${o.apiVersion}/${o.kind}`);
  new Model(structuredClone(o) as never).validate();
}

/** Renders to check: each overlay with defaults, and with every option set. */
const CASES: Array<{ name: string; opts: K8sRenderOptions }> = OVERLAYS.flatMap((overlay) => [
  { name: `${overlay}, defaults`, opts: { overlay } },
  {
    name: `${overlay}, every option`,
    opts: {
      overlay,
      image: "registry.example.com/team/eddy:1.2.3@sha256:" + "a".repeat(64),
      namespace: "streams-prod",
      workersMin: 0,
      workersMax: 7,
      pipeline: "pipelines/orders.ts",
      lagTarget: 2500,
      sourceConsumers: [
        { stream: "ORDERS", consumer: "orders-bridge" },
        { stream: "CLICKS", consumer: "clicks_durable" },
      ],
      natsAccount: "APP",
      natsImage: "nats:2.10.29-alpine",
    },
  },
]);

const byKind = <T extends K8sObject>(objects: K8sObject[], kind: T["kind"], name?: string): T[] =>
  objects.filter((o) => o.kind === kind && (name === undefined || o.metadata?.name === name)) as T[];

const one = <T extends K8sObject>(objects: K8sObject[], kind: T["kind"], name?: string): T => {
  const found = byKind<T>(objects, kind, name);
  expect(found, `${kind} ${name ?? ""}`).toHaveLength(1);
  return found[0]!;
};

type Workload = IDeployment | IStatefulSet;
const workloads = (objects: K8sObject[]): Workload[] => objects.filter((o): o is Workload => o.kind === "Deployment" || o.kind === "StatefulSet");
const template = (w: Workload): IPodTemplateSpec => w.spec!.template;
const containers = (w: Workload): IContainer[] => template(w).spec!.containers;

const matches = (selector: Record<string, string> | undefined, labels: Record<string, string> | undefined) =>
  selector !== undefined && Object.keys(selector).length > 0 && Object.entries(selector).every(([k, v]) => labels?.[k] === v);

/** Every string anywhere in a value. */
function strings(v: unknown): string[] {
  if (typeof v === "string") return [v];
  if (Array.isArray(v)) return v.flatMap(strings);
  if (typeof v === "object" && v !== null) return [...Object.keys(v), ...Object.values(v).flatMap(strings)];
  return [];
}

const env = (c: IContainer, name: string) => c.env?.find((e) => e.name === name)?.value;

describe("schemas", () => {
  for (const { name, opts } of CASES) {
    it(`every object is valid against its Kubernetes or KEDA schema (${name})`, () => {
      const objects = renderManifests(opts);
      expect(objects.length).toBeGreaterThanOrEqual(12);
      for (const o of objects) {
        try {
          validate(o);
        } catch (e) {
          throw new Error(`${o.kind} ${o.metadata?.name}: ${(e as Error).message}`);
        }
      }
    });
  }

  it("the validators reject what the API server would (a control that they validate at all)", () => {
    const objects = renderManifests({ overlay: "production" });
    const deployment = structuredClone(one<IDeployment>(objects, "Deployment", "eddy-supervisor"));
    (deployment.spec as unknown as Record<string, unknown>).replicas = "2";
    expect(() => validate(deployment)).toThrow(/replicas/);
    const noContainers = structuredClone(one<IStatefulSet>(objects, "StatefulSet"));
    delete (noContainers.spec!.template.spec as unknown as Record<string, unknown>).containers;
    expect(() => validate(noContainers)).toThrow(/containers/);
    const scaled = structuredClone(one<IScaledObject>(objects, "ScaledObject"));
    (scaled.spec.triggers[0]!.metadata as Record<string, unknown>).targetValue = 1000;
    expect(() => validate(scaled)).toThrow(/targetValue|string/);
    const noTarget = structuredClone(one<IScaledObject>(objects, "ScaledObject"));
    delete (noTarget.spec as unknown as Record<string, unknown>).scaleTargetRef;
    expect(() => validate(noTarget)).toThrow(/scaleTargetRef/);
    const badProbe = structuredClone(one<IDeployment>(objects, "Deployment", "eddy-worker"));
    (badProbe.spec!.template.spec!.containers[0]!.ports![0] as unknown as Record<string, unknown>).containerPort = "9464";
    expect(() => validate(badProbe)).toThrow(/containerPort/);
  });
});

describe("the objects fit together", () => {
  for (const { name, opts } of CASES) {
    it(`names, selectors, ports and DNS names agree (${name})`, () => {
      const objects = renderManifests(opts);
      const ns = opts.namespace ?? DEFAULT_NAMESPACE;

      // Namespace first, every other object in it; names unique per kind.
      expect(objects[0]).toMatchObject({ kind: "Namespace", metadata: { name: ns } });
      for (const o of objects.slice(1)) expect(o.metadata?.namespace, `${o.kind} ${o.metadata?.name}`).toBe(ns);
      const keys = objects.map((o) => `${o.kind}/${o.metadata?.name}`);
      expect(new Set(keys).size).toBe(keys.length);

      // Labels: every object is part of eddy and says what it is.
      for (const o of objects) {
        expect(o.metadata?.labels?.["app.kubernetes.io/part-of"]).toBe("eddy");
        expect(o.metadata?.labels?.["app.kubernetes.io/name"]).toBeTruthy();
        if (o.kind !== "Namespace" && o.kind !== "ServiceAccount") expect(o.metadata?.labels?.["app.kubernetes.io/component"]).toBeTruthy();
      }

      // Workloads: selectors select their own pods, and no other workload's; service account exists.
      const accounts = byKind(objects, "ServiceAccount").map((o) => o.metadata?.name);
      for (const w of workloads(objects)) {
        expect(matches(w.spec!.selector.matchLabels, template(w).metadata?.labels), `${w.metadata?.name} selector`).toBe(true);
        for (const other of workloads(objects)) {
          if (other !== w) expect(matches(w.spec!.selector.matchLabels, template(other).metadata?.labels)).toBe(false);
        }
        expect(accounts).toContain(template(w).spec!.serviceAccountName);
        // Volumes mounted exist (pod volumes or, for the StatefulSet, claim templates).
        const volumes = [
          ...(template(w).spec!.volumes ?? []).map((v) => v.name),
          ...(w.kind === "StatefulSet" ? (w.spec!.volumeClaimTemplates ?? []).map((t) => t.metadata?.name) : []),
        ];
        for (const c of containers(w)) for (const m of c.volumeMounts ?? []) expect(volumes, `${c.name} mounts ${m.name}`).toContain(m.name);
        // ConfigMaps referenced exist.
        for (const v of template(w).spec!.volumes ?? []) {
          if (v.configMap !== undefined) one<IConfigMap>(objects, "ConfigMap", v.configMap.name);
        }
        // Probes and service target ports name ports the container has.
        for (const c of containers(w)) {
          const ports = (c.ports ?? []).map((p) => p.name);
          for (const probe of [c.readinessProbe, c.livenessProbe, c.startupProbe]) {
            if (probe?.httpGet !== undefined) expect(ports).toContain(probe.httpGet.port);
          }
        }
      }

      // Services: each selects the pods of exactly one workload, on ports those pods have.
      for (const svc of byKind<IService>(objects, "Service")) {
        const targets = workloads(objects).filter((w) => matches(svc.spec!.selector, template(w).metadata?.labels));
        expect(targets, `Service ${svc.metadata?.name}`).toHaveLength(1);
        const podPorts = containers(targets[0]!).flatMap((c) => c.ports ?? []);
        for (const p of svc.spec!.ports ?? []) expect(podPorts.map((x) => x.name), `${svc.metadata?.name}:${p.name}`).toContain(p.targetPort);
      }

      // PodDisruptionBudgets select the pods of one workload and leave room to evict.
      for (const pdb of byKind<IPodDisruptionBudget>(objects, "PodDisruptionBudget")) {
        const targets = workloads(objects).filter((w) => matches(pdb.spec!.selector!.matchLabels, template(w).metadata?.labels));
        expect(targets, `PDB ${pdb.metadata?.name}`).toHaveLength(1);
        const replicas = targets[0]!.spec!.replicas!;
        if (pdb.spec!.minAvailable !== undefined) expect(pdb.spec!.minAvailable).toBeLessThan(replicas);
        if (pdb.spec!.maxUnavailable !== undefined) expect(pdb.spec!.maxUnavailable).toBeGreaterThanOrEqual(1);
      }

      // Every cluster DNS name anywhere (env, URLs, nats.conf, trigger metadata) is in the namespace
      // and names a Service of the render (or a pod of the StatefulSet behind its headless Service).
      const services = byKind<IService>(objects, "Service").map((s) => s.metadata!.name!);
      const dnsNames = strings(objects).flatMap((s) => [...s.matchAll(/([a-z0-9.-]+)\.([a-z0-9-]+)\.svc\b/g)]);
      expect(dnsNames.length).toBeGreaterThan(0);
      for (const [, host, namespace] of dnsNames) {
        expect(namespace).toBe(ns);
        expect(services).toContain(host!.split(".").at(-1));
      }
    });
  }
});

describe("what each part does", () => {
  for (const { name, opts } of CASES) {
    it(`NATS, supervisors, workers and KEDA are configured as documented (${name})`, () => {
      const objects = renderManifests(opts);
      const overlay = opts.overlay ?? "dev";
      const ns = opts.namespace ?? DEFAULT_NAMESPACE;
      const image = opts.image ?? DEFAULT_IMAGE;
      const settings = OVERLAY_SETTINGS[overlay];

      // NATS: a StatefulSet with a PVC per server, behind a headless Service; 1 or 3 servers.
      const nats = one<IStatefulSet>(objects, "StatefulSet");
      expect(nats.spec!.replicas).toBe(overlay === "production" ? 3 : 1);
      const headless = one<IService>(objects, "Service", nats.spec!.serviceName);
      expect(headless.spec!.clusterIP).toBe("None");
      expect(nats.spec!.volumeClaimTemplates?.[0]?.spec?.resources?.requests?.storage).toBe(`${settings.natsStorageGi}Gi`);
      expect(containers(nats)[0]!.image).toBe(opts.natsImage ?? DEFAULT_NATS_IMAGE);
      const conf = one<IConfigMap>(objects, "ConfigMap").data!["nats.conf"]!;
      expect(conf).toMatch(/jetstream \{[^}]*store_dir: "\/data\/jetstream"/);
      if (overlay === "production") {
        expect(conf).toMatch(/tls \{[^}]*cert_file: "\/etc\/nats\/tls\/tls\.crt"[^}]*verify: true/);
        expect(template(nats).spec!.volumes!.find((v) => v.name === "tls")?.secret?.secretName).toBe("eddy-nats-server-tls");
      } else {
        expect(conf).not.toContain("tls {");
      }
      const dataMount = containers(nats)[0]!.volumeMounts!.find((m) => m.name === nats.spec!.volumeClaimTemplates![0]!.metadata!.name);
      expect(dataMount?.mountPath).toBe("/data");
      if (overlay === "production") {
        // One route per server, by its stable DNS name behind the headless Service.
        for (let i = 0; i < 3; i++) expect(conf).toContain(`nats://${nats.metadata!.name}-${i}.${headless.metadata!.name}.${ns}.svc:6222`);
      } else {
        expect(conf).not.toContain("cluster {");
      }

      // The NATS URL of every eddy process is the client Service's DNS name and client port.
      const client = byKind<IService>(objects, "Service").find(
        (s) => s.spec!.clusterIP !== "None" && matches(s.spec!.selector, template(nats).metadata?.labels),
      )!;
      const clientPort = client.spec!.ports!.find((p) => p.name === "client")!.port;
      const natsUrl = `nats://${client.metadata!.name}.${ns}.svc:${clientPort}`;

      const supervisor = one<IDeployment>(objects, "Deployment", "eddy-supervisor");
      const worker = one<IDeployment>(objects, "Deployment", "eddy-worker");
      for (const d of [supervisor, worker]) {
        const [c, ...rest] = containers(d);
        expect(rest).toHaveLength(0);
        expect(c!.image).toBe(image);
        expect(env(c!, "EDDY_NATS_URL")).toBe(natsUrl);
        expect(env(c!, "EDDY_METRICS_PORT")).toBe("9464");
        // What eddy creates gets one copy per NATS server, up to three (design note bl).
        expect(env(c!, "EDDY_REPLICAS")).toBe(String(Math.min(3, nats.spec!.replicas!)));
        // Credentials come from the component's Secret, never as plain values or arguments.
        const secretRef = (n: string) => c!.env!.find((e) => e.name === n)?.valueFrom?.secretKeyRef;
        expect(secretRef("NATS_USER")).toEqual({ name: `${d.metadata!.name}-nats`, key: "user", optional: true });
        expect(secretRef("NATS_PASSWORD")).toEqual({ name: `${d.metadata!.name}-nats`, key: "password", optional: true });
        // Production speaks TLS to NATS with a client certificate mounted from a Secret.
        const tlsMount = c!.volumeMounts!.find((m) => m.name === "nats-tls");
        if (overlay === "production") {
          expect(tlsMount).toMatchObject({ mountPath: "/etc/eddy/nats-tls", readOnly: true });
          expect(template(d).spec!.volumes!.find((v) => v.name === "nats-tls")?.secret?.secretName).toBe("eddy-nats-client-tls");
          expect([env(c!, "NATS_CA"), env(c!, "NATS_CERT"), env(c!, "NATS_KEY")]).toEqual(["/etc/eddy/nats-tls/ca.crt", "/etc/eddy/nats-tls/tls.crt", "/etc/eddy/nats-tls/tls.key"]);
        } else {
          expect(tlsMount).toBeUndefined();
          expect(env(c!, "NATS_CA")).toBeUndefined();
        }
        expect(c!.ports).toEqual([{ name: "metrics", containerPort: 9464, protocol: "TCP" }]);
        expect(c!.readinessProbe?.httpGet).toEqual({ path: "/healthz", port: "metrics" });
        expect(c!.livenessProbe?.httpGet).toEqual({ path: "/healthz", port: "metrics" });
        expect(c!.resources?.requests).toBeDefined();
        expect(c!.resources?.limits?.memory).toBeDefined();
        expect(template(d).spec!.securityContext?.runAsNonRoot).toBe(true);
        expect(template(d).spec!.terminationGracePeriodSeconds).toBeGreaterThanOrEqual(30);
      }
      // Every container of the image is an eddy process; no other container uses it.
      for (const w of workloads(objects)) for (const c of containers(w)) expect(c.image === image).toBe(w !== nats);

      // Supervisors: 2 (leader + standby), checkpointing every second, a PDB keeps one up.
      expect(supervisor.spec!.replicas).toBe(2);
      const supervisorArgs = containers(supervisor)[0]!.args!;
      expect(supervisorArgs[0]).toBe("supervisor");
      expect(supervisorArgs.join(" ")).toContain("--checkpoint-interval 1000");
      expect(byKind<IPodDisruptionBudget>(objects, "PodDisruptionBudget").some((p) => matches(p.spec!.selector!.matchLabels, template(supervisor).metadata?.labels))).toBe(true);

      // Workers: replicas come from KEDA only; `worker`, plus --pipeline if given.
      expect(worker.spec!.replicas).toBeUndefined();
      expect(containers(worker)[0]!.args).toEqual(opts.pipeline === undefined ? ["worker"] : ["worker", "--pipeline", opts.pipeline]);
      expect(template(worker).spec!.terminationGracePeriodSeconds).toBeGreaterThanOrEqual(60);

      // KEDA: the ScaledObject targets the worker Deployment, with min/max from the options.
      const scaled = one<IScaledObject>(objects, "ScaledObject");
      expect(scaled.spec.scaleTargetRef).toEqual({ apiVersion: "apps/v1", kind: "Deployment", name: worker.metadata!.name });
      expect(scaled.metadata?.namespace).toBe(worker.metadata?.namespace);
      expect(scaled.spec.minReplicaCount).toBe(opts.workersMin ?? settings.workersMin);
      expect(scaled.spec.maxReplicaCount).toBe(opts.workersMax ?? settings.workersMax);
      expect(scaled.spec.fallback?.replicas).toBeGreaterThanOrEqual(1);

      // Primary trigger: metrics-api on the supervisor Service's /scaling, value at `lag`.
      const [primary, ...sources] = scaled.spec.triggers;
      expect(primary!.type).toBe("metrics-api");
      const supervisorService = byKind<IService>(objects, "Service").find((s) => matches(s.spec!.selector, template(supervisor).metadata?.labels))!;
      const metricsPort = supervisorService.spec!.ports!.find((p) => p.targetPort === "metrics")!.port;
      expect(primary!.metadata).toEqual({
        url: `http://${supervisorService.metadata!.name}.${ns}.svc:${metricsPort}/scaling`,
        format: "json",
        valueLocation: "lag",
        targetValue: String(opts.lagTarget ?? DEFAULT_LAG_TARGET),
        activationTargetValue: "0",
      });

      // nats-jetstream triggers: one per durable consumer asked for, none otherwise.
      expect(sources).toHaveLength(opts.sourceConsumers?.length ?? 0);
      sources.forEach((t, i) => {
        expect(t.type).toBe("nats-jetstream");
        expect(Object.keys(t.metadata).sort()).toEqual(
          ["account", "activationLagThreshold", "consumer", "lagThreshold", "natsServerMonitoringEndpoint", "stream", "useHttps"],
        );
        expect(t.metadata).toMatchObject({
          natsServerMonitoringEndpoint: `${headless.metadata!.name}.${ns}.svc:8222`,
          account: opts.natsAccount ?? "$G",
          stream: opts.sourceConsumers![i]!.stream,
          consumer: opts.sourceConsumers![i]!.consumer,
        });
        expect(Number.isInteger(Number(t.metadata.lagThreshold))).toBe(true);
      });
      // Trigger names are unique (KEDA requires it when set).
      const triggerNames = scaled.spec.triggers.map((t) => t.name);
      expect(new Set(triggerNames).size).toBe(triggerNames.length);
    });
  }

  it("production runs three NATS servers on three nodes, R3 by default, evicted one at a time", () => {
    const objects = renderManifests({ overlay: "production" });
    const nats = one<IStatefulSet>(objects, "StatefulSet", "eddy-nats");
    expect(nats.spec!.replicas).toBe(3);
    const own = template(nats).metadata!.labels;
    // Required, not preferred: two servers on one node would take the quorum of every R3 stream with it.
    const required = template(nats).spec!.affinity?.podAntiAffinity?.requiredDuringSchedulingIgnoredDuringExecution ?? [];
    expect(required).toHaveLength(1);
    expect(required[0]!.topologyKey).toBe("kubernetes.io/hostname");
    expect(matches(required[0]!.labelSelector!.matchLabels, own)).toBe(true);
    const preferred = template(nats).spec!.affinity?.podAntiAffinity?.preferredDuringSchedulingIgnoredDuringExecution ?? [];
    expect(preferred.map((p) => p.podAffinityTerm.topologyKey)).toEqual(["topology.kubernetes.io/zone"]);
    // At most one server down for voluntary disruptions: the other two keep every stream's quorum.
    const pdbs = byKind<IPodDisruptionBudget>(objects, "PodDisruptionBudget").filter((p) => matches(p.spec!.selector!.matchLabels, own));
    expect(pdbs).toHaveLength(1);
    expect(pdbs[0]!.spec!.maxUnavailable).toBe(1);
    expect(pdbs[0]!.spec!.minAvailable).toBeUndefined();
    // Everything eddy creates there has three replicas.
    for (const d of [one<IDeployment>(objects, "Deployment", "eddy-supervisor"), one<IDeployment>(objects, "Deployment", "eddy-worker")]) {
      expect(env(containers(d)[0]!, "EDDY_REPLICAS")).toBe("3");
    }
    // JetStream may fill 90 % of the volume, and keeps its memory streams small.
    const conf = one<IConfigMap>(objects, "ConfigMap", "eddy-nats-config").data!["nats.conf"]!;
    expect(conf).toContain(`max_file_store: ${Math.floor(20 * 1024 * 0.9)}MB`);
    expect(nats.spec!.volumeClaimTemplates![0]!.spec!.resources!.requests!.storage).toBe("20Gi");
    expect(conf).toContain("max_memory_store: 128MB");
  });

  it("the dev overlay's single NATS server has no anti-affinity that could keep it from scheduling", () => {
    const nats = one<IStatefulSet>(renderManifests({ overlay: "dev" }), "StatefulSet", "eddy-nats");
    expect(nats.spec!.replicas).toBe(1);
    expect(template(nats).spec!.affinity).toBeUndefined();
  });

  it("workers can scale to zero; the default maximum follows a larger minimum", () => {
    const zero = one<IScaledObject>(renderManifests({ workersMin: 0 }), "ScaledObject");
    expect(zero.spec.minReplicaCount).toBe(0);
    expect(zero.spec.fallback?.replicas).toBe(1);
    const big = one<IScaledObject>(renderManifests({ overlay: "dev", workersMin: 5 }), "ScaledObject");
    expect(big.spec.minReplicaCount).toBe(5);
    expect(big.spec.maxReplicaCount).toBe(5);
  });

  it("is deterministic", () => {
    expect(renderManifests({ overlay: "production" })).toEqual(renderManifests({ overlay: "production" }));
  });
});

describe("options", () => {
  it("rejects options that cannot make valid manifests", () => {
    const bad: K8sRenderOptions[] = [
      { namespace: "Eddy" },
      { namespace: "-eddy" },
      { namespace: "a".repeat(64) },
      { namespace: "" },
      { workersMin: -1 },
      { workersMin: 1.5 },
      { workersMax: 0 },
      { workersMin: 4, workersMax: 3 },
      { image: "" },
      { image: "eddy latest" },
      { lagTarget: 0 },
      { pipeline: "" },
      { sourceConsumers: [{ stream: "A.B", consumer: "c" }] },
      { sourceConsumers: [{ stream: "A", consumer: "c d" }] },
      { overlay: "staging" as never },
    ];
    for (const opts of bad) expect(() => renderManifests(opts), JSON.stringify(opts)).toThrow(K8sRenderOptionsError);
  });

  it("parses --source-consumer as <stream>/<consumer>", () => {
    expect(parseSourceConsumer("ORDERS/bridge")).toEqual({ stream: "ORDERS", consumer: "bridge" });
    for (const bad of ["ORDERS", "/bridge", "ORDERS/", "A/b/c"]) expect(() => parseSourceConsumer(bad)).toThrow(K8sRenderOptionsError);
  });

  it("runK8sRender prints the YAML and returns 0, or one line and 2 for bad options", async () => {
    const out: string[] = [];
    const err: string[] = [];
    const stdout = vi.spyOn(process.stdout, "write").mockImplementation(((chunk: string, cb?: (e?: Error | null) => void) => {
      out.push(String(chunk));
      cb?.();
      return true;
    }) as typeof process.stdout.write);
    const stderr = vi.spyOn(process.stderr, "write").mockImplementation(((chunk: string) => {
      err.push(String(chunk));
      return true;
    }) as typeof process.stderr.write);
    try {
      expect(await runK8sRender({ overlay: "production", namespace: "x", sourceConsumers: ["S/c"] })).toBe(0);
      expect(out.join("")).toContain("kind: ScaledObject");
      expect(out.join("")).toContain("type: nats-jetstream");
      expect(err).toEqual([]);
      out.length = 0;
      expect(await runK8sRender({ overlay: "staging" })).toBe(2);
      expect(await runK8sRender({ workersMin: 3, workersMax: 2 })).toBe(2);
      expect(await runK8sRender({ sourceConsumers: ["nope"] })).toBe(2);
      expect(out).toEqual([]);
      expect(err).toHaveLength(3);
      for (const line of err) expect(line).toMatch(/^eddy: .+\n$/);
    } finally {
      stdout.mockRestore();
      stderr.mockRestore();
    }
  });
});
