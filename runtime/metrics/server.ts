/**
 * The HTTP endpoint of a worker or supervisor process: `/metrics` (Prometheus text),
 * `/healthz` (200 while the process is up) and any extra JSON routes (the supervisor's
 * `/scaling` for KEDA's metrics-api trigger). Port from `--metrics-port` or `EDDY_METRICS_PORT`;
 * off when neither is set, so several local processes do not compete for one port. It listens on
 * 127.0.0.1 unless `--metrics-host` / `EDDY_METRICS_HOST` say otherwise: a laptop's metrics are not
 * for the network; containers (the image, the Kubernetes manifests) set 0.0.0.0.
 */
import { createServer, type Server } from "node:http";

export interface MetricsServer {
  readonly port: number;
  /** The address it listens on. */
  readonly host: string;
  close(): Promise<void>;
}

export function metricsPortFrom(flag: number | undefined): number | undefined {
  if (flag !== undefined) return flag;
  const env = process.env.EDDY_METRICS_PORT;
  return env === undefined || env === "" ? undefined : Number(env);
}

/** The address the endpoint listens on when nothing says otherwise. */
export const DEFAULT_METRICS_HOST = "127.0.0.1";

/** The bind address: the flag, else `$EDDY_METRICS_HOST`, else 127.0.0.1. */
export function metricsHostFrom(flag: string | undefined, env: Readonly<Record<string, string | undefined>> = process.env): string {
  if (flag !== undefined && flag !== "") return flag;
  const v = env.EDDY_METRICS_HOST;
  return v === undefined || v === "" ? DEFAULT_METRICS_HOST : v;
}

export async function startMetricsServer(
  port: number,
  metrics: () => Promise<string> | string,
  json: Readonly<Record<string, () => Promise<unknown> | unknown>> = {},
  host: string = metricsHostFrom(undefined),
): Promise<MetricsServer> {
  const server: Server = createServer((req, res) => {
    const path = (req.url ?? "/").split("?")[0]!;
    void (async () => {
      try {
        if (path === "/metrics") {
          res.writeHead(200, { "content-type": "text/plain; version=0.0.4" }).end(await metrics());
        } else if (path === "/healthz") {
          res.writeHead(200, { "content-type": "text/plain" }).end("ok\n");
        } else if (json[path] !== undefined) {
          res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify(await json[path]!()));
        } else {
          res.writeHead(404, { "content-type": "text/plain" }).end("not found\n");
        }
      } catch (e) {
        res.writeHead(500, { "content-type": "text/plain" }).end(`${(e as Error).message}\n`);
      }
    })();
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => resolve());
  });
  const address = server.address();
  return {
    port: typeof address === "object" && address !== null ? address.port : port,
    host,
    close: () => new Promise<void>((r) => server.close(() => r())),
  };
}
