/**
 * The Kubernetes objects of an eddy cluster, built as plain objects typed by `kubernetes-models`
 * and `@kubernetes-models/keda` (type-only imports, erased when Node strips the types, so the image
 * needs neither package): the compiler rejects a misspelt or misplaced field, and test/unit/k8s
 * validates the values against the schemas. Pure: no I/O, no YAML.
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
import {
  METRICS_PORT,
  NAMES,
  NATS_CLIENT_PORT,
  NATS_CLUSTER_PORT,
  NATS_MONITOR_PORT,
  OVERLAY_SETTINGS,
  natsUrl,
  resolveOptions,
  scalingUrl,
  type K8sRenderOptions,
  type Overlay,
  type Resolved,
  type Sizes,
} from "./options.ts";

/** The user the image runs as (`node` in the official Node images). */
const APP_UID = 1000;

export type K8sObject = INamespace | IServiceAccount | IConfigMap | IService | IStatefulSet | IDeployment | IPodDisruptionBudget | IScaledObject;

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

/**
 * The NATS servers of a clustered overlay on distinct nodes, required rather than preferred: with
 * three servers every replicated stream has a copy on each, so two on one node would lose the
 * quorum of every stream (and two copies of its data) with that node, which the third replica is
 * there to prevent. A server that finds no free node stays Pending, visibly, instead of sharing
 * one. Different zones are preferred where the nodes have them. Design note bn.
 */
function natsPlacement(r: Resolved): Pick<IPodSpec, "affinity"> {
  if (!r.settings.spread || r.settings.natsReplicas < 2) return {};
  // A new object each time: the YAML writer would turn a shared one into an anchor and alias.
  const labelSelector = () => ({ matchLabels: selectorLabels("nats") });
  return {
    affinity: {
      podAntiAffinity: {
        requiredDuringSchedulingIgnoredDuringExecution: [{ topologyKey: "kubernetes.io/hostname", labelSelector: labelSelector() }],
        preferredDuringSchedulingIgnoredDuringExecution: [{ weight: 100, podAffinityTerm: { topologyKey: "topology.kubernetes.io/zone", labelSelector: labelSelector() } }],
      },
    },
  };
}

const podNameEnv = { name: "POD_NAME", valueFrom: { fieldRef: { fieldPath: "metadata.name" } } };

/** Where the client certificate Secret is mounted in eddy containers (production). */
const CLIENT_TLS_DIR = "/etc/eddy/nats-tls";
/** Where the server certificate Secret is mounted in the NATS containers (production). */
const SERVER_TLS_DIR = "/etc/nats/tls";

/**
 * The NATS identity of an eddy process: `NATS_USER`/`NATS_PASSWORD` from its component's Secret
 * (optional, so a cluster without NATS users still starts; create the Secret to turn it on), and
 * with TLS the CA, certificate and key of the mounted client Secret. Never in args or plain values.
 */
function natsIdentityEnv(r: Resolved, name: Component): NonNullable<IContainer["env"]> {
  const secret = name === "supervisor" ? NAMES.supervisorNatsUser : NAMES.workerNatsUser;
  const fromSecret = (env: string, key: string) => ({ name: env, valueFrom: { secretKeyRef: { name: secret, key, optional: true } } });
  const tls = r.settings.tls
    ? [
        { name: "NATS_CA", value: `${CLIENT_TLS_DIR}/ca.crt` },
        { name: "NATS_CERT", value: `${CLIENT_TLS_DIR}/tls.crt` },
        { name: "NATS_KEY", value: `${CLIENT_TLS_DIR}/tls.key` },
      ]
    : [];
  return [fromSecret("NATS_USER", "user"), fromSecret("NATS_PASSWORD", "password"), ...tls];
}

/** The container of an eddy process (supervisor or worker): image, env, metrics port, probes. */
function eddyContainer(r: Resolved, name: Component, args: string[], resources: Sizes): IContainer {
  return {
    name,
    image: r.image,
    imagePullPolicy: "IfNotPresent",
    args,
    env: [
      { name: "EDDY_NATS_URL", value: natsUrl(r.namespace) },
      // Replicas of what eddy creates: one copy per server up to three (design note bl); the
      // production overlay's three servers give every stream, bucket and object store three.
      { name: "EDDY_REPLICAS", value: String(Math.min(3, r.settings.natsReplicas)) },
      ...natsIdentityEnv(r, name),
      // Turns on the HTTP endpoint (/metrics, /healthz, /scaling); it is off without it.
      { name: "EDDY_METRICS_PORT", value: String(METRICS_PORT) },
      // On the pod's address (probes, Prometheus, KEDA), not only loopback as on a laptop.
      { name: "EDDY_METRICS_HOST", value: "0.0.0.0" },
      podNameEnv,
    ],
    ports: [{ name: "metrics", containerPort: METRICS_PORT, protocol: "TCP" }],
    readinessProbe: { httpGet: { path: "/healthz", port: "metrics" }, periodSeconds: 5, failureThreshold: 3 },
    livenessProbe: { httpGet: { path: "/healthz", port: "metrics" }, initialDelaySeconds: 10, periodSeconds: 10, failureThreshold: 6 },
    resources: { requests: { ...resources.requests }, limits: { ...resources.limits } },
    securityContext: containerSecurity,
    volumeMounts: [{ name: "tmp", mountPath: "/tmp" }, ...(r.settings.tls ? [{ name: "nats-tls", mountPath: CLIENT_TLS_DIR, readOnly: true }] : [])],
  };
}

/** The volumes of an eddy pod: a scratch /tmp, and with TLS the client certificate Secret. */
function eddyVolumes(r: Resolved): NonNullable<IPodSpec["volumes"]> {
  return [{ name: "tmp", emptyDir: {} }, ...(r.settings.tls ? [{ name: "nats-tls", secret: { secretName: NAMES.natsClientTls, defaultMode: 0o400 } }] : [])];
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
  if (s.tls) {
    lines.push(
      "",
      "# Clients must use TLS and present a certificate signed by the CA (Secrets eddy-nats-server-tls",
      "# and eddy-nats-client-tls). Routes between the servers are not covered; see docs/security.md.",
      "tls {",
      `  cert_file: "${SERVER_TLS_DIR}/tls.crt"`,
      `  key_file: "${SERVER_TLS_DIR}/tls.key"`,
      `  ca_file: "${SERVER_TLS_DIR}/ca.crt"`,
      "  verify: true",
      "  timeout: 5",
      "}",
    );
  }
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
          ...natsPlacement(r),
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
                ...(s.tls ? [{ name: "tls", mountPath: SERVER_TLS_DIR, readOnly: true }] : []),
              ],
            },
          ],
          volumes: [
            { name: "config", configMap: { name: NAMES.natsConfig } },
            { name: "pid", emptyDir: {} },
            ...(s.tls ? [{ name: "tls", secret: { secretName: NAMES.natsServerTls } }] : []),
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
          volumes: eddyVolumes(r),
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
          volumes: eddyVolumes(r),
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
  const r = resolveOptions(opts);
  const namespace: INamespace = { apiVersion: "v1", kind: "Namespace", metadata: { name: r.namespace, labels: labels("base") } };
  const serviceAccount: IServiceAccount = {
    apiVersion: "v1",
    kind: "ServiceAccount",
    metadata: meta(r, NAMES.serviceAccount, "base"),
    automountServiceAccountToken: false,
  };
  return [namespace, serviceAccount, ...natsObjects(r), ...supervisorObjects(r), ...workerObjects(r)];
}
