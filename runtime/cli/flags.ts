/**
 * Flags and arguments that many `eddy` commands share, defined once so that they are spelled and
 * described the same everywhere (`--nats`, `--json`, the job argument), and the global connection
 * flags (`--creds`, `--user`, `--password`, `--tls-ca`, `--tls-cert`, `--tls-key`) that every
 * command accepts, as the `nats` CLI does.
 */
import * as Argument from "effect/cli/Argument";
import * as Flag from "effect/cli/Flag";
import * as GlobalFlag from "effect/cli/GlobalFlag";

/** The description of `--nats` for commands that talk to a running NATS server. */
export const NATS_URL_DESCRIPTION = "NATS server URL (default: $EDDY_NATS_URL, $NATS_URL or nats://127.0.0.1:4222)";

/** `--nats <url>`; commands that start their own server say so in `description`. */
export const natsFlag = (description: string = NATS_URL_DESCRIPTION) =>
  Flag.String("nats").pipe(Flag.withDescription(description), Flag.optional);

/** `--json`: machine-readable output instead of a table or a sentence. */
export const jsonFlag = (description = "print JSON") => Flag.Boolean("json").pipe(Flag.withDescription(description), Flag.withDefault(false));

/** `--metrics-host <address>`: where `/metrics` (and `/healthz`, `/scaling`) listen. */
export const metricsHostFlag = () =>
  Flag.String("metrics-host").pipe(
    Flag.withDescription("address of the metrics endpoint (default: $EDDY_METRICS_HOST or 127.0.0.1; 0.0.0.0 for every interface)"),
    Flag.optional,
  );

/** `--state-cache-mb` of `eddy worker` and `eddy dev`: memory for actor state (design note bf). */
export const stateCacheMbFlag = () =>
  Flag.Finite("state-cache-mb").pipe(
    Flag.withDescription("MiB of memory for actor state, split between the actors with state of the process; the rest stays in KV (default: $EDDY_STATE_CACHE_MB or 256)"),
    Flag.optional,
  );

/**
 * `--replicas <n>` of the commands that create streams, buckets or object stores (design note bl);
 * `applyReplicas` (run.ts) hands it on as `EDDY_REPLICAS`.
 */
export const replicasFlag = () =>
  Flag.Int("replicas").pipe(
    Flag.withDescription("replicas of the streams, KV buckets and object stores eddy creates, 1 to 5 (default: $EDDY_REPLICAS, else 3 on a NATS cluster and 1 on a single server)"),
    Flag.optional,
  );

/** The `<job>` argument. */
export const jobArg = Argument.String("job").pipe(Argument.withDescription("job name"));

/** `<job> [--nats] [--json]`: what commands about one job on a running cluster take. */
export const jobTarget = {
  job: jobArg,
  nats: natsFlag(),
  json: jsonFlag(),
};

/** `--creds <file>`: a NATS credentials file (JWT and NKey seed), as for `nats --creds`. */
export const CredsSetting = GlobalFlag.Setting("creds")({
  flag: Flag.String("creds").pipe(Flag.withDescription("NATS credentials file (default: $NATS_CREDS)"), Flag.optional),
});

/** `--user <name>`: the NATS user (with `--password`). */
export const UserSetting = GlobalFlag.Setting("user")({
  flag: Flag.String("user").pipe(Flag.withDescription("NATS user (default: $NATS_USER)"), Flag.optional),
});

/** `--password <secret>`: the NATS user's password. */
export const PasswordSetting = GlobalFlag.Setting("password")({
  flag: Flag.String("password").pipe(Flag.withDescription("NATS password (default: $NATS_PASSWORD)"), Flag.optional),
});

/** `--tls-ca <file>`: the CA that signed the server's certificate; the connection then requires TLS. */
export const TlsCaSetting = GlobalFlag.Setting("tls-ca")({
  flag: Flag.String("tls-ca").pipe(Flag.withDescription("CA certificate (PEM) to verify the NATS server with; requires TLS (default: $NATS_CA)"), Flag.optional),
});

/** `--tls-cert <file>`: the client certificate, for servers that verify clients (with `--tls-key`). */
export const TlsCertSetting = GlobalFlag.Setting("tls-cert")({
  flag: Flag.String("tls-cert").pipe(Flag.withDescription("client certificate (PEM) for NATS; requires TLS (default: $NATS_CERT)"), Flag.optional),
});

/** `--tls-key <file>`: the client certificate's private key. */
export const TlsKeySetting = GlobalFlag.Setting("tls-key")({
  flag: Flag.String("tls-key").pipe(Flag.withDescription("private key (PEM) of the client certificate (default: $NATS_KEY)"), Flag.optional),
});

/** The global flags of the connection, in the order help lists them. */
export const connectionSettings = [CredsSetting, UserSetting, PasswordSetting, TlsCaSetting, TlsCertSetting, TlsKeySetting] as const;
