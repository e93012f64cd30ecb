import { createClient, createCluster, ErrorReply, RESP_TYPES, type RedisArgument } from "@redis/client";
import { setTimeout as sleep } from "node:timers/promises";
import { BackendUnavailableError } from "../engine/cache-backend.js";
import { ClusterNodeSockets } from "./cluster-node-sockets.js";
import { InvalidationListener } from "./invalidation-listener.js";
import type { NearCache } from "./near-cache.js";
import type { StoreLocation } from "./store-url.js";

/**
 * Replies' strings as Buffers: keys and values are bytes, never UTF-8 text.
 * And no timeout per command: node-redis's default (5 s) arms an
 * AbortSignal.timeout for every command, only to disarm it once the command
 * is written, so it never catches a Redis that stops answering; it held a
 * replica to 12.7k lookups/s where it does 20.4k without (64 callers, 500 B
 * hits). The probe finds a Redis that stops answering, with a timeout of its
 * own, and QUEUE_LIMIT bounds what can pile up meanwhile.
 */
const AS_BUFFERS = { typeMapping: { [RESP_TYPES.BLOB_STRING]: Buffer }, timeout: 0 } as const;
/** How long a probe's PINGs may take before Redis counts as unreachable. */
const PROBE_TIMEOUT_MS = 2_000;
/**
 * Commands one connection may hold unanswered; past it a command fails at
 * once (UNAVAILABLE). Far above what the calls in flight need, it only
 * bounds the memory of a Redis that accepts commands but does not answer.
 */
const QUEUE_LIMIT = 65_536;
/** How long a command may wait for a connection before it fails (the call then fails UNAVAILABLE). */
const CONNECT_TIMEOUT_MS = 2_000;
/** Reconnection backs off to this, and keeps trying for ever: Redis coming back is the normal end of an outage. */
const MAX_RECONNECT_DELAY_MS = 1_000;
/** How often, while a Cluster node cannot be reached, the slot map is asked for again. */
const TOPOLOGY_REFRESH_MS = 1_000;
/** How often a probe checks that every primary answers. */
const PROBE_INTERVAL_MS = 1_000;

export type Reply = Buffer | number | null | Reply[];

/** One Redis node's connection, for the commands that go to every primary (SCAN, INFO, DBSIZE). */
export interface NodeConnection {
  send(args: RedisArgument[]): Promise<unknown>;
}

/**
 * Redis or a Redis Cluster behind one small interface, through node-redis
 * (the client Redis's maintainers recommend for new Node projects, with
 * Cluster support, automatic pipelining of commands issued together, and
 * reconnection): a command goes to the node that holds its key, every
 * failure to reach Redis becomes a BackendUnavailableError that names it,
 * and `available` says whether every primary answers now.
 *
 * Commands are never queued while Redis is unreachable: they fail at once,
 * so that a call fails UNAVAILABLE rather than waiting out its deadline.
 */
export class RedisConnection {
  readonly display: string;
  #available = false;
  readonly #listeners: ((available: boolean) => void)[] = [];
  readonly #sendToKey: (key: RedisArgument, readonly: boolean, args: RedisArgument[]) => Promise<unknown>;
  readonly #primaries: () => Promise<NodeConnection[]>;
  readonly #subscribe: (channel: string, listener: (message: Buffer) => void) => Promise<void>;
  readonly #close: () => Promise<void>;
  #probe: NodeJS.Timeout | undefined;

  /** Use open(): this wraps a client already connected. */
  constructor(display: string, parts: ConnectionParts) {
    this.display = display;
    this.#sendToKey = parts.sendToKey;
    this.#primaries = parts.primaries;
    this.#subscribe = parts.subscribe;
    this.#close = parts.close;
  }

  /**
   * Connects, or throws BackendUnavailableError if Redis cannot be reached
   * within a few seconds. With a near cache, every connection speaks RESP3
   * and tells it of changes (see InvalidationListener).
   */
  static async open(location: Exclude<StoreLocation, { kind: "memory" }>, reportError: (error: unknown) => void, near?: NearCache): Promise<RedisConnection> {
    // Kept so that a start that gives up can say why.
    let lastError: unknown;
    let starting = true;
    let refuse: (error: RedisRefusedError) => void = () => {};
    const refused = new Promise<never>((_, reject) => (refuse = reject));
    refused.catch(() => {}); // heard by the start's race; one that comes as the start ends is for no one
    const onError = (error: unknown) => {
      lastError = error;
      // node-redis would retry for ever, and the start wait out its timeout, for an answer that will not change.
      if (starting && isRefusal(error)) return refuse(refusedBy(location.display, error));
      reportError(error);
    };
    const socket = { connectTimeout: CONNECT_TIMEOUT_MS, reconnectStrategy: (retries: number) => Math.min(50 * 2 ** retries, MAX_RECONNECT_DELAY_MS) };
    const tracking: Tracking = near ? { RESP: 3, clientSideCache: new InvalidationListener(near) } : {};
    const handlers: ErrorHandlers = [onError, () => lastError, refused];
    const connection = await (location.kind === "redis"
      ? openSingle(location.url, location.tls, socket, tracking, location.display, ...handlers)
      : openCluster(location, socket, tracking, ...handlers)
    ).finally(() => (starting = false));
    await connection.#check();
    connection.#probe = setInterval(() => void connection.#check(), PROBE_INTERVAL_MS);
    connection.#probe.unref();
    return connection;
  }

  get available(): boolean {
    return this.#available;
  }

  onAvailabilityChange(listener: (available: boolean) => void): void {
    this.#listeners.push(listener);
  }

  /** Sends a command to the node that holds `key`. */
  sendToKey(key: RedisArgument, readonly: boolean, args: RedisArgument[]): Promise<unknown> {
    return this.#sendToKey(key, readonly, args).catch((error: unknown) => {
      throw this.#failure(error);
    });
  }

  /** Each primary's connection: the whole keyspace, once. */
  async primaries(): Promise<NodeConnection[]> {
    const nodes = await this.#primaries().catch((error: unknown) => {
      throw this.#failure(error);
    });
    const explained = (sent: Promise<unknown>) =>
      sent.catch((error: unknown) => {
        throw this.#failure(error);
      });
    return nodes.map((node) => ({ send: (args) => explained(node.send(args)) }));
  }

  /** Hears every message published to `channel` anywhere (on a Cluster, classic pub/sub reaches every node). */
  subscribe(channel: string, listener: (message: Buffer) => void): Promise<void> {
    return this.#subscribe(channel, listener);
  }

  async close(): Promise<void> {
    clearInterval(this.#probe);
    await this.#close();
  }

  /** Marks Redis unreachable on an error that says so, and gives the error callers should see. */
  #failure(error: unknown): unknown {
    if (error instanceof ErrorReply && !UNAVAILABLE_REPLY.test(error.message)) {
      // Redis answered, refusing the command: out of memory under noeviction is the caller's problem to hear of.
      if (/^OOM/.test(error.message)) return new RedisOutOfMemoryError(`Redis at ${this.display} is out of memory and refuses writes: ${error.message}`);
      return error;
    }
    this.#setAvailable(false);
    const why = error instanceof Error ? error.message : String(error);
    return new BackendUnavailableError(`Redis at ${this.display} cannot be reached: ${why}`, { cause: error });
  }

  /** Pings every primary: available only when all answer. */
  async #check(): Promise<void> {
    try {
      const nodes = await this.#primaries();
      await withinProbeTimeout(Promise.all(nodes.map((node) => node.send(["PING"]))));
      this.#setAvailable(true);
    } catch {
      this.#setAvailable(false);
    }
  }

  #setAvailable(available: boolean): void {
    if (available === this.#available) return;
    this.#available = available;
    for (const listener of this.#listeners) listener(available);
  }
}

/** Rejects if `probe` has not settled within PROBE_TIMEOUT_MS. */
async function withinProbeTimeout(probe: Promise<unknown>): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer to PING within ${PROBE_TIMEOUT_MS} ms`)), PROBE_TIMEOUT_MS);
  });
  try {
    await Promise.race([probe, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** Redis refuses writes: maxmemory is reached and its policy evicts nothing (noeviction, or volatile-* with no TTLs). */
export class RedisOutOfMemoryError extends Error {
  override readonly name = "RedisOutOfMemoryError";
  /** The gRPC status a server answers with for it (see rpc/status-mapping.ts's StatusCarrier). */
  readonly code = "RESOURCE_EXHAUSTED";
}

/** Error replies that mean "not now" (a cluster without a primary for the slot, a node loading its data), not "never". */
const UNAVAILABLE_REPLY = /^(CLUSTERDOWN|TRYAGAIN|LOADING|MASTERDOWN|READONLY|MOVED|ASK)\b/;

interface ConnectionParts {
  sendToKey: (key: RedisArgument, readonly: boolean, args: RedisArgument[]) => Promise<unknown>;
  primaries: () => Promise<NodeConnection[]>;
  subscribe: (channel: string, listener: (message: Buffer) => void) => Promise<void>;
  close: () => Promise<void>;
}

type SocketOptions = { connectTimeout: number; reconnectStrategy: (retries: number) => number };

/** Nothing, or what makes node-redis hear of changes for a near cache. */
type Tracking = { RESP?: 3; clientSideCache?: InvalidationListener };

type ErrorHandlers = [onError: (error: unknown) => void, lastError: () => unknown, refused: Promise<never>];

async function openSingle(
  url: string,
  tls: boolean,
  socket: SocketOptions,
  tracking: Tracking,
  display: string,
  ...[onError, lastError, refused]: ErrorHandlers
): Promise<RedisConnection> {
  const client = createClient({
    url,
    socket: { ...socket, ...(tls ? { tls: true as const } : {}) },
    disableOfflineQueue: true,
    commandsQueueMaxLength: QUEUE_LIMIT,
    ...tracking,
  });
  client.on("error", onError);
  // Pub/sub holds its connection: a second one for it, which need not hear of changes too.
  const subscriber = client.duplicate({ clientSideCache: undefined });
  subscriber.on("error", onError);
  await connectOrExplain(
    () => Promise.all([client.connect(), subscriber.connect()]),
    () => Promise.allSettled([client.destroy(), subscriber.destroy()]),
    display,
    lastError,
    refused,
  );
  const node: NodeConnection = { send: (args) => client.sendCommand(args, AS_BUFFERS) };
  return new RedisConnection(display, {
    sendToKey: (_key, _readonly, args) => client.sendCommand(args, AS_BUFFERS),
    primaries: async () => [node],
    subscribe: (channel, listener) => subscriber.subscribe(channel, listener, true),
    close: async () => {
      await Promise.allSettled([client.close(), subscriber.close()]);
    },
  });
}

async function openCluster(
  location: Extract<StoreLocation, { kind: "redis-cluster" }>,
  socket: SocketOptions,
  tracking: Tracking,
  ...[onError, lastError, refused]: ErrorHandlers
): Promise<RedisConnection> {
  const scheme = location.tls ? "rediss" : "redis";
  let refresh: NodeJS.Timeout | undefined;
  const sockets = new ClusterNodeSockets(socket.reconnectStrategy, () => {
    // Later, not now: node-redis makes one slot map at a time, and the one
    // that made this client may still be under way.
    refresh ??= setTimeout(() => {
      refresh = undefined;
      askForSlotMap(cluster)?.catch(onError);
    }, TOPOLOGY_REFRESH_MS).unref();
  });
  const cluster = createCluster({
    rootNodes: location.nodes.map(({ host, port }) => ({ url: `${scheme}://${host.includes(":") ? `[${host}]` : host}:${port}` })),
    defaults: { socket: { ...socket, ...(location.tls ? { tls: true as const } : {}) }, disableOfflineQueue: true, commandsQueueMaxLength: QUEUE_LIMIT },
    // While a node cannot be reached, ask the others for the slot map this
    // often (node-redis's default, 5 s): a replica promoted in a failover is
    // found within a second of the promotion.
    topologyRefreshOnReconnectionAttemptStrategy: TOPOLOGY_REFRESH_MS,
    nodeAddressMap: (address: string) => sockets.socketFor(address),
    ...tracking,
  });
  cluster.on("error", onError);
  cluster.on("node-ready", ({ host, port }: { host: string; port: number }) => sockets.ready(`${host}:${port}`));
  // node-redis tries each root node once and gives up: while none answers
  // (Redis starting after its replicas), try again, as a single Redis's
  // client does by itself, until connectOrExplain's time is up.
  let gaveUp = false;
  let lastTry: unknown;
  await connectOrExplain(
    async () => {
      for (;;) {
        try {
          return await cluster.connect();
        } catch (error) {
          if (gaveUp || isRefusal(error)) throw error;
          lastTry = error;
        }
        await sleep(CLUSTER_CONNECT_RETRY_MS);
        // Given up meanwhile: a connect now would open what no one closes.
        if (gaveUp) throw lastTry;
      }
    },
    () => {
      gaveUp = true;
      return cluster.destroy();
    },
    location.display,
    () => lastError() ?? lastTry,
    refused,
  );
  return new RedisConnection(location.display, {
    sendToKey: (key, readonly, args) => cluster.sendCommand(key, readonly, args, AS_BUFFERS),
    primaries: async () =>
      Promise.all(
        cluster.masters.map(async (master) => {
          const client = await cluster.nodeClient(master);
          return { send: (args: RedisArgument[]) => client.sendCommand(args, AS_BUFFERS) };
        }),
      ),
    subscribe: (channel, listener) => cluster.subscribe(channel, listener, true),
    close: async () => {
      clearTimeout(refresh);
      await cluster.close().catch(() => {});
    },
  });
}

/**
 * Has node-redis ask the Cluster for its slot map again. It does so by
 * itself on a MOVED reply and while a node it had reached reconnects, but
 * has no public way to ask: this uses its internal one, and does nothing
 * should a later version not have it (test/e2e/redis-faults.test.ts would
 * then fail).
 */
function askForSlotMap(cluster: object): Promise<unknown> | undefined {
  const slots = (cluster as { _slots?: { rediscover?: () => Promise<unknown> } })._slots;
  return slots?.rediscover?.();
}

/** How long a server waits for Redis at start before it gives up: a wrong address should fail the start, not hang it. */
const START_TIMEOUT_MS = 10_000;
/** How often a Cluster none of whose nodes answers is tried again at start. */
const CLUSTER_CONNECT_RETRY_MS = 250;

async function connectOrExplain(
  connect: () => Promise<unknown>,
  giveUp: () => unknown,
  display: string,
  lastError: () => unknown,
  refused: Promise<never>,
): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer within ${START_TIMEOUT_MS / 1000} s`)), START_TIMEOUT_MS);
  });
  try {
    await Promise.race([connect(), timeout, refused]);
  } catch (error) {
    giveUp();
    if (error instanceof RedisRefusedError) throw error;
    // A Cluster's discovery fails with the refusal itself, not through the error event.
    if (isRefusal(error)) throw refusedBy(display, error);
    const why = lastError() ?? error;
    throw new BackendUnavailableError(`cannot connect to Redis at ${display}: ${why instanceof Error ? why.message : String(why)}`, { cause: why });
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Redis reached but refusing what the settings ask, in a way that retrying
 * will not change: a database index out of range, a wrong password, a
 * Redis without Cluster support behind redis-cluster://. The start fails at
 * once with Redis's words.
 */
export class RedisRefusedError extends Error {
  override readonly name = "RedisRefusedError";
}

function refusedBy(display: string, reply: ErrorReply): RedisRefusedError {
  return new RedisRefusedError(`Redis at ${display} refused the connection: ${reply.message}`, { cause: reply });
}

/** Redis's answers that say the settings are wrong, not that Redis is busy (LOADING, CLUSTERDOWN...). */
function isRefusal(error: unknown): error is ErrorReply {
  return error instanceof ErrorReply && /^(ERR|WRONGPASS|NOAUTH|NOPERM)\b/.test(error.message);
}
