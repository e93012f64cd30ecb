import { createPrivateKey, X509Certificate, type KeyObject } from "node:crypto";
import { readSettingFile, UsageError, type Setting } from "./settings.js";

/** A PEM file named by a setting, as read. */
export interface PemFile {
  setting: Setting;
  pem: Buffer;
}

export function readPemFile(setting: Setting): PemFile {
  return { setting, pem: readSettingFile(setting) };
}

/**
 * Checks TLS files before they are used: one that holds no certificate (or
 * no key), or a key that is not the certificate's, is a usage error naming
 * its setting. Left to grpc-js, the server fails to listen with OpenSSL's
 * words ("PEM routines::no start line") and no flag, and a client fails
 * its first call.
 */
export function checkTlsFiles(files: { cert?: PemFile; key?: PemFile; ca?: PemFile }): void {
  const { cert, key, ca } = files;
  const certificate = cert && certificateIn(cert);
  const privateKey = key && keyIn(key);
  if (ca) certificateIn(ca);
  if (certificate && privateKey && !certificate.checkPrivateKey(privateKey)) {
    throw new UsageError(`${named(key!)} is not the key of ${named(cert!)}`);
  }
}

function certificateIn(file: PemFile): X509Certificate {
  try {
    if (!isPem(file.pem)) throw new Error("not PEM");
    return new X509Certificate(file.pem);
  } catch {
    throw new UsageError(`${named(file)} holds no PEM certificate`);
  }
}

function keyIn(file: PemFile): KeyObject {
  try {
    if (!isPem(file.pem)) throw new Error("not PEM");
    return createPrivateKey(file.pem);
  } catch {
    throw new UsageError(`${named(file)} holds no PEM private key (without a passphrase)`);
  }
}

/** grpc-js takes PEM only, where node:crypto would take DER too. */
function isPem(bytes: Buffer): boolean {
  return bytes.includes("-----BEGIN ");
}

function named(file: PemFile): string {
  return `${file.setting.source} ${file.setting.raw}`;
}
