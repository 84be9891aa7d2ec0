/**
 * TLS between eddy and NATS: against a nats-server that requires TLS and verifies client
 * certificates, with a CA the test makes, a job runs end to end — a worker process given
 * `--tls-ca/--tls-cert/--tls-key`, an in-process supervisor and client given `NATS_CA`,
 * `NATS_CERT`, `NATS_KEY` — while clients without the CA, without a client certificate or with a
 * certificate from another CA are turned away. A client configured for TLS also refuses a server
 * that does not offer it instead of falling back to plain text.
 */
import { describe, expect, it } from "vitest";
import { resolve } from "node:path";
import { deployModule } from "../../runtime/deploy/deploy.ts";
import { connectNats, NatsTlsConfigError, NatsUnreachableError, type NatsConnection } from "../../runtime/nats/connection.ts";
import { ensureStream, publishAll, readAll } from "../../runtime/nats/streams.ts";
import { startSupervisor, type StartedSupervisor } from "../../runtime/supervisor/supervisor.ts";
import { natsServer, tlsConfigText } from "../support/nats-server.ts";
import { startEddy, type EddyProcess } from "../support/processes.ts";
import { runEddy } from "../support/cli.ts";
import { makeTestCa } from "../support/tls.ts";
import { waitFor } from "../support/wait.ts";

const ROOT = resolve(import.meta.dirname, "../..");

describe("TLS", () => {
  it("runs a job against a nats-server that requires TLS and client certificates, and turns everyone else away", async () => {
    using ca = makeTestCa();
    await using server = await natsServer({ configText: tlsConfigText(ca, { verifyClients: true }) });
    const tlsEnv = { NATS_CA: ca.ca, NATS_CERT: ca.clientCert, NATS_KEY: ca.clientKey };

    // Without TLS settings the server's certificate cannot be verified; without a client
    // certificate, or with one of another CA, the server refuses the client.
    await expect(connectNats(server.url, "tls-test-plain", {})).rejects.toThrow(NatsUnreachableError);
    await expect(connectNats(server.url, "tls-test-no-cert", { NATS_CA: ca.ca })).rejects.toThrow(NatsUnreachableError);
    await expect(connectNats(server.url, "tls-test-stranger", { NATS_CA: ca.ca, NATS_CERT: ca.strangerCert, NATS_KEY: ca.strangerKey })).rejects.toThrow(NatsUnreachableError);
    // Settings that cannot work are named before any connection is tried.
    await expect(connectNats(server.url, "tls-test-half", { NATS_CA: ca.ca, NATS_CERT: ca.clientCert })).rejects.toThrow(NatsTlsConfigError);
    await expect(connectNats(server.url, "tls-test-missing", { NATS_CA: `${ca.dir}/nope.pem` })).rejects.toThrow(/cannot read the TLS CA file .*nope\.pem/);

    const open: NatsConnection[] = [];
    let supervisor: StartedSupervisor | undefined;
    let worker: EddyProcess | undefined;
    try {
      const nc = await connectNats(server.url, "tls-test-admin", tlsEnv);
      open.push(nc);
      await ensureStream(nc, "COUNTER_IN", ["counter.in"]);
      await ensureStream(nc, "COUNTER_OUT", ["counter.out"]);
      await deployModule(nc, resolve(ROOT, "test/fixtures/counter.ts"));
      const supNc = await connectNats(server.url, "tls-test-supervisor", tlsEnv);
      open.push(supNc);
      supervisor = await startSupervisor(supNc, { checkpointIntervalMs: 300 });
      worker = startEddy(["worker", "--nats", server.url, "--tls-ca", ca.ca, "--tls-cert", ca.clientCert, "--tls-key", ca.clientKey]);
      await publishAll(nc, ["ann", "bob", "ann"].map((user) => ({ subject: "counter.in", data: JSON.stringify({ user }) })));
      const out = await waitFor("three totals", async () => {
        const o = (await readAll(nc, "COUNTER_OUT")).map((m) => JSON.parse(new TextDecoder().decode(m.data)) as { user: string; n: number });
        return o.length >= 3 && o;
      }, { timeoutMs: 30_000, logs: () => worker?.output() ?? "" });
      expect(out.map((t) => `${t.user}:${t.n}`).sort()).toEqual(["ann:1", "ann:2", "bob:1"]);

      // The CLI reads the same settings from the environment (as the nats CLI does)...
      const ls = await runEddy(["ls", "--nats", server.url], { env: tlsEnv });
      expect(ls.code, ls.stderr).toBe(0);
      expect(ls.stdout).toMatch(/counter\s+1\s+sha256-/);
      // ...and without them it cannot connect.
      const plain = await runEddy(["ls", "--nats", server.url], { env: { NATS_CA: undefined, NATS_CERT: undefined, NATS_KEY: undefined } });
      expect(plain.code).toBe(1);
      expect(plain.stderr).toMatch(/^eddy: cannot connect to NATS/);
    } finally {
      await worker?.kill();
      await supervisor?.stop();
      for (const c of open.reverse()) await c.close();
    }
  }, 90_000);

  it("refuses a server without TLS when TLS is configured, instead of talking in plain text", async () => {
    using ca = makeTestCa();
    await using server = await natsServer();
    await expect(connectNats(server.url, "tls-test-downgrade", { NATS_CA: ca.ca })).rejects.toThrow(/does not support 'tls'/);
    await expect(connectNats(server.url.replace("nats://", "tls://"), "tls-test-downgrade-url", {})).rejects.toThrow(/does not support 'tls'/);
    // Unconfigured, the same server is fine.
    const nc = await connectNats(server.url, "tls-test-plain-ok", {});
    await nc.close();
  }, 30_000);
});
