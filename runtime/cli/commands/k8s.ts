/** `eddy k8s render`: the Kubernetes manifests as YAML. */
import * as Command from "effect/cli/Command";
import * as Flag from "effect/cli/Flag";
import * as Option from "effect/Option";
import { exitWith } from "../run.ts";

const k8sRender = Command.make(
  "render",
  {
    overlay: Flag.String("overlay").pipe(Flag.withDescription("dev or production (default: dev)"), Flag.optional),
    image: Flag.String("image").pipe(Flag.withDescription("eddy image reference"), Flag.optional),
    namespace: Flag.String("namespace").pipe(Flag.withDescription("namespace (default: eddy)"), Flag.optional),
    workersMin: Flag.Int("workers-min").pipe(Flag.withDescription("KEDA minReplicaCount of workers (0 = scale to zero)"), Flag.optional),
    workersMax: Flag.Int("workers-max").pipe(Flag.withDescription("KEDA maxReplicaCount of workers"), Flag.optional),
    pipeline: Flag.String("pipeline").pipe(Flag.withDescription("run this module baked into the image instead of deployed jobs"), Flag.optional),
    lagTarget: Flag.Int("lag-target").pipe(Flag.withDescription("lag per worker KEDA aims for"), Flag.optional),
    sourceConsumer: Flag.String("source-consumer").pipe(Flag.withDescription("<stream>/<consumer> for a nats-jetstream trigger (repeatable)"), Flag.atLeast(0)),
    natsAccount: Flag.String("nats-account").pipe(Flag.withDescription("NATS account for the nats-jetstream trigger"), Flag.optional),
    natsImage: Flag.String("nats-image").pipe(Flag.withDescription("nats-server image"), Flag.optional),
  },
  (f) =>
    exitWith(async () => {
      const { runK8sRender } = await import("../k8s-render.ts");
      const opt = <T>(o: Option.Option<T>) => Option.getOrUndefined(o);
      const given = Object.fromEntries(
        Object.entries({
          overlay: opt(f.overlay),
          image: opt(f.image),
          namespace: opt(f.namespace),
          workersMin: opt(f.workersMin),
          workersMax: opt(f.workersMax),
          pipeline: opt(f.pipeline),
          lagTarget: opt(f.lagTarget),
          natsAccount: opt(f.natsAccount),
          natsImage: opt(f.natsImage),
        }).filter(([, v]) => v !== undefined),
      );
      return runK8sRender({ ...given, sourceConsumers: f.sourceConsumer });
    }),
).pipe(Command.withDescription("Print the Kubernetes manifests (NATS, supervisor, workers, KEDA ScaledObject) as YAML"));

export const k8s = Command.make("k8s").pipe(Command.withDescription("Kubernetes manifests"), Command.withSubcommands([k8sRender]));
