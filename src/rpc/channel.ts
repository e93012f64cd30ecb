import { Client, credentials, Metadata, type ChannelOptions } from "@grpc/grpc-js";
import { isIP } from "node:net";

/** TLS as the client sees it: PEM text. */
export interface ClientTls {
  /** The CA that signs the server's certificate. Default: the system's roots. */
  ca?: string;
  /** The client's own certificate and key, for a server that requires them (mutual TLS). */
  cert?: string;
  key?: string;
  /** The name to expect in the server's certificate, when it is not the address's host. */
  serverName?: string;
}

/**
 * How to reach a server. Plain data, so that the worker thread behind the
 * blocking methods can open its own channel from the same settings.
 */
export interface ChannelSettings {
  /**
   * host:port, e.g. "127.0.0.1:50051" or "[::1]:50051". A DNS name with
   * several A/AAAA records is several servers: the channel spreads its calls
   * over them, round robin.
   */
  address: string;
  /** Sent as "authorization: Bearer <token>" with every call. */
  token?: string;
  /** Use TLS; absent: plain text. */
  tls?: ClientTls;
}

const ROUND_ROBIN = JSON.stringify({ loadBalancingConfig: [{ round_robin: {} }] });

export function openChannel(settings: ChannelSettings): Client {
  const options: ChannelOptions = {
    // HTTP/2's default 64 KiB receive window let ~120 hits of 500 B arrive per
    // round trip and left both ends idle half the time; 16 MiB lifted lookups
    // with 64 callers from 84k to 97k a second and batches from 73k to 85k keys.
    "grpc-node.flow_control_window": 16 * 1024 * 1024,
    // grpc-js keeps every message of a call for a possible retry until the
    // call commits; the calls here are never retried by grpc-js.
    "grpc.enable_retries": 0,
    // The server bounds its replies (--max-reply-bytes, 16 MiB by default);
    // grpc-js's own bound of 4 MiB would fail lookups that server may answer.
    "grpc.max_receive_message_length": -1,
    // After a cache server restarts, clients should be back within seconds,
    // not after grpc-js's default of up to two minutes between attempts.
    "grpc.max_reconnect_backoff_ms": 5_000,
  };
  // grpc-js's default, pick_first, sends every call to the first address a
  // name resolves to; round_robin keeps a connection to each and takes turns.
  // An IP address is one server, where round_robin would only add its eager
  // reconnecting: after a server went away, it keeps retrying with backoff,
  // so a server back on the same port is only reached at the next attempt
  // (up to 5 s), where pick_first connects at the next call.
  if (isHostName(settings.address)) options["grpc.service_config"] = ROUND_ROBIN;
  const tls = settings.tls;
  if (tls?.serverName) options["grpc.ssl_target_name_override"] = tls.serverName;
  const channelCredentials = tls
    ? credentials.createSsl(pem(tls.ca), pem(tls.key), pem(tls.cert))
    : credentials.createInsecure();
  return new Client(settings.address, channelCredentials, options);
}

/**
 * Whether a bearer token can travel in a header: HTTP/2 carries only
 * visible ASCII there, and a space would split "Bearer <token>". grpc-js
 * refuses anything else only when a call starts, with an error that is
 * not the call's.
 */
export function isSendableToken(token: string): boolean {
  return SENDABLE_TOKEN.test(token);
}

const SENDABLE_TOKEN = /^[\x21-\x7e]+$/;

/**
 * The metadata of one call. The token goes in the call's metadata rather
 * than in call credentials, which grpc-js sends only over TLS: a token to a
 * server on loopback in plain text is a supported setup.
 */
export function callMetadata(settings: ChannelSettings): Metadata {
  const metadata = new Metadata();
  if (settings.token !== undefined) metadata.set("authorization", `Bearer ${settings.token}`);
  return metadata;
}

/** Whether the address's host is a name (which DNS may resolve to several servers), not an IP address or a unix: socket. */
function isHostName(address: string): boolean {
  if (address.startsWith("dns:")) return true;
  if (address.startsWith("unix:") || address.startsWith("[")) return false;
  const colon = address.lastIndexOf(":");
  return isIP(colon < 0 ? address : address.slice(0, colon)) === 0;
}

function pem(text: string | undefined): Buffer | null {
  return text === undefined ? null : Buffer.from(text);
}
