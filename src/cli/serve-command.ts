import { logVerbosity, setLogVerbosity } from "@grpc/grpc-js";
import { parseArgs } from "node:util";
import { checkMaxsize, checkPolicy, type Limits } from "../engine/limits.js";
import { checkLogLevel, createLogger, dropLinesNoOneReads } from "../server/logger.js";
import { RedisRefusedError } from "../redis/redis-connection.js";
import { parseStoreUrl } from "../redis/store-url.js";
import { DEFAULT_HOST, DEFAULT_PORT, startServer, StoreSettingError, type ServerOptions } from "../server/server.js";
import { AuthFileError } from "../server/auth/token-file.js";
import { SnapshotSetupError } from "../server/snapshot.js";
import { UnsafeExposureError } from "../server/transport-security.js";
import { commandHelp, type FlagHelp } from "./help.js";
import { checkPort, envFlag, integerSetting, parsedSetting, parsingFlags, setting, UsageError, type Setting } from "./settings.js";
import { checkTlsFiles, readPemFile } from "./tls-files.js";
import { parseBytes, parseDuration, parseTimerDuration } from "./units.js";

const FLAGS = {
  store: { type: "string" },
  "near-cache": { type: "string" },
  host: { type: "string" },
  port: { type: "string" },
  maxsize: { type: "string" },
  "max-bytes": { type: "string" },
  "default-ttl": { type: "string" },
  policy: { type: "string" },
  "namespace-limit": { type: "string", multiple: true },
  "tls-cert": { type: "string" },
  "tls-key": { type: "string" },
  "tls-client-ca": { type: "string" },
  insecure: { type: "boolean" },
  "auth-file": { type: "string" },
  "metrics-port": { type: "string" },
  "log-level": { type: "string" },
  "max-message-bytes": { type: "string" },
  "max-prompt-bytes": { type: "string" },
  "max-llm-string-bytes": { type: "string" },
  "max-namespace-bytes": { type: "string" },
  "max-generations": { type: "string" },
  "max-concurrent-streams": { type: "string" },
  "max-reply-bytes": { type: "string" },
  "max-namespaces": { type: "string" },
  "max-lease-waiters": { type: "string" },
  "max-lease-waiters-per-pair": { type: "string" },
  "max-connections": { type: "string" },
  "handshake-timeout": { type: "string" },
  "idle-timeout": { type: "string" },
  "max-unread-bytes": { type: "string" },
  "max-unread-bytes-total": { type: "string" },
  "receive-window": { type: "string" },
  "keepalive-time": { type: "string" },
  "keepalive-timeout": { type: "string" },
  snapshot: { type: "string" },
  "snapshot-interval": { type: "string" },
  "shutdown-grace": { type: "string" },
} as const;

type Flag = Exclude<keyof typeof FLAGS, "namespace-limit" | "insecure">;

// The defaults are the server's (src/server); the README's table says the same.
const FLAG_HELP: Record<keyof typeof FLAGS, FlagHelp> = {
  store: {
    value: "URL",
    about: "where entries live: memory, redis://HOST:PORT[/DB], rediss://... (TLS) or redis-cluster://HOST:PORT,HOST:PORT,...",
    default: "memory",
  },
  "near-cache": {
    value: "SIZE",
    about: "with a Redis store, keep entries read lately in this process too, up to SIZE, dropped when they change anywhere",
    default: "none",
  },
  host: { value: "HOST", about: "address to listen on", default: "127.0.0.1" },
  port: { value: "PORT", about: "port to listen on; 0 picks a free one", default: "50051" },
  maxsize: { value: "N", about: "most entries held", default: "no limit" },
  "max-bytes": { value: "SIZE", about: "byte budget of the entries, such as 512MiB or 2GB", default: "no limit" },
  "default-ttl": { value: "DURATION", about: "how long entries live unless their update says", default: "for ever" },
  policy: { value: "fifo|lru", about: "evict first the oldest inserted, or the least recently used", default: "fifo" },
  "namespace-limit": { value: "NAME:LIMITS", about: "one namespace's maxsize=N,max-bytes=SIZE,default-ttl=DURATION; repeatable" },
  "tls-cert": { value: "FILE", about: "serve over TLS with this PEM certificate and --tls-key", default: "plain text" },
  "tls-key": { value: "FILE", about: "PEM private key of --tls-cert" },
  "tls-client-ca": { value: "FILE", about: "PEM CA: require client certificates it signed (mutual TLS)" },
  insecure: { about: "allow listening beyond loopback without TLS and authentication" },
  "auth-file": { value: "FILE", about: "YAML or JSON file of tokens and their rights", default: "every call has every right" },
  "metrics-port": { value: "PORT", about: "serve Prometheus metrics at /metrics on this port; 0 picks one", default: "none" },
  "log-level": { value: "LEVEL", about: "fatal, error, warn, info, debug, trace or silent (JSON lines, stderr)", default: "info" },
  "max-message-bytes": { value: "SIZE", about: "largest request message", default: "4MiB" },
  "max-prompt-bytes": { value: "SIZE", about: "longest prompt", default: "2MiB" },
  "max-llm-string-bytes": { value: "SIZE", about: "longest llm_string", default: "256KiB" },
  "max-namespace-bytes": { value: "SIZE", about: "longest namespace name", default: "256" },
  "max-generations": { value: "N", about: "most generations in one entry", default: "1000" },
  "max-concurrent-streams": { value: "N", about: "most calls at once on one connection", default: "1000" },
  "max-reply-bytes": { value: "SIZE", about: "largest reply message", default: "16MiB" },
  "max-namespaces": { value: "N", about: "most namespaces holding entries at once", default: "10000" },
  "max-lease-waiters": { value: "N", about: "most lookups waiting for a lease's fill at once", default: "10000" },
  "max-lease-waiters-per-pair": { value: "N", about: "most lookups waiting for one pair's fill at once", default: "1000" },
  "max-connections": { value: "N", about: "most connections open at once", default: "4096" },
  "handshake-timeout": { value: "DURATION", about: "how long a new connection may take to start its first call", default: "10s" },
  "idle-timeout": { value: "DURATION", about: "how long a connection may stay open with no call in flight", default: "5m" },
  "max-unread-bytes": { value: "SIZE", about: "reply bytes one connection may leave unread", default: "64MiB" },
  "max-unread-bytes-total": { value: "SIZE", about: "reply bytes all connections together may leave unread", default: "256MiB" },
  "receive-window": { value: "SIZE", about: "request bytes a client may send on a connection (and on each call) before the server reads them", default: "4MiB" },
  "keepalive-time": { value: "DURATION", about: "ping a connection idle this long", default: "2h" },
  "keepalive-timeout": { value: "DURATION", about: "drop a connection whose ping is not answered within this", default: "20s" },
  snapshot: { value: "FILE", about: "file to keep the cache in across restarts", default: "none" },
  "snapshot-interval": { value: "DURATION", about: "how often to write the snapshot; it is also written on shutdown", default: "5m" },
  "shutdown-grace": { value: "DURATION", about: "how long calls in flight may take to finish on SIGTERM", default: "10s" },
};

export const serveHelp = commandHelp({
  usage: "llmcache serve [FLAG...]",
  about: [
    "Runs a cache server; prints \"llmcache listening on HOST:PORT\" once it accepts calls.",
    "SIGINT or SIGTERM drains it and exits 0; SIGHUP reloads the auth file.",
  ].join("\n"),
  flags: FLAG_HELP,
  notes: [
    "SIZE is bytes with an optional unit (4096, 64KiB, 512MiB, 2GB); DURATION has a unit (500ms, 30s,",
    "10m, 1h, 7d). Every flag can also come from its environment variable, LLMCACHE_ and the flag in",
    "capitals (--max-bytes: LLMCACHE_MAX_BYTES; LLMCACHE_NAMESPACE_LIMITS with \";\" between namespaces);",
    "a flag wins. Beyond loopback, serve needs TLS and tokens or client certificates, or --insecure.",
  ].join("\n"),
});

/** `llmcache serve`: runs a server until SIGINT or SIGTERM; SIGHUP reloads the auth file. */
export async function serveCommand(args: string[]): Promise<void> {
  const { values } = parsingFlags(() => parseArgs({ args, options: FLAGS }));
  // A flag, else its LLMCACHE_* variable (--max-bytes: LLMCACHE_MAX_BYTES).
  const given = (flag: Flag): Setting | undefined => setting(flag, values[flag]);
  const integer = (flag: Flag, check?: (n: number) => number | undefined) => optional(given(flag), (value) => integerSetting(value, check ?? positive));
  const bytes = (flag: Flag, max = Number.MAX_SAFE_INTEGER, why = "") =>
    optional(given(flag), (value) => parsedSetting(value, (raw) => atMost(parseBytes(raw), max, why)));
  // A duration the server waits for with a timer: Node fires a longer one at once.
  const timerDuration = (flag: Flag) => optional(given(flag), (value) => parsedSetting(value, parseTimerDuration));
  const pemFile = (flag: Flag) => optional(given(flag), readPemFile);

  const logger = createLogger(optional(given("log-level"), (value) => parsedSetting(value, checkLogLevel)) ?? "info");
  // grpc-js logs a failed bind on its own, in a second line; this command
  // reports its errors itself. GRPC_VERBOSITY still turns grpc-js's logs on.
  if (process.env.GRPC_VERBOSITY === undefined) setLogVerbosity(logVerbosity.NONE);

  const tlsCert = pemFile("tls-cert");
  const tlsKey = pemFile("tls-key");
  const clientCa = pemFile("tls-client-ca");
  if ((tlsCert === undefined) !== (tlsKey === undefined)) throw new UsageError("give --tls-cert and --tls-key together");
  if (clientCa !== undefined && tlsCert === undefined) throw new UsageError("--tls-client-ca needs --tls-cert and --tls-key");
  checkTlsFiles({ cert: tlsCert, key: tlsKey, ca: clientCa });

  // An empty path would mean none: no snapshot, or no tokens, unseen.
  const path = (flag: Flag) => optional(given(flag), (value) => parsedSetting(value, (raw) => (raw.trim() === "" ? refuseEmptyPath() : value)));
  const snapshot = path("snapshot");
  const authFile = path("auth-file");
  const store = given("store");
  if (store) parsedSetting(store, (raw) => (parseStoreUrl(raw), raw));
  const options: ServerOptions = {
    store: store?.raw,
    nearCacheBytes: bytes("near-cache"),
    host: given("host")?.raw ?? DEFAULT_HOST,
    port: integer("port", checkPort) ?? DEFAULT_PORT,
    ...limitSettings({ maxsize: given("maxsize"), maxBytes: given("max-bytes"), defaultTtl: given("default-ttl") }),
    policy: optional(given("policy"), (value) => parsedSetting(value, checkPolicy)),
    namespaces: namespaceLimits(values["namespace-limit"]),
    tls: tlsCert && tlsKey ? { cert: tlsCert.pem, key: tlsKey.pem, clientCa: clientCa?.pem } : undefined,
    insecure: values.insecure ?? envFlag("LLMCACHE_INSECURE"),
    authFile: authFile?.raw,
    metricsPort: integer("metrics-port", checkPort),
    maxMessageBytes: bytes("max-message-bytes"),
    requestLimits: {
      maxPromptBytes: bytes("max-prompt-bytes"),
      maxLlmStringBytes: bytes("max-llm-string-bytes"),
      maxNamespaceBytes: bytes("max-namespace-bytes"),
      maxGenerations: integer("max-generations"),
      maxReplyBytes: bytes("max-reply-bytes"),
    },
    maxNamespaces: integer("max-namespaces"),
    leaseWaiters: {
      maxWaiters: integer("max-lease-waiters"),
      maxWaitersPerPair: integer("max-lease-waiters-per-pair"),
    },
    maxConcurrentStreams: integer("max-concurrent-streams", (n) => atMost(positive(n), MAX_HTTP2_SETTING, "HTTP/2's largest setting")),
    connectionLimits: {
      maxConnections: integer("max-connections"),
      handshakeTimeoutMs: timerDuration("handshake-timeout"),
      idleTimeoutMs: timerDuration("idle-timeout"),
      maxUnreadBytes: bytes("max-unread-bytes"),
      maxUnreadBytesTotal: bytes("max-unread-bytes-total"),
      receiveWindowBytes: bytes("receive-window", MAX_HTTP2_WINDOW, "HTTP/2's largest window"),
    },
    keepaliveTimeMs: timerDuration("keepalive-time"),
    keepaliveTimeoutMs: timerDuration("keepalive-timeout"),
    snapshotPath: snapshot?.raw,
    snapshotIntervalMs: timerDuration("snapshot-interval"),
    logger,
  };
  dropUndefined(options.requestLimits!);
  dropUndefined(options.connectionLimits!);
  dropUndefined(options.leaseWaiters!);
  const graceMs = timerDuration("shutdown-grace");
  const server = await startServer(dropUndefined(options)).catch((error: unknown) => {
    // The server checks the snapshot's directory before it listens; its error names no flag, so say which setting gave the path.
    if (error instanceof SnapshotSetupError && snapshot) throw new UsageError(`cannot write ${snapshot.source} ${snapshot.raw}: ${error.reason}`, { cause: error });
    if (error instanceof StoreSettingError || error instanceof UnsafeExposureError) throw new UsageError(error.message, { cause: error });
    if (error instanceof RedisRefusedError && store) throw new UsageError(`invalid ${store.source} "${store.raw}": ${error.message}`, { cause: error });
    if (error instanceof AuthFileError && authFile) throw new UsageError(`${authFile.source}: ${error.message}`, { cause: error });
    throw error;
  });

  let stopping = false;
  const stop = (signal: NodeJS.Signals) => {
    if (stopping) {
      logger.warn({ signal }, `${signal} again, stopping now`);
      process.exit(1);
    }
    stopping = true;
    logger.info({ signal }, `${signal} received, finishing calls in flight`);
    server.shutdown(graceMs).then(
      () => process.exit(0),
      (error: unknown) => {
        logger.error({ err: error }, "shutdown failed");
        process.exit(1);
      },
    );
  };
  process.on("SIGINT", stop);
  process.on("SIGTERM", stop);
  process.on("SIGHUP", () => {
    try {
      server.reloadAuth();
    } catch (error) {
      logger.error({ err: error }, "auth file not reloaded: the tokens in force stay");
    }
  });
  dropLinesNoOneReads(process.stdout);
  // Printed last: whoever waits for this line may signal at once.
  console.log(`llmcache listening on ${server.address}${server.metricsPort === undefined ? "" : ` (metrics on port ${server.metricsPort})`}`);
}

function optional<T>(value: Setting | undefined, read: (value: Setting) => T): T | undefined {
  return value === undefined ? undefined : read(value);
}

/** HTTP/2's largest flow-control window (RFC 9113, 6.9.1) and largest setting value: Node refuses more when a connection opens. */
const MAX_HTTP2_WINDOW = 2 ** 31 - 1;
const MAX_HTTP2_SETTING = 2 ** 32 - 1;

function atMost(n: number, max: number, why: string): number {
  if (n > max) throw new RangeError(`must be at most ${max.toLocaleString("en-US")}${why ? ` (${why})` : ""}`);
  return n;
}

function refuseEmptyPath(): never {
  throw new RangeError("a file's path is needed");
}

function positive(n: number): number {
  if (n <= 0) throw new RangeError("must be greater than 0");
  return n;
}

/** Leaves out the settings not given, so that the server's defaults apply. */
function dropUndefined<T extends object>(object: T): T {
  for (const key of Object.keys(object) as (keyof T)[]) if (object[key] === undefined) delete object[key];
  return object;
}

function limitSettings(given: { maxsize?: Setting; maxBytes?: Setting; defaultTtl?: Setting }): Limits {
  return {
    maxsize: given.maxsize && integerSetting(given.maxsize, (n) => checkMaxsize(n)),
    maxBytes: given.maxBytes && parsedSetting(given.maxBytes, parseBytes),
    defaultTtlMs: given.defaultTtl && parsedSetting(given.defaultTtl, parseDuration),
  };
}

/**
 * Per-namespace limits, from --namespace-limit flags (repeated) or else
 * LLMCACHE_NAMESPACE_LIMITS (separated by ";"), each
 * NAME:maxsize=N,max-bytes=SIZE,default-ttl=DURATION with any of the three.
 */
function namespaceLimits(flags: string[] | undefined): Record<string, Limits> | undefined {
  const fromEnv = process.env.LLMCACHE_NAMESPACE_LIMITS;
  const specs =
    flags?.map((raw) => ({ raw, source: "--namespace-limit" })) ??
    (fromEnv ? fromEnv.split(";").filter((raw) => raw.trim()).map((raw) => ({ raw, source: "LLMCACHE_NAMESPACE_LIMITS" })) : []);
  if (specs.length === 0) return undefined;
  // A namespace's limits may come in several specs; each limit once.
  const given = new Map<string, { maxsize?: Setting; maxBytes?: Setting; defaultTtl?: Setting }>();
  for (const spec of specs) {
    const colon = spec.raw.lastIndexOf(":");
    const fail = (why: string) => new UsageError(`invalid ${spec.source} "${spec.raw}": ${why}`);
    if (colon < 0) throw fail("expected NAME:maxsize=N,max-bytes=SIZE,default-ttl=DURATION");
    const name = spec.raw.slice(0, colon);
    let settings = given.get(name);
    if (!settings) given.set(name, (settings = {}));
    for (const pair of spec.raw.slice(colon + 1).split(",")) {
      const [key, value, extra] = pair.split("=");
      const field = ({ maxsize: "maxsize", "max-bytes": "maxBytes", "default-ttl": "defaultTtl" } as const)[key?.trim() ?? ""];
      if (!field || value === undefined || extra !== undefined) throw fail(`"${pair}" is not maxsize=N, max-bytes=SIZE or default-ttl=DURATION`);
      if (settings[field]) throw fail(`namespace "${name}" has its ${key!.trim()} twice: give each limit once`);
      settings[field] = { raw: value.trim(), source: `${spec.source} ${name}:${key}` };
    }
  }
  return Object.fromEntries([...given].map(([name, settings]) => [name, limitSettings(settings)]));
}
