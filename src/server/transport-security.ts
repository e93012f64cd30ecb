import { ServerCredentials } from "@grpc/grpc-js";
import { isIP } from "node:net";

/** PEM contents, not paths: the command line reads the files. */
export interface TlsSettings {
  cert: Buffer;
  key: Buffer;
  /** Set to require client certificates signed by this CA (mutual TLS). */
  clientCa?: Buffer;
}

/** A setting that would expose the cache, or cannot work: the server does not start. */
export class ServerSetupError extends Error {
  override readonly name: string = "ServerSetupError";
}

/** The settings would expose the cache beyond this machine (see checkExposure). */
export class UnsafeExposureError extends ServerSetupError {
  override readonly name: string = "UnsafeExposureError";
}

export function serverCredentials(tls: TlsSettings | undefined): ServerCredentials {
  if (!tls) return ServerCredentials.createInsecure();
  return ServerCredentials.createSsl(tls.clientCa ?? null, [{ private_key: tls.key, cert_chain: tls.cert }], tls.clientCa !== undefined);
}

/**
 * Refuses to listen beyond this machine without both TLS and a way to tell
 * callers apart (tokens or client certificates), unless the operator says
 * --insecure. On a loopback address plain text is fine: only this machine
 * can reach it.
 */
export function checkExposure(options: { host: string; tls: TlsSettings | undefined; tokens: boolean; insecure: boolean }): void {
  if (options.insecure || isLoopback(options.host)) return;
  const missing = [!options.tls && "TLS", !options.tokens && !options.tls?.clientCa && "authentication"].filter(Boolean);
  if (missing.length === 0) return;
  throw new UnsafeExposureError(
    `refusing to listen on ${options.host} without ${missing.join(" and ")}: give --tls-cert and --tls-key, ` +
      "with --auth-file or --tls-client-ca, or --insecure to accept that anyone who can reach the port can use the cache",
  );
}

export function isLoopback(host: string): boolean {
  const bare = host.replace(/^\[(.*)\]$/, "$1");
  if (bare === "localhost") return true;
  if (isIP(bare) === 4) return bare.startsWith("127.");
  return bare === "::1" || bare === "0:0:0:0:0:0:0:1";
}
