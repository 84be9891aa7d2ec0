/**
 * `eddy k8s render`: the Kubernetes manifests of an eddy cluster, as one multi-document YAML.
 *
 * Three layers under k8s/: the options and overlays (`options.ts`: defaults, names, validation), the
 * manifests as plain objects (`manifests.ts`, what the tests validate against the Kubernetes and
 * KEDA schemas) and the YAML output through the `yaml` package (`yaml.ts`). This module is the
 * command and the public face of the three. Rendering needs neither kustomize nor helm. Two overlays:
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
 * Every eddy process gets `EDDY_NATS_URL=nats://eddy-nats.<namespace>.svc:4222`,
 * `NATS_USER`/`NATS_PASSWORD` from an optional Secret per component (and in production the
 * `NATS_CA`/`NATS_CERT`/`NATS_KEY` of a mounted client-certificate Secret; the NATS servers then
 * require TLS), `EDDY_METRICS_PORT=9464` and `EDDY_METRICS_HOST=0.0.0.0`, so it serves `/metrics`, `/healthz` (and, on supervisors, `/scaling` =
 * `{"lag": n}`) on that port, named `metrics`. The ScaledObject's primary trigger is `metrics-api`
 * on the supervisor Service's `/scaling`; `nats-jetstream` triggers are added only for durable consumers named with
 * `sourceConsumers`, because eddy's own sources read with ephemeral ordered consumers and record
 * their positions in checkpoints, not as consumer acks (see docs/kubernetes.md).
 */
import { renderYaml } from "./k8s/yaml.ts";
import { K8sRenderOptionsError, OVERLAYS, parseSourceConsumer, type K8sRenderOptions, type Overlay } from "./k8s/options.ts";

export * from "./k8s/options.ts";
export { natsConfig, renderManifests, type K8sObject } from "./k8s/manifests.ts";
export { renderYaml, toYaml } from "./k8s/yaml.ts";

// --- CLI ----------------------------------------------------------------------------------------

/** Options of `eddy k8s render` as the command line gives them: the overlay and consumers as text. */
export type K8sRenderCliOptions = Omit<K8sRenderOptions, "overlay" | "sourceConsumers"> & {
  readonly overlay?: string;
  /** `<stream>/<consumer>`, repeatable. */
  readonly sourceConsumers?: readonly string[];
};

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
    text = renderYaml({ ...opts, overlay: overlay as Overlay, sourceConsumers: opts.sourceConsumers?.map(parseSourceConsumer) });
  } catch (e) {
    if (!(e instanceof K8sRenderOptionsError)) throw e;
    process.stderr.write(`eddy: ${e.message}\n`);
    return 2;
  }
  await new Promise<void>((done, fail) => process.stdout.write(text, (err) => (err ? fail(err) : done())));
  return 0;
}
