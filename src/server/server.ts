import { Server, ServerCredentials } from "@grpc/grpc-js";
import { CacheService } from "../../gen/llmcache/v1/cache_pb.js";
import { CacheStore, type StoreOptions } from "../engine/cache-store.js";
import { reclaimInBackground } from "../engine/reclaimer.js";
import { byteServiceDefinition } from "../rpc/service-definition.js";
import { asKeyBytes, cacheServiceHandlers } from "./cache-service.js";

/**
 * Where to listen, and the cache's limits and policy (see CacheStore): with
 * none of those given, LangChain's InMemoryCache with no size limit.
 */
export interface ServerOptions extends Omit<StoreOptions, "now"> {
  /** Address to listen on. Default 127.0.0.1. */
  host?: string;
  /** Port to listen on; 0 picks a free one. Default 50051. */
  port?: number;
  /** How often to look for expired entries, in ms. Default 100. */
  reclaimIntervalMs?: number;
}

export interface RunningServer {
  readonly host: string;
  /** The port actually bound, also when 0 was asked for. */
  readonly port: number;
  /** host:port, ready for a client (IPv6 hosts in brackets). */
  readonly address: string;
  /**
   * Stops accepting calls and lets the calls in flight finish; those still
   * running after `graceMs` are cancelled.
   */
  shutdown(graceMs?: number): Promise<void>;
}

export const DEFAULT_HOST = "127.0.0.1";
export const DEFAULT_PORT = 50051;
const DEFAULT_SHUTDOWN_GRACE_MS = 10_000;

export async function startServer(options: ServerOptions = {}): Promise<RunningServer> {
  const host = options.host ?? DEFAULT_HOST;
  // The store holds names and keys as their UTF-8 bytes (see request-reader.ts), limits' names included.
  const namespaces = Object.fromEntries(Object.entries(options.namespaces ?? {}).map(([name, limits]) => [asKeyBytes(name), limits]));
  const store = new CacheStore<string>({ ...options, namespaces });
  const stopReclaiming = reclaimInBackground(store, options.reclaimIntervalMs ?? 100);
  const server = new Server();
  server.addService(byteServiceDefinition(CacheService), cacheServiceHandlers(store));

  const requested = hostPort(host, options.port ?? DEFAULT_PORT);
  const port = await new Promise<number>((resolve, reject) => {
    server.bindAsync(requested, ServerCredentials.createInsecure(), (error, bound) =>
      error ? reject(new Error(`cannot listen on ${requested}: ${error.message}`, { cause: error })) : resolve(bound),
    );
  });

  return {
    host,
    port,
    address: hostPort(host, port),
    shutdown: (graceMs = DEFAULT_SHUTDOWN_GRACE_MS) => {
      stopReclaiming();
      return shutdown(server, graceMs);
    },
  };
}

function shutdown(server: Server, graceMs: number): Promise<void> {
  return new Promise((resolve) => {
    const force = setTimeout(() => server.forceShutdown(), graceMs);
    server.tryShutdown(() => {
      clearTimeout(force);
      resolve();
    });
  });
}

export function hostPort(host: string, port: number): string {
  return host.includes(":") && !host.startsWith("[") ? `[${host}]:${port}` : `${host}:${port}`;
}
