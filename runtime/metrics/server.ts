/**
 * The HTTP endpoint of a worker or supervisor process: `/metrics` (Prometheus text),
 * `/healthz` (200 while the process is up) and any extra JSON routes (the supervisor's
 * `/scaling` for KEDA's metrics-api trigger). Port from `--metrics-port` or `EDDY_METRICS_PORT`;
 * off when neither is set, so several local processes do not compete for one port.
 */
import { createServer, type Server } from "node:http";

export interface MetricsServer {
  readonly port: number;
  close(): Promise<void>;
}

export function metricsPortFrom(flag: number | undefined): number | undefined {
  if (flag !== undefined) return flag;
  const env = process.env.EDDY_METRICS_PORT;
  return env === undefined || env === "" ? undefined : Number(env);
}

export async function startMetricsServer(
  port: number,
  metrics: () => Promise<string> | string,
  json: Readonly<Record<string, () => Promise<unknown> | unknown>> = {},
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
    server.listen(port, () => resolve());
  });
  const address = server.address();
  return {
    port: typeof address === "object" && address !== null ? address.port : port,
    close: () => new Promise<void>((r) => server.close(() => r())),
  };
}
