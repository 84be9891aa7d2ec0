/**
 * `eddy k8s render`: the Kubernetes manifests of an eddy cluster, as one multi-document YAML.
 *
 * The manifests are built here as plain objects (`renderManifests`, what the tests validate against
 * the Kubernetes and KEDA schemas) and printed by a small deterministic YAML emitter (`toYaml`), so
 * rendering needs neither kustomize nor helm nor a YAML package at run time. Two overlays:
 *
 * - `dev`: one nats-server (JetStream on a 2 GiB volume), 2 supervisors, workers scaled by KEDA
 *   between 1 and 3;
 * - `production`: a 3-server NATS cluster (routes, 20 GiB volume each, a PodDisruptionBudget),
 *   2 supervisors spread over nodes, workers scaled by KEDA between 2 and 12, larger resources.
 *
 * What the objects are:
 *
 * | object | name |
 * | --- | --- |
 * | Namespace | `<namespace>` (default `eddy`) |
 * | ServiceAccount (no API token: eddy does not talk to Kubernetes) | `eddy` |
 * | ConfigMap with `nats.conf` | `eddy-nats-config` |
 * | Service, headless (StatefulSet identity, routes) | `eddy-nats-headless` |
 * | Service, client (4222) and monitoring (8222) | `eddy-nats` |
 * | StatefulSet, JetStream file store on a PVC per server | `eddy-nats` |
 * | PodDisruptionBudget, at most one server down | `eddy-nats` |
 * | Service, metrics and `/scaling` (9464) | `eddy-supervisor` |
 * | Deployment, 2 replicas (leader + standby) | `eddy-supervisor` |
 * | PodDisruptionBudget, at least one supervisor up | `eddy-supervisor` |
 * | Deployment, no `replicas` (KEDA owns it) | `eddy-worker` |
 * | KEDA ScaledObject on the worker Deployment | `eddy-worker` |
 *
 * Every eddy process gets `EDDY_NATS_URL=nats://eddy-nats.<namespace>.svc:4222` and
 * `EDDY_METRICS_PORT=9464`, so it serves `/metrics`, `/healthz` (and, on supervisors, `/scaling` =
 * `{"lag": n}`) on that port, named `metrics`. The ScaledObject's primary trigger is `metrics-api` on the supervisor Service's
 * `/scaling`; `nats-jetstream` triggers are added only for durable consumers named with
 * `sourceConsumers`, because eddy's own sources read with ephemeral ordered consumers and record
 * their positions in checkpoints, not as consumer acks (see docs/kubernetes.md).
 *
 * The object types come from `kubernetes-models` and `@kubernetes-models/keda` as type-only imports
 * (erased when Node strips the types, so the image needs neither package): the compiler rejects a
 * misspelt or misplaced field here, and test/unit/k8s validates the values against the schemas.
 */
import type { IConfigMap } from "kubernetes-models/v1/ConfigMap";
import type { IContainer } from "kubernetes-models/v1/Container";
import type { INamespace } from "kubernetes-models/v1/Namespace";
import type { IPodSpec } from "kubernetes-models/v1/PodSpec";
import type { IService } from "kubernetes-models/v1/Service";
import type { IServiceAccount } from "kubernetes-models/v1/ServiceAccount";
import type { IDeployment } from "kubernetes-models/apps/v1/Deployment";
import type { IStatefulSet } from "kubernetes-models/apps/v1/StatefulSet";
import type { IPodDisruptionBudget } from "kubernetes-models/policy/v1/PodDisruptionBudget";
import type { IScaledObject } from "@kubernetes-models/keda/keda.sh/v1alpha1/ScaledObject";
import pkg from "../../package.json" with { type: "json" };
import { InputError } from "../errors.ts";

export type Overlay = "dev" | "production";
export const OVERLAYS: readonly Overlay[] = ["dev", "production"];

/** A durable JetStream consumer whose pending count a `nats-jetstream` trigger should follow. */
export interface SourceConsumer {
  readonly stream: string;
  readonly consumer: string;
}

export interface K8sRenderOptions {
  /** `dev` (default) or `production`. */
  readonly overlay?: Overlay;
  /** The eddy image (default `eddy:<package version>`, as built by infra/docker/Dockerfile). */
  readonly image?: string;
  /** Namespace of every object (default `eddy`). */
  readonly namespace?: string;
  /** KEDA's minReplicaCount for workers; 0 allows scale to zero (default: dev 1, production 2). */
  readonly workersMin?: number;
  /** KEDA's maxReplicaCount for workers (default: dev 3, production 12). */
  readonly workersMax?: number;
  /**
   * `--pipeline <file>` for the workers: a module inside the image. Omitted: plain `eddy worker`,
   * which runs whatever is deployed (`eddy deploy`).
   */
  readonly pipeline?: string;
  /** metrics-api targetValue: lag one worker is expected to handle (default 10 000, see DEFAULT_LAG_TARGET). */
  readonly lagTarget?: number;
  /** Durable consumers of source streams to scale on as well (a `nats-jetstream` trigger each). */
  readonly sourceConsumers?: readonly SourceConsumer[];
  /** NATS account of those consumers (default `$G`, the global account of a server without accounts). */
  readonly natsAccount?: string;
  /** The nats-server image (default `nats:2.10-alpine`). */
  readonly natsImage?: string;
}

/** Options that cannot produce valid manifests; the message says which and why. */
export class K8sRenderOptionsError extends InputError {
  override readonly name = "K8sRenderOptionsError";
}

export type K8sObject = INamespace | IServiceAccount | IConfigMap | IService | IStatefulSet | IDeployment | IPodDisruptionBudget | IScaledObject;

// --- names and constants ------------------------------------------------------------------------

export const NAMES = {
  serviceAccount: "eddy",
  natsConfig: "eddy-nats-config",
  natsHeadless: "eddy-nats-headless",
  nats: "eddy-nats",
  supervisor: "eddy-supervisor",
  worker: "eddy-worker",
} as const;

export const METRICS_PORT = 9464;
export const NATS_CLIENT_PORT = 4222;
export const NATS_CLUSTER_PORT = 6222;
export const NATS_MONITOR_PORT = 8222;
export const DEFAULT_NAMESPACE = "eddy";
export const DEFAULT_IMAGE = `eddy:${pkg.version}`;
export const DEFAULT_NATS_IMAGE = "nats:2.10-alpine";
/**
 * Lag (messages not yet covered by a committed checkpoint) per worker. A job that keeps up still
 * shows about its input rate times the checkpoint interval plus the commit time, so this must be
 * well above what one worker reads in a checkpoint interval or workers scale out while idle.
 */
export const DEFAULT_LAG_TARGET = 10_000;
/** The user the image runs as (`node` in the official Node images). */
const APP_UID = 1000;

interface Sizes {
  readonly requests: { cpu: string; memory: string };
  readonly limits: { memory: string };
}

/** What differs between the overlays. */
interface OverlaySettings {
  readonly natsReplicas: number;
  readonly natsStorageGi: number;
  readonly natsResources: Sizes;
  /** GOMEMLIMIT of nats-server, below its memory limit. */
  readonly natsGoMemLimit: string;
  readonly supervisorResources: Sizes;
  readonly workerResources: Sizes;
  readonly workersMin: number;
  readonly workersMax: number;
  /** Spread supervisors, NATS servers and workers over nodes. */
  readonly spread: boolean;
}

export const OVERLAY_SETTINGS: Readonly<Record<Overlay, OverlaySettings>> = {
  dev: {
    natsReplicas: 1,
    natsStorageGi: 2,
    natsResources: { requests: { cpu: "100m", memory: "256Mi" }, limits: { memory: "1Gi" } },
    natsGoMemLimit: "800MiB",
    supervisorResources: { requests: { cpu: "50m", memory: "128Mi" }, limits: { memory: "512Mi" } },
    workerResources: { requests: { cpu: "250m", memory: "256Mi" }, limits: { memory: "1Gi" } },
    workersMin: 1,
    workersMax: 3,
    spread: false,
  },
  production: {
    natsReplicas: 3,
    natsStorageGi: 20,
    natsResources: { requests: { cpu: "1", memory: "2Gi" }, limits: { memory: "4Gi" } },
    natsGoMemLimit: "3276MiB",
    supervisorResources: { requests: { cpu: "200m", memory: "256Mi" }, limits: { memory: "1Gi" } },
    workerResources: { requests: { cpu: "1", memory: "1Gi" }, limits: { memory: "2Gi" } },
    workersMin: 2,
    workersMax: 12,
    spread: true,
  },
};

/** The NATS client URL every eddy process gets: the client Service's DNS name in the namespace. */
export function natsUrl(namespace: string): string {
  return `nats://${NAMES.nats}.${namespace}.svc:${NATS_CLIENT_PORT}`;
}

/** Where KEDA's metrics-api trigger reads the lag: the supervisor Service's `/scaling`. */
export function scalingUrl(namespace: string): string {
  return `http://${NAMES.supervisor}.${namespace}.svc:${METRICS_PORT}/scaling`;
}

// --- options ------------------------------------------------------------------------------------

interface Resolved {
  readonly overlay: Overlay;
  readonly settings: OverlaySettings;
  readonly image: string;
  readonly namespace: string;
  readonly workersMin: number;
  readonly workersMax: number;
  readonly pipeline: string | undefined;
  readonly lagTarget: number;
  readonly sourceConsumers: readonly SourceConsumer[];
  readonly natsAccount: string;
  readonly natsImage: string;
}

const DNS_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
/** JetStream stream and consumer names: no whitespace, `.`, `*`, `>`, path separators. */
const JS_NAME = /^[^\s.*>/\\]+$/;

function resolve(opts: K8sRenderOptions): Resolved {
  const overlay = opts.overlay ?? "dev";
  if (!OVERLAYS.includes(overlay)) throw new K8sRenderOptionsError(`unknown overlay "${String(overlay)}" (dev or production)`);
  const settings = OVERLAY_SETTINGS[overlay];
  const namespace = opts.namespace ?? DEFAULT_NAMESPACE;
  if (namespace.length > 63 || !DNS_LABEL.test(namespace)) {
    throw new K8sRenderOptionsError(`namespace "${namespace}" is not a DNS label (lower-case letters, digits and "-", at most 63)`);
  }
  const image = opts.image ?? DEFAULT_IMAGE;
  if (image.trim() === "" || /\s/.test(image)) throw new K8sRenderOptionsError(`image "${image}" is not an image reference`);
  const natsImage = opts.natsImage ?? DEFAULT_NATS_IMAGE;
  if (natsImage.trim() === "" || /\s/.test(natsImage)) throw new K8sRenderOptionsError(`NATS image "${natsImage}" is not an image reference`);
  const workersMin = opts.workersMin ?? settings.workersMin;
  const workersMax = opts.workersMax ?? Math.max(settings.workersMax, workersMin);
  if (!Number.isSafeInteger(workersMin) || workersMin < 0) throw new K8sRenderOptionsError("--workers-min must be an integer >= 0");
  if (!Number.isSafeInteger(workersMax) || workersMax < 1) throw new K8sRenderOptionsError("--workers-max must be an integer >= 1");
  if (workersMax < workersMin) throw new K8sRenderOptionsError(`--workers-max (${workersMax}) is below --workers-min (${workersMin})`);
  const lagTarget = opts.lagTarget ?? DEFAULT_LAG_TARGET;
  if (!Number.isSafeInteger(lagTarget) || lagTarget < 1) throw new K8sRenderOptionsError("--lag-target must be an integer >= 1");
  if (opts.pipeline !== undefined && (opts.pipeline.trim() === "" || /\s/.test(opts.pipeline))) {
    throw new K8sRenderOptionsError(`--pipeline "${opts.pipeline}" is not a file path in the image`);
  }
  const sourceConsumers = opts.sourceConsumers ?? [];
  for (const s of sourceConsumers) {
    if (!JS_NAME.test(s.stream) || !JS_NAME.test(s.consumer)) {
      throw new K8sRenderOptionsError(`source consumer "${s.stream}/${s.consumer}" is not a JetStream stream/consumer name`);
    }
  }
  const natsAccount = opts.natsAccount ?? "$G";
  if (natsAccount === "" || /\s/.test(natsAccount)) throw new K8sRenderOptionsError(`NATS account "${natsAccount}" is not an account name`);
  return { overlay, settings, image, namespace, workersMin, workersMax, pipeline: opts.pipeline, lagTarget, sourceConsumers, natsAccount, natsImage };
}

/** Parses `STREAM/consumer` (the `--source-consumer` flag) into a {@link SourceConsumer}. */
export function parseSourceConsumer(text: string): SourceConsumer {
  const slash = text.indexOf("/");
  if (slash <= 0 || slash === text.length - 1 || text.indexOf("/", slash + 1) !== -1) {
    throw new K8sRenderOptionsError(`--source-consumer "${text}" must be <stream>/<consumer>`);
  }
  return { stream: text.slice(0, slash), consumer: text.slice(slash + 1) };
}

// --- building blocks ----------------------------------------------------------------------------

type Component = "nats" | "supervisor" | "worker";

/** Selector labels of a component; stable across versions, so Deployments can be updated. */
function selectorLabels(component: Component): Record<string, string> {
  return {
    "app.kubernetes.io/name": component === "nats" ? "nats" : "eddy",
    "app.kubernetes.io/component": component,
  };
}

function labels(component: Component | "base"): Record<string, string> {
  const common = { "app.kubernetes.io/part-of": "eddy", "app.kubernetes.io/managed-by": "eddy-k8s-render" };
  if (component === "base") return { "app.kubernetes.io/name": "eddy", ...common };
  return { ...selectorLabels(component), ...common };
}

function meta(r: Resolved, name: string, component: Component | "base") {
  return { name, namespace: r.namespace, labels: labels(component) };
}

/** Restricted-profile security context of every container. */
const containerSecurity: IContainer["securityContext"] = {
  allowPrivilegeEscalation: false,
  readOnlyRootFilesystem: true,
  runAsNonRoot: true,
  capabilities: { drop: ["ALL"] },
};

function podSecurity(): IPodSpec["securityContext"] {
  return {
    runAsNonRoot: true,
    runAsUser: APP_UID,
    runAsGroup: APP_UID,
    fsGroup: APP_UID,
    seccompProfile: { type: "RuntimeDefault" },
  };
}

/** Prefer one pod of a component per node (production); never blocks scheduling. */
function spreadOverNodes(r: Resolved, component: Component): Pick<IPodSpec, "affinity"> {
  if (!r.settings.spread) return {};
  return {
    affinity: {
      podAntiAffinity: {
        preferredDuringSchedulingIgnoredDuringExecution: [
          { weight: 100, podAffinityTerm: { topologyKey: "kubernetes.io/hostname", labelSelector: { matchLabels: selectorLabels(component) } } },
        ],
      },
    },
  };
}

const podNameEnv = { name: "POD_NAME", valueFrom: { fieldRef: { fieldPath: "metadata.name" } } };

/** The container of an eddy process (supervisor or worker): image, env, metrics port, probes. */
function eddyContainer(r: Resolved, name: Component, args: string[], resources: Sizes): IContainer {
  return {
    name,
    image: r.image,
    imagePullPolicy: "IfNotPresent",
    args,
    env: [
      { name: "EDDY_NATS_URL", value: natsUrl(r.namespace) },
      // Turns on the HTTP endpoint (/metrics, /healthz, /scaling); it is off without it.
      { name: "EDDY_METRICS_PORT", value: String(METRICS_PORT) },
      podNameEnv,
    ],
    ports: [{ name: "metrics", containerPort: METRICS_PORT, protocol: "TCP" }],
    readinessProbe: { httpGet: { path: "/healthz", port: "metrics" }, periodSeconds: 5, failureThreshold: 3 },
    livenessProbe: { httpGet: { path: "/healthz", port: "metrics" }, initialDelaySeconds: 10, periodSeconds: 10, failureThreshold: 6 },
    resources: { requests: { ...resources.requests }, limits: { ...resources.limits } },
    securityContext: containerSecurity,
    volumeMounts: [{ name: "tmp", mountPath: "/tmp" }],
  };
}

const prometheusAnnotations = {
  "prometheus.io/scrape": "true",
  "prometheus.io/port": String(METRICS_PORT),
  "prometheus.io/path": "/metrics",
};

// --- NATS ---------------------------------------------------------------------------------------

/** The nats.conf of the overlay: JetStream on the PVC, routes between the servers when clustered. */
export function natsConfig(r: { namespace: string; overlay: Overlay }): string {
  const s = OVERLAY_SETTINGS[r.overlay];
  // A little below the volume, so JetStream refuses writes before the file system is full.
  const maxFileMb = Math.floor(s.natsStorageGi * 1024 * 0.9);
  const lines = [
    "# Generated by `eddy k8s render`; server_name comes from the pod name (stable in a StatefulSet).",
    "server_name: $SERVER_NAME",
    `port: ${NATS_CLIENT_PORT}`,
    `http_port: ${NATS_MONITOR_PORT}`,
    'pid_file: "/var/run/nats/nats.pid"',
    "# Lame duck mode on SIGTERM (preStop): clients move to other servers before this one exits.",
    'lame_duck_grace_period: "10s"',
    'lame_duck_duration: "30s"',
    "",
    "jetstream {",
    '  store_dir: "/data/jetstream"',
    "  max_memory_store: 128MB",
    `  max_file_store: ${maxFileMb}MB`,
    "}",
  ];
  if (s.natsReplicas > 1) {
    const routes = Array.from(
      { length: s.natsReplicas },
      (_, i) => `    "nats://${NAMES.nats}-${i}.${NAMES.natsHeadless}.${r.namespace}.svc:${NATS_CLUSTER_PORT}"`,
    );
    lines.push("", "cluster {", '  name: "eddy"', `  port: ${NATS_CLUSTER_PORT}`, "  routes: [", ...routes, "  ]", "}");
  }
  return lines.join("\n") + "\n";
}

function natsObjects(r: Resolved): K8sObject[] {
  const s = r.settings;
  const configMap: IConfigMap = {
    apiVersion: "v1",
    kind: "ConfigMap",
    metadata: meta(r, NAMES.natsConfig, "nats"),
    data: { "nats.conf": natsConfig(r) },
  };
  const natsPorts: NonNullable<NonNullable<IService["spec"]>["ports"]> = [
    { name: "client", port: NATS_CLIENT_PORT, targetPort: "client", protocol: "TCP" },
    { name: "cluster", port: NATS_CLUSTER_PORT, targetPort: "cluster", protocol: "TCP" },
    { name: "monitor", port: NATS_MONITOR_PORT, targetPort: "monitor", protocol: "TCP" },
  ];
  const headless: IService = {
    apiVersion: "v1",
    kind: "Service",
    metadata: meta(r, NAMES.natsHeadless, "nats"),
    spec: {
      clusterIP: "None",
      // Routes must resolve while the servers are still starting (not ready yet).
      publishNotReadyAddresses: true,
      selector: selectorLabels("nats"),
      ports: natsPorts,
    },
  };
  const client: IService = {
    apiVersion: "v1",
    kind: "Service",
    metadata: meta(r, NAMES.nats, "nats"),
    spec: {
      type: "ClusterIP",
      selector: selectorLabels("nats"),
      ports: natsPorts.filter((p) => p.name !== "cluster"),
    },
  };
  const statefulSet: IStatefulSet = {
    apiVersion: "apps/v1",
    kind: "StatefulSet",
    metadata: meta(r, NAMES.nats, "nats"),
    spec: {
      serviceName: NAMES.natsHeadless,
      replicas: s.natsReplicas,
      // All servers start together, so the cluster can form its routes.
      podManagementPolicy: "Parallel",
      selector: { matchLabels: selectorLabels("nats") },
      template: {
        metadata: { labels: labels("nats") },
        spec: {
          serviceAccountName: NAMES.serviceAccount,
          automountServiceAccountToken: false,
          terminationGracePeriodSeconds: 60,
          securityContext: podSecurity(),
          ...spreadOverNodes(r, "nats"),
          containers: [
            {
              name: "nats",
              image: r.natsImage,
              imagePullPolicy: "IfNotPresent",
              command: ["nats-server", "--config", "/etc/nats/nats.conf"],
              env: [
                { name: "SERVER_NAME", valueFrom: { fieldRef: { fieldPath: "metadata.name" } } },
                { name: "GOMEMLIMIT", value: s.natsGoMemLimit },
              ],
              ports: [
                { name: "client", containerPort: NATS_CLIENT_PORT, protocol: "TCP" },
                { name: "cluster", containerPort: NATS_CLUSTER_PORT, protocol: "TCP" },
                { name: "monitor", containerPort: NATS_MONITOR_PORT, protocol: "TCP" },
              ],
              // /healthz also waits until JetStream has caught up; the startup probe allows 15 min.
              startupProbe: { httpGet: { path: "/healthz", port: "monitor" }, periodSeconds: 10, failureThreshold: 90 },
              readinessProbe: { httpGet: { path: "/healthz?js-server-only=true", port: "monitor" }, periodSeconds: 10, failureThreshold: 3 },
              livenessProbe: { httpGet: { path: "/healthz?js-enabled-only=true", port: "monitor" }, periodSeconds: 30, failureThreshold: 3 },
              lifecycle: { preStop: { exec: { command: ["nats-server", "-sl=ldm=/var/run/nats/nats.pid"] } } },
              resources: { requests: { ...s.natsResources.requests }, limits: { ...s.natsResources.limits } },
              securityContext: containerSecurity,
              volumeMounts: [
                { name: "config", mountPath: "/etc/nats", readOnly: true },
                { name: "data", mountPath: "/data" },
                { name: "pid", mountPath: "/var/run/nats" },
              ],
            },
          ],
          volumes: [
            { name: "config", configMap: { name: NAMES.natsConfig } },
            { name: "pid", emptyDir: {} },
          ],
        },
      },
      volumeClaimTemplates: [
        {
          apiVersion: "v1",
          kind: "PersistentVolumeClaim",
          metadata: { name: "data", labels: labels("nats") },
          spec: { accessModes: ["ReadWriteOnce"], resources: { requests: { storage: `${s.natsStorageGi}Gi` } } },
        },
      ],
    },
  };
  const pdb: IPodDisruptionBudget = {
    apiVersion: "policy/v1",
    kind: "PodDisruptionBudget",
    metadata: meta(r, NAMES.nats, "nats"),
    spec: { maxUnavailable: 1, selector: { matchLabels: selectorLabels("nats") } },
  };
  return [configMap, headless, client, statefulSet, pdb];
}

// --- supervisor ---------------------------------------------------------------------------------

function supervisorObjects(r: Resolved): K8sObject[] {
  const service: IService = {
    apiVersion: "v1",
    kind: "Service",
    metadata: meta(r, NAMES.supervisor, "supervisor"),
    spec: {
      type: "ClusterIP",
      selector: selectorLabels("supervisor"),
      ports: [{ name: "metrics", port: METRICS_PORT, targetPort: "metrics", protocol: "TCP" }],
    },
  };
  const deployment: IDeployment = {
    apiVersion: "apps/v1",
    kind: "Deployment",
    metadata: meta(r, NAMES.supervisor, "supervisor"),
    spec: {
      // One leader and one standby (leader election through a lease in NATS KV).
      replicas: 2,
      selector: { matchLabels: selectorLabels("supervisor") },
      // Start the new supervisor before stopping an old one, so a standby always exists.
      strategy: { type: "RollingUpdate", rollingUpdate: { maxSurge: 1, maxUnavailable: 0 } },
      template: {
        metadata: { labels: labels("supervisor"), annotations: prometheusAnnotations },
        spec: {
          serviceAccountName: NAMES.serviceAccount,
          automountServiceAccountToken: false,
          // Stopping releases the lease at once; nothing else to wait for.
          terminationGracePeriodSeconds: 30,
          securityContext: podSecurity(),
          ...spreadOverNodes(r, "supervisor"),
          containers: [
            // $(POD_NAME) is expanded by Kubernetes: the supervisor id in the lease and in the log.
            eddyContainer(r, "supervisor", ["supervisor", "--id", "$(POD_NAME)", "--checkpoint-interval", "1000"], r.settings.supervisorResources),
          ],
          volumes: [{ name: "tmp", emptyDir: {} }],
        },
      },
    },
  };
  const pdb: IPodDisruptionBudget = {
    apiVersion: "policy/v1",
    kind: "PodDisruptionBudget",
    metadata: meta(r, NAMES.supervisor, "supervisor"),
    spec: { minAvailable: 1, selector: { matchLabels: selectorLabels("supervisor") } },
  };
  return [service, deployment, pdb];
}

// --- workers and KEDA ---------------------------------------------------------------------------

function workerObjects(r: Resolved): K8sObject[] {
  const args = ["worker", ...(r.pipeline === undefined ? [] : ["--pipeline", r.pipeline])];
  const deployment: IDeployment = {
    apiVersion: "apps/v1",
    kind: "Deployment",
    metadata: meta(r, NAMES.worker, "worker"),
    spec: {
      // No `replicas`: the ScaledObject (through the HPA KEDA creates) owns the count, and
      // re-applying this manifest must not reset it.
      selector: { matchLabels: selectorLabels("worker") },
      // Any change of owners restarts the whole job from its last checkpoint, so a rolling update
      // would restart it once per step and mix code versions; replace all workers at once.
      strategy: { type: "Recreate" },
      template: {
        metadata: { labels: labels("worker"), annotations: prometheusAnnotations },
        spec: {
          serviceAccountName: NAMES.serviceAccount,
          automountServiceAccountToken: false,
          // SIGTERM: the worker stops its actors (they write nothing), deletes its heartbeat and
          // drains its NATS connection; 60 s leaves room for a connection with much to flush.
          terminationGracePeriodSeconds: 60,
          securityContext: podSecurity(),
          ...(r.settings.spread
            ? {
                topologySpreadConstraints: [
                  { maxSkew: 1, topologyKey: "kubernetes.io/hostname", whenUnsatisfiable: "ScheduleAnyway", labelSelector: { matchLabels: selectorLabels("worker") } },
                ],
              }
            : {}),
          containers: [eddyContainer(r, "worker", args, r.settings.workerResources)],
          volumes: [{ name: "tmp", emptyDir: {} }],
        },
      },
    },
  };
  const triggers: IScaledObject["spec"]["triggers"] = [
    {
      // Primary: the supervisor's lag, {"lag": n} at /scaling. Desired workers = ceil(lag / targetValue);
      // with minReplicaCount 0, a lag above activationTargetValue wakes the first worker.
      type: "metrics-api",
      name: "supervisor-lag",
      metricType: "AverageValue",
      metadata: {
        url: scalingUrl(r.namespace),
        format: "json",
        valueLocation: "lag",
        targetValue: String(r.lagTarget),
        activationTargetValue: "0",
      },
    },
    ...r.sourceConsumers.map((c, i) => ({
      // Pending messages of a durable consumer of a source stream. Not eddy's own progress: eddy's
      // sources do not ack (their positions are in checkpoints). If the consumer does not exist,
      // KEDA takes the stream's last sequence as the lag and scales to the maximum.
      type: "nats-jetstream",
      name: `source-${i}`,
      metricType: "AverageValue",
      metadata: {
        natsServerMonitoringEndpoint: `${NAMES.natsHeadless}.${r.namespace}.svc:${NATS_MONITOR_PORT}`,
        account: r.natsAccount,
        stream: c.stream,
        consumer: c.consumer,
        lagThreshold: String(r.lagTarget),
        activationLagThreshold: "0",
        useHttps: "false",
      },
    })),
  ];
  const scaledObject: IScaledObject = {
    apiVersion: "keda.sh/v1alpha1",
    kind: "ScaledObject",
    metadata: meta(r, NAMES.worker, "worker"),
    spec: {
      scaleTargetRef: { apiVersion: "apps/v1", kind: "Deployment", name: NAMES.worker },
      minReplicaCount: r.workersMin,
      maxReplicaCount: r.workersMax,
      pollingInterval: 15,
      // Only for the last step to zero (minReplicaCount 0): that long without lag first.
      cooldownPeriod: 300,
      // The supervisor cannot be read (both down, or KEDA cannot reach it): keep this many workers.
      fallback: { failureThreshold: 4, replicas: Math.max(1, r.workersMin) },
      advanced: {
        horizontalPodAutoscalerConfig: {
          behavior: {
            // Every change of the worker count restarts the jobs from their last checkpoint:
            // scale up in big steps, down slowly and only after the lag stayed low for 5 minutes.
            scaleUp: {
              stabilizationWindowSeconds: 30,
              selectPolicy: "Max",
              policies: [
                { type: "Percent", value: 100, periodSeconds: 60 },
                { type: "Pods", value: 4, periodSeconds: 60 },
              ],
            },
            scaleDown: {
              stabilizationWindowSeconds: 300,
              selectPolicy: "Min",
              policies: [{ type: "Pods", value: 1, periodSeconds: 120 }],
            },
          },
        },
      },
      triggers,
    },
  };
  return [deployment, scaledObject];
}

// --- all ----------------------------------------------------------------------------------------

/** The manifests of an eddy cluster, in the order to apply them. Pure; throws {@link K8sRenderOptionsError}. */
export function renderManifests(opts: K8sRenderOptions = {}): K8sObject[] {
  const r = resolve(opts);
  const namespace: INamespace = { apiVersion: "v1", kind: "Namespace", metadata: { name: r.namespace, labels: labels("base") } };
  const serviceAccount: IServiceAccount = {
    apiVersion: "v1",
    kind: "ServiceAccount",
    metadata: meta(r, NAMES.serviceAccount, "base"),
    automountServiceAccountToken: false,
  };
  return [namespace, serviceAccount, ...natsObjects(r), ...supervisorObjects(r), ...workerObjects(r)];
}

/** Comments printed above some documents: what a reader of the YAML most needs to know. */
function commentFor(o: K8sObject): string[] {
  if (o.kind === "Deployment" && o.metadata?.name === NAMES.worker) {
    return ["Workers: stateless (state is in JetStream KV). No `replicas`: the ScaledObject below sets them."];
  }
  if (o.kind === "ScaledObject") {
    return [
      "Scales the workers on the supervisor's lag (metrics-api on /scaling). eddy's sources keep their",
      "positions in checkpoints, not as consumer acks, so a nats-jetstream trigger (only rendered with",
      "--source-consumer) follows a durable consumer of a source stream, not eddy's progress.",
      "minReplicaCount 0 = scale to zero: the supervisors keep running and their lag wakes KEDA.",
    ];
  }
  if (o.kind === "StatefulSet") return ["NATS JetStream: the only storage of eddy (streams, KV buckets, object stores)."];
  return [];
}

/** The whole rendering as one multi-document YAML, with a header saying how it was made. */
export function renderYaml(opts: K8sRenderOptions = {}): string {
  const objects = renderManifests(opts);
  const r = resolve(opts);
  const header = [
    `# eddy ${pkg.version} on Kubernetes: overlay ${r.overlay}, namespace ${r.namespace}, image ${r.image}.`,
    "# Generated by `eddy k8s render`; see docs/kubernetes.md. Needs KEDA 2.x for the ScaledObject.",
  ];
  const docs = objects.map((o) => [...commentFor(o).map((c) => `# ${c}`), toYaml(o)].join("\n"));
  return header.join("\n") + "\n" + docs.map((d) => `---\n${d}`).join("");
}

// --- YAML ---------------------------------------------------------------------------------------

/**
 * Plain (unquoted) scalars: a letter first, then letters, digits, `_ . / -`, and none of the words
 * YAML 1.1 reads as booleans, null or numbers (Kubernetes' YAML parser is 1.1-flavoured). Everything else is
 * double-quoted with JSON escapes, which YAML reads the same way.
 */
const PLAIN = /^[A-Za-z][A-Za-z0-9_./-]*$/;
const YAML11_WORDS = /^(y|yes|n|no|true|false|on|off|null)$/i;
/** `e0`, `E12`: some YAML 1.1 parsers read an exponent without a mantissa as a float. */
const BARE_EXPONENT = /^e[-+]?[0-9]/i;

function scalar(v: string | number | boolean | null): string {
  if (v === null) return "null";
  if (typeof v === "boolean") return v ? "true" : "false";
  if (typeof v === "number") {
    if (!Number.isFinite(v)) throw new TypeError(`cannot write ${v} as YAML`);
    const s = String(Object.is(v, -0) ? 0 : v);
    // YAML 1.1 floats need a dot: 1e+21 → 1.0e+21.
    return /e/.test(s) && !s.includes(".") ? s.replace("e", ".0e") : s;
  }
  return PLAIN.test(v) && !YAML11_WORDS.test(v) && !BARE_EXPONENT.test(v) ? v : JSON.stringify(v);
}

/** A multi-line string as a literal block, when the block reads back exactly. */
function block(s: string, pad: string): string[] | undefined {
  if (!s.includes("\n") || s.includes("\r") || s.startsWith(" ") || s.startsWith("\t") || s.endsWith("\n\n")) return undefined;
  const body = s.endsWith("\n") ? s.slice(0, -1) : s;
  if (body.trim() === "") return undefined;
  const lines = body.split("\n");
  if (lines.some((l) => l.trim() === "" && l !== "")) return undefined;
  return [s.endsWith("\n") ? "|" : "|-", ...lines.map((l) => (l === "" ? "" : pad + l))];
}

const isScalar = (v: unknown): v is string | number | boolean | null =>
  v === null || typeof v === "string" || typeof v === "number" || typeof v === "boolean";

const isEmpty = (v: unknown) => (Array.isArray(v) ? v.length === 0 : typeof v === "object" && v !== null && Object.keys(v).length === 0);

/** Lines of a value that is a mapping or a sequence, at indentation `indent`. */
function node(v: object, indent: number): string[] {
  const pad = " ".repeat(indent);
  const out: string[] = [];
  const entries: Array<[string | undefined, unknown]> = Array.isArray(v)
    ? v.map((x) => [undefined, x])
    : Object.entries(v).filter(([, x]) => x !== undefined);
  for (const [key, value] of entries) {
    // A sequence item is written like a mapping entry whose "key: " is "- ".
    const lead = key === undefined ? `${pad}- ` : `${pad}${scalar(key)}: `;
    if (value === undefined) throw new TypeError("cannot write undefined in a YAML sequence");
    if (isScalar(value)) {
      const lines = typeof value === "string" ? block(value, pad + "  ") : undefined;
      if (lines === undefined) out.push(lead + scalar(value));
      else out.push(lead + lines[0], ...lines.slice(1));
    } else if (typeof value !== "object") {
      throw new TypeError(`cannot write a ${typeof value} as YAML`);
    } else if (isEmpty(value)) {
      out.push(lead + (Array.isArray(value) ? "[]" : "{}"));
    } else if (key === undefined) {
      // "- " followed by the first line of the nested node, the rest indented under it.
      const inner = node(value, indent + 2);
      out.push(lead + inner[0]!.slice(indent + 2), ...inner.slice(1));
    } else {
      out.push(lead.trimEnd(), ...node(value, Array.isArray(value) ? indent : indent + 2));
    }
  }
  return out;
}

/** One YAML document (no `---`) for a JSON-like value, deterministic: keys in insertion order. */
export function toYaml(value: unknown): string {
  if (isScalar(value)) {
    const lines = typeof value === "string" ? block(value, "  ") : undefined;
    return (lines === undefined ? scalar(value) : lines.join("\n")) + "\n";
  }
  if (typeof value !== "object" || value === undefined) throw new TypeError(`cannot write a ${typeof value} as YAML`);
  if (isEmpty(value)) return (Array.isArray(value) ? "[]" : "{}") + "\n";
  return node(value, 0).join("\n") + "\n";
}

// --- CLI ----------------------------------------------------------------------------------------

/** Options of `eddy k8s render` as the command line gives them. */
export interface K8sRenderCliOptions {
  readonly overlay?: string;
  readonly image?: string;
  readonly namespace?: string;
  readonly workersMin?: number;
  readonly workersMax?: number;
  readonly pipeline?: string;
  readonly lagTarget?: number;
  /** `<stream>/<consumer>`, repeatable. */
  readonly sourceConsumers?: readonly string[];
  readonly natsAccount?: string;
  readonly natsImage?: string;
}

/**
 * `eddy k8s render [--overlay dev|production] [--image <ref>] [--namespace <ns>] [--workers-min n]
 * [--workers-max n] [--pipeline <file>] [--lag-target n] [--source-consumer <stream>/<consumer>]…`:
 * prints the manifests to stdout. Returns 0, or 2 (after one line on stderr) for bad options.
 */
export async function runK8sRender(opts: K8sRenderCliOptions = {}): Promise<number> {
  let text: string;
  try {
    const overlay = opts.overlay ?? "dev";
    if (!(OVERLAYS as readonly string[]).includes(overlay)) throw new K8sRenderOptionsError(`unknown overlay "${overlay}" (dev or production)`);
    text = renderYaml({
      overlay: overlay as Overlay,
      image: opts.image,
      namespace: opts.namespace,
      workersMin: opts.workersMin,
      workersMax: opts.workersMax,
      pipeline: opts.pipeline,
      lagTarget: opts.lagTarget,
      sourceConsumers: opts.sourceConsumers?.map(parseSourceConsumer),
      natsAccount: opts.natsAccount,
      natsImage: opts.natsImage,
    });
  } catch (e) {
    if (!(e instanceof K8sRenderOptionsError)) throw e;
    process.stderr.write(`eddy: ${e.message}\n`);
    return 2;
  }
  await new Promise<void>((done, fail) => process.stdout.write(text, (err) => (err ? fail(err) : done())));
  return 0;
}
