/**
 * Integration-test fixture: a throwaway certificate authority made with `openssl`, with a server
 * certificate for 127.0.0.1/localhost and a client certificate, and the nats-server `tls { }`
 * block that uses them. Node's X509Certificate only reads certificates, hence the openssl binary
 * (Debian ships it; a missing one fails the test with openssl's own error, not a skip).
 */
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

/** PEM files of a test CA and the certificates it signed; `dispose` removes them. */
export interface TestCa extends Disposable {
  readonly dir: string;
  readonly ca: string;
  readonly serverCert: string;
  readonly serverKey: string;
  readonly clientCert: string;
  readonly clientKey: string;
  /** A certificate and key signed by another CA, which the server must not accept. */
  readonly strangerCert: string;
  readonly strangerKey: string;
}

const openssl = (args: readonly string[], cwd: string) => execFileSync("openssl", args, { cwd, stdio: ["ignore", "ignore", "pipe"] });

function makeCa(dir: string, name: string): void {
  openssl(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", `/CN=${name}`, "-keyout", `${name}-key.pem`, "-out", `${name}.pem`], dir);
}

function sign(dir: string, ca: string, name: string, ext: string): void {
  openssl(["req", "-newkey", "rsa:2048", "-nodes", "-subj", `/CN=${name}`, "-keyout", `${name}-key.pem`, "-out", `${name}.csr`], dir);
  openssl(["x509", "-req", "-in", `${name}.csr`, "-CA", `${ca}.pem`, "-CAkey", `${ca}-key.pem`, "-CAcreateserial", "-days", "2", "-extfile", ext, "-out", `${name}.pem`], dir);
}

/** Makes a CA, a server certificate (127.0.0.1, localhost), a client certificate and a stranger's. */
export function makeTestCa(): TestCa {
  const dir = mkdtempSync(join(tmpdir(), "eddy-tls-"));
  try {
    const ext = (name: string, body: string) => {
      execFileSync("sh", ["-c", `cat > ${name}`], { cwd: dir, input: body });
      return name;
    };
    makeCa(dir, "ca");
    makeCa(dir, "other-ca");
    sign(dir, "ca", "server", ext("server.ext", "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n"));
    sign(dir, "ca", "client", ext("client.ext", "extendedKeyUsage=clientAuth\n"));
    sign(dir, "other-ca", "stranger", "client.ext");
  } catch (e) {
    rmSync(dir, { recursive: true, force: true });
    throw e;
  }
  const f = (n: string) => join(dir, n);
  return {
    dir,
    ca: f("ca.pem"),
    serverCert: f("server.pem"),
    serverKey: f("server-key.pem"),
    clientCert: f("client.pem"),
    clientKey: f("client-key.pem"),
    strangerCert: f("stranger.pem"),
    strangerKey: f("stranger-key.pem"),
    [Symbol.dispose]: () => rmSync(dir, { recursive: true, force: true }),
  };
}
