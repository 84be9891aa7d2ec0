/**
 * Specification of the local nats-server fixture against a real nats-server: free port,
 * JetStream on, restart keeps data, stop really ends the process and cleans up, configText applies.
 */
import { existsSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { jetstream, jetstreamManager, StorageType } from "@nats-io/jetstream";
import { describe, expect, it } from "vitest";
import {
  findNatsServerBinary,
  NatsServerMissingError,
  NatsServerStartError,
  requireNatsServerBinary,
  startLocalNatsServer,
} from "../../runtime/nats/local-server.ts";
import { connect, natsServer } from "../support/nats-server.ts";

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

describe("local nats-server", () => {
  it("starts on a free 127.0.0.1 port with JetStream enabled", async () => {
    await using server = await natsServer();
    expect(server.port).toBeGreaterThan(0);
    expect(server.url).toBe(`nats://127.0.0.1:${server.port}`);
    expect(isAlive(server.pid)).toBe(true);

    await using nc = await connect(server);
    const jsm = await jetstreamManager(nc);
    await jsm.streams.add({ name: "T", subjects: ["t.>"] });
    const ack = await jetstream(nc).publish("t.one", "hello");
    expect(ack.stream).toBe("T");
    expect(ack.seq).toBe(1);
    const stored = await jsm.streams.getMessage("T", { seq: 1 });
    expect(stored?.string()).toBe("hello");
  });

  it("uses the requested port", async () => {
    const probe = await natsServer();
    const port = probe.port;
    await probe.stop(); // frees a port we know is usable
    await using server = await natsServer({ port });
    expect(server.port).toBe(port);
    await using nc = await connect(server);
    await nc.flush();
  });

  it("keeps JetStream data across restart()", async () => {
    await using server = await natsServer();
    const pidBefore = server.pid;
    {
      await using nc = await connect(server);
      const jsm = await jetstreamManager(nc);
      await jsm.streams.add({ name: "KEEP", subjects: ["keep.>"] });
      await jetstream(nc).publish("keep.a", "persisted");
    }
    await server.restart();
    expect(server.pid).not.toBe(pidBefore);
    expect(isAlive(pidBefore)).toBe(false);

    await using nc = await connect(server);
    const jsm = await jetstreamManager(nc);
    const info = await jsm.streams.info("KEEP");
    expect(info.state.messages).toBe(1);
    expect((await jsm.streams.getMessage("KEEP", { seq: 1 }))?.string()).toBe("persisted");
  });

  it("keeps JetStream data across kill() + restart()", async () => {
    await using server = await natsServer();
    {
      await using nc = await connect(server);
      const jsm = await jetstreamManager(nc);
      await jsm.streams.add({ name: "CHAOS", subjects: ["chaos.>"] });
      await jetstream(nc).publish("chaos.a", "survives");
    }
    const pid = server.pid;
    await server.kill();
    expect(isAlive(pid)).toBe(false);
    await server.restart();
    await using nc = await connect(server);
    const jsm = await jetstreamManager(nc);
    expect((await jsm.streams.getMessage("CHAOS", { seq: 1 }))?.string()).toBe("survives");
  });

  it("stop() terminates the process, removes the temp store dir and is idempotent", async () => {
    const server = await natsServer();
    const { pid, storeDir } = server;
    expect(existsSync(storeDir)).toBe(true);
    await Promise.all([server.stop(), server.stop()]);
    await server.stop();
    expect(() => process.kill(pid, 0)).toThrow();
    expect(existsSync(storeDir)).toBe(false);
    await expect(server.restart()).rejects.toThrow(/stopped/);
  });

  it("never removes a caller-supplied store dir", async () => {
    const dir = await mkdtemp(join(tmpdir(), "eddy-test-store-"));
    try {
      const server = await natsServer({ storeDir: dir });
      expect(server.storeDir).toBe(dir);
      await server.stop();
      expect(existsSync(join(dir, "jetstream"))).toBe(true);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it("applies configText (a subject mapping) together with JetStream", async () => {
    await using server = await natsServer({
      configText: `mappings = { "in.*": "out.{{wildcard(1)}}" }`,
      jetstreamMaxMemory: "64MB",
    });
    await using nc = await connect(server);
    const sub = nc.subscribe("out.>", { max: 1 });
    await nc.flush();
    nc.publish("in.x", "mapped");
    for await (const m of sub) {
      expect(m.subject).toBe("out.x");
      expect(m.string()).toBe("mapped");
    }
    // The server-wide memory limit is not in the account info; a stream asking for more than it fails.
    const jsm = await jetstreamManager(nc);
    await expect(
      jsm.streams.add({ name: "BIG", subjects: ["big.>"], storage: StorageType.Memory, max_bytes: 128 * 1024 * 1024 }),
    ).rejects.toThrow(/insufficient memory resources/i);
    await jsm.streams.add({ name: "SMALL", subjects: ["small.>"], storage: StorageType.Memory, max_bytes: 32 * 1024 * 1024 });
  });

  it("refuses a requested port another process listens on, instead of taking that listener for the server", async () => {
    // What a port picked free and taken by someone else before the bind looks like: the port
    // accepts connections, but not this server's.
    await using other = await natsServer();
    const err = await startLocalNatsServer({ port: other.port }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(NatsServerStartError);
    expect((err as NatsServerStartError).message).toMatch(/address already in use/);
    await using nc = await connect(other);
    await nc.flush();
  });

  it("is ready when its listener is bound, also with the log sent to a file", async () => {
    const dir = await mkdtemp(join(tmpdir(), "eddy-log-"));
    try {
      await using server = await natsServer({ configText: `log_file: "${join(dir, "nats.log")}"` });
      await using nc = await connect(server);
      await jetstreamManager(nc).then((jsm) => jsm.getAccountInfo());
      expect(server.describe()).toMatch(new RegExp(`^nats-server pid ${server.pid} on port ${server.port}: running`));
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it("describes how a killed server ended, with the last lines it logged", async () => {
    await using server = await natsServer();
    await server.kill();
    expect(server.describe()).toMatch(/: exited \(code null, signal SIGKILL\)\n.*Server is ready/s);
  });

  it("fails with the server's stderr when the config is invalid", async () => {
    const err = await startLocalNatsServer({ configText: "this is { not valid" }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(NatsServerStartError);
    expect((err as NatsServerStartError).message).toMatch(/nats-server stderr/);
  });

  it("reports a missing binary with install instructions", () => {
    const env = { PATH: "", NATS_SERVER_BIN: "/nonexistent/nats-server" };
    expect(findNatsServerBinary(env)).toBeUndefined();
    expect(() => requireNatsServerBinary(env)).toThrow(NatsServerMissingError);
    expect(() => requireNatsServerBinary(env)).toThrow(/apt-get install -y nats-server/);
  });
});
