import { Server } from "@grpc/grpc-js";
import { CacheService } from "../../gen/llmcache/v1/cache_pb.js";
import type { CacheBackend } from "../engine/cache-backend.js";
import { CacheStore, type StoreOptions } from "../engine/cache-store.js";
import { LeaseTable, type WaiterLimits } from "../engine/leases.js";
import { LocalBackend } from "../engine/local-backend.js";
import { reclaimInBackground } from "../engine/reclaimer.js";
import { SegmentIndex } from "../engine/segment-index.js";
import { CacheError } from "../rpc/errors.js";
import { byteServiceDefinition } from "../rpc/service-definition.js";
import { Authenticator } from "./auth/authenticator.js";
import { callTracking } from "./call-tracking.js";
import { cacheServiceHandlers } from "./cache-service.js";
import { Connections, DEFAULT_CONNECTION_LIMITS, type ConnectionLimits } from "./connections.js";
import type { StoredGenerations } from "../rpc/codec/generations.js";
import { asKeyBytes } from "../rpc/key-bytes.js";
import { parseStoreUrl, type StoreLocation } from "../redis/store-url.js";
import { addIntrospection } from "./introspection.js";
import { createLogger, type Logger } from "./logger.js";
import { throttledLog } from "./log-throttle.js";
import type { CallObserver, OpenStream } from "./method-handlers.js";
import type { ServerMetrics } from "./metrics.js";
import { DEFAULT_REQUEST_LIMITS, type RequestLimits } from "./request-limits.js";
import { loadSnapshot, prepareSnapshotDirectory, writeSnapshot } from "./snapshot.js";
import { checkExposure, serverCredentials, ServerSetupError, type TlsSettings } from "./transport-security.js";

/**
 * Where to listen, how to let callers in, the cache's limits and policy
 * (see CacheStore), and what to keep and show. With none of the cache
 * settings given, LangChain's InMemoryCache with no size limit.
 */
export interface ServerOptions extends Omit<StoreOptions, "now"> {
  /**
   * Where the entries live: "memory" (the default, this process), or
   * redis://HOST:PORT[/DB], rediss://... (TLS) or
   * redis-cluster://HOST:PORT,HOST:PORT,... shared by many servers.
   */
  store?: string;
  /**
   * With a Redis store: keep entries read lately in this process too, up to
   * this many bytes, each dropped as soon as Redis reports it changed (see
   * redis/near-cache.ts). Refused with the memory store.
   */
  nearCacheBytes?: number;
  /** Address to listen on. Default 127.0.0.1. */
  host?: string;
  /** Port to listen on; 0 picks a free one. Default 50051. */
  port?: number;
  /** Serve over TLS, and with clientCa require client certificates. */
  tls?: TlsSettings;
  /** A YAML or JSON file of bearer tokens and their rights (see TokenFile); reloadAuth() reads it again. */
  authFile?: string;
  /** Allow listening beyond loopback without TLS and authentication. */
  insecure?: boolean;
  /** Limits on what one request may carry; each defaults to DEFAULT_REQUEST_LIMITS's. */
  requestLimits?: Partial<RequestLimits>;
  /** Largest request message, in bytes. Default 4 MiB. */
  maxMessageBytes?: number;
  /** Most lookups waiting for leases' fills, in all and per pair (see LeaseTable). Default DEFAULT_WAITER_LIMITS. */
  leaseWaiters?: Partial<WaiterLimits>;
  /** Most calls at once on one connection. Default 1000. */
  maxConcurrentStreams?: number;
  /** Bounds on connections: count, handshake and idle timeouts, unread reply bytes (see ConnectionLimits). */
  connectionLimits?: Partial<ConnectionLimits>;
  /** Ping a connection idle this long, in ms. Default 2 hours. */
  keepaliveTimeMs?: number;
  /** Close a connection whose ping goes unanswered this long, in ms. Default 20 s. */
  keepaliveTimeoutMs?: number;
  /** Serve Prometheus metrics at http://host:metricsPort/metrics (0 picks a port). Default: none. */
  metricsPort?: number;
  /** Keep the cache in this file across restarts (see snapshot.ts). Default: none. */
  snapshotPath?: string;
  /** How often to write the snapshot, in ms. Default 5 minutes; it is always written on shutdown. */
  snapshotIntervalMs?: number;
  /** How often to look for expired entries, in ms. Default 100. */
  reclaimIntervalMs?: number;
  /** Where the server logs (pino). Default: nothing. */
  logger?: Logger;
}

export interface RunningServer {
  readonly host: string;
  /** The port actually bound, also when 0 was asked for. */
  readonly port: number;
  /** host:port, ready for a client (IPv6 hosts in brackets). */
  readonly address: string;
  /** The metrics port actually bound, if metrics are served. */
  readonly metricsPort: number | undefined;
  /** Reads the auth file again; returns how many tokens it holds. On failure the old tokens stay and this throws. */
  reloadAuth(): number;
  /** Writes the snapshot now, if there is a snapshot path. */
  snapshot(): Promise<void>;
  /**
   * Drains and stops: health turns NOT_SERVING, new calls are refused and
   * open streams ended after the message in hand; calls in flight get
   * `graceMs` to finish, then are cancelled; the snapshot is written last.
   */
  shutdown(graceMs?: number): Promise<void>;
}

export const DEFAULT_HOST = "127.0.0.1";
export const DEFAULT_PORT = 50051;
const DEFAULT_SHUTDOWN_GRACE_MS = 10_000;
const DEFAULT_SNAPSHOT_INTERVAL_MS = 5 * 60_000;
/** At most one log line per method and kind of unexpected failure this often; the line counts those left out. */
const FAILURE_LOG_INTERVAL_MS = 10_000;

export async function startServer(options: ServerOptions = {}): Promise<RunningServer> {
  const host = options.host ?? DEFAULT_HOST;
  const logger = options.logger ?? createLogger("silent");
  const authenticator = new Authenticator(options.authFile);
  checkExposure({ host, tls: options.tls, tokens: authenticator.enabled, insecure: options.insecure ?? false });

  const location = parseStoreUrl(options.store ?? "memory");
  if (location.kind === "memory" && options.nearCacheBytes !== undefined) {
    throw new StoreSettingError("--near-cache needs a Redis store (--store redis://... or redis-cluster://...): the memory store is near already");
  }
  const local = location.kind === "memory" ? await localBackend(options, logger) : undefined;
  const backend: CacheBackend<StoredGenerations> = local?.backend ?? (await redisBackend(location as RedisLocation, options, logger));
  // Kept only when served: otherwise prom-client would cost every call its
  // counting (6 µs a unary call in a profile) and sample the event loop and
  // GC, for nobody.
  const metrics = options.metricsPort === undefined ? undefined : new (await import("./metrics.js")).ServerMetrics(backend);
  const logFailure = throttledLog<{ path: string; error: unknown }>(
    ({ path, error }, suppressed) => logger.error({ err: error, method: path, suppressed }, "call failed"),
    ({ path, error }) => `${path} ${error instanceof Error ? error.name : typeof error}`,
    FAILURE_LOG_INTERVAL_MS,
  );
  const observer: CallObserver = {
    callEnded: (method, code, seconds) => metrics?.callEnded(method, code, seconds),
    failed: (path, error) => logFailure({ path, error }),
    operationEnded: metrics && ((operation, code) => metrics.operationEnded(operation, code)),
  };
  const streams = new Set<OpenStream>();
  let draining = false;
  const connections = new Connections({ ...DEFAULT_CONNECTION_LIMITS, ...options.connectionLimits });
  const server = new Server({
    "grpc.max_receive_message_length": options.maxMessageBytes ?? 4 * 1024 * 1024,
    "grpc.max_concurrent_streams": options.maxConcurrentStreams ?? 1000,
    "grpc.keepalive_time_ms": options.keepaliveTimeMs ?? 2 * 60 * 60_000,
    "grpc.keepalive_timeout_ms": options.keepaliveTimeoutMs ?? 20_000,
    interceptors: [callTracking(connections)],
  });
  const limits = { ...DEFAULT_REQUEST_LIMITS, ...options.requestLimits };
  server.addService(
    byteServiceDefinition(CacheService),
    cacheServiceHandlers(backend, limits, { authenticator, observer, streams, isDraining: () => draining }),
  );
  const health = addIntrospection(server);

  const requested = hostPort(host, options.port ?? DEFAULT_PORT);
  let port: number;
  try {
    port = await connections.listen(server, serverCredentials(options.tls), host, options.port ?? DEFAULT_PORT);
  } catch (error) {
    await backend.close();
    throw new ServerSetupError(`cannot listen on ${requested}: ${(error as Error).message}`, { cause: error });
  }
  const metricsServer = metrics === undefined || options.metricsPort === undefined ? undefined : await serveMetrics(metrics, host, options.metricsPort, () => {
          server.forceShutdown();
          connections.stopAccepting();
          connections.destroyAll();
        });

  const stopReclaiming = local ? reclaimInBackground(local.store, options.reclaimIntervalMs ?? 100) : () => {};
  let snapshotting: Promise<void> | undefined;
  const snapshot = async () => {
    if (!options.snapshotPath) return;
    // One at a time: a snapshot still being written when the next is due is the next.
    snapshotting ??= writeSnapshot(local!.store, options.snapshotPath)
      .then(
        (written) => {
          metrics?.snapshotWritten();
          health.setSnapshotsServing("SERVING");
          logger.info({ snapshot: options.snapshotPath, ...written }, "snapshot written");
        },
        (error: unknown) => {
          // The server still serves: only the snapshots' own health name turns.
          metrics?.snapshotFailed();
          health.setSnapshotsServing("NOT_SERVING");
          throw error;
        },
      )
      .finally(() => (snapshotting = undefined));
    return snapshotting;
  };
  const snapshotTimer = options.snapshotPath
    ? setInterval(() => snapshot().catch((error) => logger.error({ err: error }, "snapshot failed")), options.snapshotIntervalMs ?? DEFAULT_SNAPSHOT_INTERVAL_MS)
    : undefined;
  snapshotTimer?.unref();
  if (options.snapshotPath) health.setSnapshotsServing("SERVING"); // its directory was found writable at start

  // Served while the backend can reach its data (Redis may come and go); never again once draining.
  health.setServing(backend.available ? "SERVING" : "NOT_SERVING");
  backend.onAvailabilityChange((available) => {
    if (!draining) health.setServing(available ? "SERVING" : "NOT_SERVING");
  });
  logger.info({ address: hostPort(host, port), tls: Boolean(options.tls), mutualTls: Boolean(options.tls?.clientCa), tokens: authenticator.enabled, metricsPort: metricsServer?.port }, "serving");

  return {
    host,
    port,
    address: hostPort(host, port),
    metricsPort: metricsServer?.port,
    reloadAuth() {
      if (!authenticator.enabled) {
        logger.info("no auth file to reload: the server runs without tokens (--auth-file)");
        return 0;
      }
      const tokens = authenticator.reload();
      logger.info({ tokens }, "auth file reloaded");
      return tokens;
    },
    snapshot,
    async shutdown(graceMs = DEFAULT_SHUTDOWN_GRACE_MS) {
      draining = true;
      health.drain();
      logger.info({ openStreams: streams.size, leaseWaiters: backend.leaseWaiters }, "draining");
      // Lookups waiting for a fill would wait out the grace period: answer them now.
      backend.stopWaiting(new CacheError("UNAVAILABLE", "the server is shutting down; the lookup stopped waiting for the lease's fill"));
      // The server answers a stream's message as it arrives: one with no
      // answer owed has nothing in flight and can end now (the others, once
      // their waits' answers are written).
      for (const stream of streams) stream.drain();
      connections.stopAccepting();
      await stopServer(server, graceMs);
      connections.destroyAll();
      stopReclaiming();
      clearInterval(snapshotTimer);
      await snapshotting?.catch(() => {});
      await snapshot();
      await backend.close();
      await metricsServer?.close();
      logger.info("stopped");
    },
  };
}

/**
 * The store in this process's memory, restored from the snapshot if there
 * is one, with single flight's leases (which live in this process only:
 * they are not in the snapshot, and a restart ends them).
 */
async function localBackend(options: ServerOptions, logger: Logger) {
  // The store holds names and keys as their UTF-8 bytes (see rpc/key-bytes.ts), limits' names included.
  const namespaces = Object.fromEntries(Object.entries(options.namespaces ?? {}).map(([name, limits]) => [asKeyBytes(name), limits]));
  // Keys and values off the collected heap, so that the budget is what the process holds (see SegmentIndex).
  const store = new CacheStore<StoredGenerations>({ ...options, namespaces }, new SegmentIndex());
  if (options.snapshotPath) await restore(store, options.snapshotPath, logger);
  const leases = new LeaseTable({ ...options.leaseWaiters, count: (namespace, event) => store.countLease(namespace, event) });
  // The store lends its segments' bytes: a reply written after a wait gets a copy.
  return { store, backend: new LocalBackend(store, { leases, copyLent: (stored) => Buffer.from(stored) }) };
}

type RedisLocation = Exclude<StoreLocation, { kind: "memory" }>;

/** The cache in Redis, shared with every server that points at it, once the settings it cannot honour are refused. */
async function redisBackend(location: RedisLocation, options: ServerOptions, logger: Logger) {
  checkRedisOptions(options);
  const namespaceTtlMs = new Map<string, number>();
  for (const [name, limits] of Object.entries(options.namespaces ?? {})) {
    if (limits.defaultTtlMs != null) namespaceTtlMs.set(asKeyBytes(name), limits.defaultTtlMs);
  }
  // node-redis reports every failed reconnection: one line per kind of failure this often is enough.
  const logRedisError = throttledLog<unknown>(
    (error, suppressed) => logger.warn({ err: error, store: location.display, suppressed }, "Redis connection failed"),
    (error) => (error instanceof Error ? error.message : String(error)),
    FAILURE_LOG_INTERVAL_MS,
  );
  // Loaded only here: node-redis adds 12 MiB to the resident memory of every
  // process that loads it, a server on the memory store and a program that
  // imports this package for its client included.
  const { openRedisBackend } = await import("../redis/redis-backend.js");
  const backend = await openRedisBackend(
    location,
    { defaultTtlMs: options.defaultTtlMs ?? undefined, namespaceTtlMs, leaseWaiters: options.leaseWaiters, nearCacheBytes: options.nearCacheBytes },
    logRedisError,
  );
  logger.info({ store: location.display, nearCacheBytes: options.nearCacheBytes }, "entries live in Redis");
  const warning = await backend.memoryWarning().catch(() => undefined);
  if (warning) logger.warn({ store: location.display }, `Redis's memory is not bounded for a cache: ${warning}`);
  return backend;
}

/**
 * On Redis, memory is Redis's to bound (maxmemory and its policy) and
 * Redis keeps its own persistence: the settings that mean something only
 * for the store in this process are refused, each saying what to do
 * instead, rather than silently ignored.
 */
function checkRedisOptions(options: ServerOptions): void {
  const refuse = (setting: string, instead: string) => {
    throw new StoreSettingError(`${setting} does not apply to a Redis store: ${instead}`);
  };
  const bound = "bound memory on Redis with maxmemory and maxmemory-policy allkeys-lru (or allkeys-lfu)";
  if (options.maxsize != null) refuse("--maxsize", bound);
  if (options.maxBytes != null) refuse("--max-bytes", bound);
  if (options.policy != null) refuse("--policy", `Redis evicts by its maxmemory-policy; ${bound}`);
  for (const [name, limits] of Object.entries(options.namespaces ?? {})) {
    if (limits.maxsize != null || limits.maxBytes != null) refuse(`--namespace-limit ${name}`, `namespaces share Redis's memory; ${bound}, or give a namespace only default-ttl`);
  }
  if (options.maxNamespaces != null) refuse("--max-namespaces", "Redis holds any number of namespaces; bound its memory with maxmemory");
  if (options.snapshotPath) refuse("--snapshot", "Redis keeps its own persistence (RDB snapshots or the append-only file)");
}

/** A setting the chosen store cannot honour: the server refuses to start rather than ignore it. */
export class StoreSettingError extends ServerSetupError {
  override readonly name: string = "StoreSettingError";
}

/** Checks the snapshot's directory (throwing SnapshotSetupError), then loads the snapshot. */
async function restore(store: CacheStore<StoredGenerations>, path: string, logger: Logger): Promise<void> {
  const { removed } = await prepareSnapshotDirectory(path);
  if (removed.length > 0) logger.warn({ snapshot: path, removed }, "removed temporary files of interrupted snapshot writes");
  const loaded = await loadSnapshot(store, path);
  if (loaded.kind === "loaded") {
    const leftOut = loaded.tooLarge + loaded.tooManyNamespaces;
    if (leftOut > 0) logger.warn({ snapshot: path, ...loaded }, "snapshot loaded without the entries the store's limits now refuse");
    else logger.info({ snapshot: path, ...loaded }, "snapshot loaded");
  } else if (loaded.kind === "corrupt") {
    logger.error({ snapshot: path, problem: loaded.problem, movedTo: loaded.movedTo }, "snapshot unusable: set aside, starting empty");
  }
}

/** Serves the metrics, or stops the gRPC server already listening and says why it cannot. */
async function serveMetrics(metrics: ServerMetrics, host: string, port: number, stopServing: () => void) {
  try {
    return await metrics.serve(host, port);
  } catch (error) {
    stopServing();
    throw new ServerSetupError(`cannot serve metrics on ${hostPort(host, port)}: ${(error as Error).message}`, { cause: error });
  }
}

function stopServer(server: Server, graceMs: number): Promise<void> {
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
