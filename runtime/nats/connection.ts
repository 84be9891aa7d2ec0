/**
 * Opening NATS connections the way eddy processes need them: reconnect forever with a short
 * wait (a restarting nats-server must not kill actors), and a recognisable client name.
 *
 * Credentials travel in the URL, `nats://user:password@host:port` (or `nats://token@host:port`),
 * so every `--nats` / `EDDY_NATS_URL` accepts them (infra/nats/README.md). nats.js ignores the
 * user info of a server URL, so it is taken out here and passed as `user`/`pass`/`token`. As with
 * the `nats` CLI, they may also come from `NATS_CREDS` (a credentials file), `NATS_USER` and
 * `NATS_PASSWORD` (the CLI's `--creds`, `--user`, `--password` set these for the process and the
 * workers it starts); credentials in the URL win. Nothing here logs a credential.
 *
 * TLS is configured the same way: `NATS_CA`, `NATS_CERT`, `NATS_KEY` (the `nats` CLI's names; the
 * CLI's `--tls-ca`, `--tls-cert`, `--tls-key` set them) or a `tls://` server URL. Once any of them
 * is given the client insists on TLS: a server that does not offer it is refused rather than
 * spoken to in plain text, and the server's certificate must verify against the CA (the system's
 * roots without `NATS_CA`). A client certificate and key are sent for servers that verify clients.
 */
import { access, constants as fsConstants, readFile } from "node:fs/promises";
import { connect, credsAuthenticator, type NatsConnection, type NodeConnectionOptions } from "@nats-io/transport-node";
import { InputError, TransientError } from "../errors.ts";

export type { NatsConnection } from "@nats-io/transport-node";

/** NATS could not be reached at start; check the URL and that the server runs, then retry. */
export class NatsUnreachableError extends TransientError {
  override readonly name = "NatsUnreachableError";
}

/** The credentials file named by `--creds` / `NATS_CREDS` cannot be read; fix the path. */
export class NatsCredentialsError extends InputError {
  override readonly name = "NatsCredentialsError";
}

/** The TLS settings are incomplete or name a file that cannot be read; the message says which. */
export class NatsTlsConfigError extends InputError {
  override readonly name = "NatsTlsConfigError";
}

// scheme://userinfo@rest — only URLs with an "@" carry credentials; anything else is left as is.
const WITH_USERINFO = /^([a-z][a-z0-9+.-]*:\/\/)?([^@/]*)@(.*)$/i;

/**
 * Server list and credentials of a NATS URL (several servers may be separated by commas; the
 * credentials of the first one that has any apply, as a connection has one identity).
 */
export function natsConnectOptions(url: string): Pick<NodeConnectionOptions, "servers" | "user" | "pass" | "token"> {
  const servers: string[] = [];
  let auth: { user: string; pass: string } | { token: string } | undefined;
  for (const server of url.split(",").map((s) => s.trim()).filter((s) => s !== "")) {
    const m = WITH_USERINFO.exec(server);
    if (m === null) {
      servers.push(server);
      continue;
    }
    const [, scheme = "", userinfo = "", rest = ""] = m;
    servers.push(scheme + rest);
    if (auth !== undefined || userinfo === "") continue;
    const colon = userinfo.indexOf(":");
    auth =
      colon < 0
        ? { token: decodeURIComponent(userinfo) }
        : { user: decodeURIComponent(userinfo.slice(0, colon)), pass: decodeURIComponent(userinfo.slice(colon + 1)) };
  }
  return { servers, ...auth };
}

/** The URL with any password or token replaced by `***`, for logs and error messages. */
export function redactNatsUrl(url: string): string {
  return url
    .split(",")
    .map((server) => {
      const m = WITH_USERINFO.exec(server.trim());
      if (m === null) return server;
      const [, scheme = "", userinfo = "", rest = ""] = m;
      const colon = userinfo.indexOf(":");
      return `${scheme}${colon < 0 ? "***" : `${userinfo.slice(0, colon)}:***`}@${rest}`;
    })
    .join(",");
}

/** Where a connection's identity comes from when its URL carries none. */
export type NatsAuth =
  | { readonly kind: "url" }
  | { readonly kind: "creds"; readonly file: string }
  | { readonly kind: "user"; readonly user: string; readonly pass: string }
  | { readonly kind: "none" };

type Env = Readonly<Record<string, string | undefined>>;
const set = (v: string | undefined) => (v === undefined || v === "" ? undefined : v);

/**
 * The identity a connection to `url` uses: the URL's own credentials, else the credentials file of
 * `NATS_CREDS`, else `NATS_USER`/`NATS_PASSWORD` (a user without a password has an empty one).
 */
export function natsAuthOf(url: string, env: Env = process.env): NatsAuth {
  const o = natsConnectOptions(url);
  if (o.user !== undefined || o.token !== undefined) return { kind: "url" };
  const creds = set(env.NATS_CREDS);
  if (creds !== undefined) return { kind: "creds", file: creds };
  const user = set(env.NATS_USER);
  if (user !== undefined) return { kind: "user", user, pass: env.NATS_PASSWORD ?? "" };
  return { kind: "none" };
}

/** TLS files of a connection; every field absent means TLS with the system's roots and no client certificate. */
export interface NatsTls {
  readonly caFile?: string;
  readonly certFile?: string;
  readonly keyFile?: string;
}

/**
 * Whether (and with which files) a connection to `url` must use TLS: when `NATS_CA`, `NATS_CERT` or
 * `NATS_KEY` is set or a server URL starts with `tls://`. A certificate needs its key and the
 * other way round. Undefined: plain connections are allowed (TLS is still used if the server
 * requires it, as nats.js does).
 */
export function natsTlsOf(url: string, env: Env = process.env): NatsTls | undefined {
  const caFile = set(env.NATS_CA);
  const certFile = set(env.NATS_CERT);
  const keyFile = set(env.NATS_KEY);
  const tlsScheme = url.split(",").some((s) => /^tls:\/\//i.test(s.trim()));
  if (caFile === undefined && certFile === undefined && keyFile === undefined && !tlsScheme) return undefined;
  if ((certFile === undefined) !== (keyFile === undefined)) {
    throw new NatsTlsConfigError(certFile === undefined ? "a TLS key (--tls-key / NATS_KEY) needs its certificate (--tls-cert / NATS_CERT)" : "a TLS certificate (--tls-cert / NATS_CERT) needs its key (--tls-key / NATS_KEY)");
  }
  return { ...(caFile === undefined ? {} : { caFile }), ...(certFile === undefined ? {} : { certFile }), ...(keyFile === undefined ? {} : { keyFile }) };
}

async function checkReadable(tls: NatsTls): Promise<void> {
  for (const [what, file] of [["CA", tls.caFile], ["certificate", tls.certFile], ["key", tls.keyFile]] as const) {
    if (file === undefined) continue;
    try {
      await access(file, fsConstants.R_OK);
    } catch (e) {
      throw new NatsTlsConfigError(`cannot read the TLS ${what} file ${file}: ${(e as Error).message}`, { cause: e });
    }
  }
}

/**
 * Connects to `url` as {@link natsAuthOf} and {@link natsTlsOf} say (from `env`, by default this
 * process's environment), reconnecting forever.
 */
export async function connectNats(url: string, name: string, env: Env = process.env): Promise<NatsConnection> {
  const auth = natsAuthOf(url, env);
  const tls = natsTlsOf(url, env);
  if (tls !== undefined) await checkReadable(tls);
  let extra: Partial<NodeConnectionOptions> = {};
  if (auth.kind === "user") extra = { user: auth.user, pass: auth.pass };
  if (auth.kind === "creds") {
    let bytes: Uint8Array;
    try {
      bytes = await readFile(auth.file);
    } catch (e) {
      throw new NatsCredentialsError(`cannot read the NATS credentials file ${auth.file}: ${(e as Error).message}`, { cause: e });
    }
    extra = { authenticator: credsAuthenticator(bytes) };
  }
  try {
    return await connect({ ...natsConnectOptions(url), ...extra, ...(tls === undefined ? {} : { tls: { ...tls } }), name, maxReconnectAttempts: -1, reconnectTimeWait: 250, timeout: 5000 });
  } catch (e) {
    throw new NatsUnreachableError(`cannot connect to NATS at ${redactNatsUrl(url)}: ${(e as Error).message}`, { cause: e });
  }
}

/**
 * The NATS URL a command uses: the one given (`--nats`), else `$EDDY_NATS_URL`, else `$NATS_URL`
 * (the `nats` CLI's), else the local default.
 */
export function natsUrlOf(url: string | undefined, env: Env = process.env): string {
  return set(url) ?? set(env.EDDY_NATS_URL) ?? set(env.NATS_URL) ?? "nats://127.0.0.1:4222";
}

/** Runs `f` with a connection to `natsUrlOf(url)`, closed afterwards (what one-shot commands need). */
export async function withNats<T>(url: string | undefined, f: (nc: NatsConnection) => Promise<T>, name = "eddy-cli"): Promise<T> {
  const nc = await connectNats(natsUrlOf(url), name);
  try {
    return await f(nc);
  } finally {
    await nc.close();
  }
}
