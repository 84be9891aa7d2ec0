/**
 * The options of `eddy k8s render`: what each overlay sets, the names and ports every manifest
 * shares, and the validation that turns user options into a complete, checked set (`resolveOptions`)
 * before any manifest is built.
 */
import pkg from "../../../package.json" with { type: "json" };
import { InputError } from "../../errors.ts";

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

// --- names and constants ------------------------------------------------------------------------

export const NAMES = {
  serviceAccount: "eddy",
  natsConfig: "eddy-nats-config",
  /** Secret with `tls.crt`, `tls.key`, `ca.crt` of the NATS servers (production). */
  natsServerTls: "eddy-nats-server-tls",
  /** Secret with `tls.crt`, `tls.key`, `ca.crt` of the eddy processes' client certificate (production). */
  natsClientTls: "eddy-nats-client-tls",
  /** Secrets with `user` and `password` of the supervisors' and the workers' NATS users (optional). */
  supervisorNatsUser: "eddy-supervisor-nats",
  workerNatsUser: "eddy-worker-nats",
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

export interface Sizes {
  readonly requests: { cpu: string; memory: string };
  readonly limits: { memory: string };
}

/** What differs between the overlays. */
export interface OverlaySettings {
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
  /**
   * Clients must speak TLS to NATS and present a certificate (Secrets `eddy-nats-server-tls` and
   * `eddy-nats-client-tls`, in the `kubernetes.io/tls` layout cert-manager writes).
   */
  readonly tls: boolean;
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
    tls: false,
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
    tls: true,
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

/** The options with every default filled in and every value checked. */
export interface Resolved {
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

/** Fills in the overlay's defaults and checks every value; throws {@link K8sRenderOptionsError}. */
export function resolveOptions(opts: K8sRenderOptions): Resolved {
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
