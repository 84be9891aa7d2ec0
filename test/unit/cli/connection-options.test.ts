/** Which NATS URL and identity a command uses, from flags, URL and environment (like the `nats` CLI). */
import { describe, expect, it } from "vitest";
import { natsAuthOf, natsTlsOf, NatsTlsConfigError, natsUrlOf } from "../../../runtime/nats/connection.ts";

describe("natsUrlOf", () => {
  const env = { EDDY_NATS_URL: "nats://eddy:4222", NATS_URL: "nats://nats:4222" };
  it("--nats first", () => expect(natsUrlOf("nats://flag:4222", env)).toBe("nats://flag:4222"));
  it("then EDDY_NATS_URL", () => expect(natsUrlOf(undefined, env)).toBe("nats://eddy:4222"));
  it("then NATS_URL", () => expect(natsUrlOf(undefined, { NATS_URL: "nats://nats:4222" })).toBe("nats://nats:4222"));
  it("then the local default", () => expect(natsUrlOf(undefined, {})).toBe("nats://127.0.0.1:4222"));
  it("an empty variable counts as unset", () => expect(natsUrlOf(undefined, { EDDY_NATS_URL: "", NATS_URL: "nats://nats:4222" })).toBe("nats://nats:4222"));
});

describe("natsAuthOf", () => {
  const env = { NATS_CREDS: "/etc/eddy.creds", NATS_USER: "u", NATS_PASSWORD: "p" };
  it("credentials in the URL win over the environment", () => {
    expect(natsAuthOf("nats://a:b@host:4222", env)).toEqual({ kind: "url" });
    expect(natsAuthOf("nats://token@host:4222", env)).toEqual({ kind: "url" });
  });
  it("then a credentials file", () => expect(natsAuthOf("nats://host:4222", env)).toEqual({ kind: "creds", file: "/etc/eddy.creds" }));
  it("then user and password", () => expect(natsAuthOf("nats://host:4222", { NATS_USER: "u", NATS_PASSWORD: "p" })).toEqual({ kind: "user", user: "u", pass: "p" }));
  it("a user without a password has an empty one", () => expect(natsAuthOf("nats://host:4222", { NATS_USER: "u" })).toEqual({ kind: "user", user: "u", pass: "" }));
  it("nothing: anonymous", () => expect(natsAuthOf("nats://host:4222", { NATS_PASSWORD: "p" })).toEqual({ kind: "none" }));
});

describe("natsTlsOf", () => {
  it("plain connections are allowed when nothing asks for TLS", () => expect(natsTlsOf("nats://host:4222", {})).toBeUndefined());
  it("a CA, certificate or key requires TLS with those files", () => {
    expect(natsTlsOf("nats://host:4222", { NATS_CA: "/ca.pem" })).toEqual({ caFile: "/ca.pem" });
    expect(natsTlsOf("nats://host:4222", { NATS_CA: "/ca.pem", NATS_CERT: "/c.pem", NATS_KEY: "/k.pem" })).toEqual({ caFile: "/ca.pem", certFile: "/c.pem", keyFile: "/k.pem" });
  });
  it("a tls:// URL requires TLS with the system's roots", () => expect(natsTlsOf("nats://a:4222, tls://b:4222", {})).toEqual({}));
  it("a certificate without its key, or a key without its certificate, is refused", () => {
    expect(() => natsTlsOf("nats://host:4222", { NATS_CERT: "/c.pem" })).toThrow(NatsTlsConfigError);
    expect(() => natsTlsOf("nats://host:4222", { NATS_KEY: "/k.pem" })).toThrow(/needs its certificate/);
  });
  it("an empty variable counts as unset", () => expect(natsTlsOf("nats://host:4222", { NATS_CA: "", NATS_CERT: "" })).toBeUndefined());
});
