import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

export interface Certificates {
  /** The directory holding every file below, as FILE.pem paths. */
  dir: string;
  path(name: CertificateName): string;
  pem(name: CertificateName): string;
}

export type CertificateName = "ca" | "server" | "server-key" | "client" | "client-key" | "rogue-client" | "rogue-client-key";

let made: Certificates | undefined;

/**
 * A CA, a server certificate for localhost and 127.0.0.1 signed by it, a
 * client certificate signed by it, and a client certificate signed by
 * another CA the server does not trust: made once per test run with the
 * openssl command, in a temporary directory.
 */
export function certificates(): Certificates {
  if (made) return made;
  const dir = mkdtempSync(join(tmpdir(), "llmcache-tls-"));
  const file = (name: string) => join(dir, `${name}.pem`);
  const openssl = (...args: string[]) => execFileSync("openssl", args, { cwd: dir, stdio: ["ignore", "ignore", "pipe"] });
  const key = (name: string) => openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", file(name));
  const authority = (name: string, subject: string) => {
    key(`${name}-key`);
    openssl("req", "-x509", "-new", "-key", file(`${name}-key`), "-out", file(name), "-days", "2", "-subj", subject);
  };
  const signed = (name: string, ca: string, subject: string, extensions: string) => {
    key(`${name}-key`);
    openssl("req", "-new", "-key", file(`${name}-key`), "-out", join(dir, `${name}.csr`), "-subj", subject);
    writeFileSync(join(dir, `${name}.ext`), extensions);
    openssl("x509", "-req", "-in", join(dir, `${name}.csr`), "-CA", file(ca), "-CAkey", file(`${ca}-key`), "-CAcreateserial",
      "-out", file(name), "-days", "2", "-extfile", join(dir, `${name}.ext`));
  };
  authority("ca", "/CN=llmcache test CA");
  authority("rogue-ca", "/CN=someone else's CA");
  signed("server", "ca", "/CN=localhost", "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n");
  signed("client", "ca", "/CN=trusted client", "extendedKeyUsage=clientAuth\n");
  signed("rogue-client", "rogue-ca", "/CN=untrusted client", "extendedKeyUsage=clientAuth\n");
  made = { dir, path: file, pem: (name) => readFileSync(file(name), "utf8") };
  return made;
}
