import { randomBytes } from "node:crypto";
import type { RedisArgument } from "@redis/client";
import type { BackendLookup, BackendPair, CacheBackend, ChangeFeed } from "../engine/cache-backend.js";
import type { LeasedUpdate } from "../engine/leased-update.js";
import { DEFAULT_WAITER_LIMITS, type LeasedLookup, type WaiterLimits } from "../engine/leases.js";
import { checkTtl } from "../engine/limits.js";
import { newCounters, toStats, type CacheStats } from "../engine/stats.js";
import { STATS_NAMESPACES_LISTED, type StatsReport } from "../engine/store.js";
import { ALL_LEASES, entryNamespace, LEASES_CHANNEL, pairKeys, scanPattern } from "./keys.js";
import { LeaseWaits, type LeaseCheck } from "./lease-waits.js";
import { NearCache } from "./near-cache.js";
import { RedisConnection } from "./redis-connection.js";
import { LOOKUP_OR_LEASE, RELEASE_LEASE, UPDATE_THROUGH_LEASE, type Script } from "./scripts.js";
import { addCounters, SharedCounters } from "./shared-counters.js";
import type { StoreLocation } from "./store-url.js";

export interface RedisBackendOptions {
  /** How long entries live unless their update says, in ms; undefined: for ever. */
  defaultTtlMs?: number;
  /** Namespaces' own default TTLs, by namespace (its bytes as a string, see rpc/key-bytes.ts). */
  namespaceTtlMs?: Map<string, number>;
  /** Most lookups of this replica waiting for leases' fills. */
  leaseWaiters?: Partial<WaiterLimits>;
  /** How often this replica adds its counts to the shared ones, in ms. Default 1000. */
  statsFlushMs?: number;
  /** Keep entries read lately in this process too, up to this many bytes (see NearCache). Default: none. */
  nearCacheBytes?: number;
}

/** Keys deleted per UNLINK, and asked for per SCAN, while clearing. */
const CLEAR_BATCH = 500;
const MISS: LeasedLookup<never> = { kind: "miss" };
/** Why a near cache is suspended while Redis fails the probe. */
const REDIS_SILENT = "Redis not answering";
/** How often the keys the near cache served are TOUCHed in Redis: its LRU clock's resolution. */
const TOUCH_INTERVAL_MS = 1_000;

/**
 * The cache in Redis or a Redis Cluster, shared by every replica that
 * points at it (see keys.ts for the layout, scripts.ts for the atomic
 * steps). An update is acknowledged once Redis acknowledged it; a hit
 * answers the stored bytes as Redis returns them. Leases live in Redis, so
 * single flight spans replicas; entries expire by Redis's own expiry;
 * memory is bounded by Redis's maxmemory and its policy.
 */
export class RedisBackend implements CacheBackend<Buffer> {
  readonly lendsValues = false;
  readonly #redis: RedisConnection;
  readonly #counters: SharedCounters;
  readonly #waits: LeaseWaits;
  readonly #defaultTtlMs: number | undefined;
  readonly #namespaceTtlMs: Map<string, number>;
  readonly #near: NearCache | undefined;
  /** Tokens are this prefix, unique to the replica's run, and a counter. */
  readonly #tokenPrefix = randomBytes(9).toString("base64url");
  #lastToken = 0;
  /** Entries and bytes as Redis last reported them, for the metrics. */
  #lastHeld = { entries: 0, bytes: 0 };
  /** The refresh of #lastHeld under way, shared by the scrape's gauges. */
  #refreshing: Promise<void> | undefined;
  /** Marks the keys the near cache served as used in Redis, every second. */
  readonly #touchTimer: NodeJS.Timeout | undefined;

  /** `near`: the near cache `redis` tells of changes, if any. */
  constructor(redis: RedisConnection, options: RedisBackendOptions, onError: (error: unknown) => void, near?: NearCache) {
    this.#redis = redis;
    this.#near = near;
    this.changes = near && changeFeedOf(near);
    // A Redis that does not answer the probe may also be holding back word of changes made through other replicas.
    redis.onAvailabilityChange((available) => (available ? near?.resume(REDIS_SILENT) : near?.suspend(REDIS_SILENT)));
    this.#counters = new SharedCounters(redis, options.statsFlushMs ?? 1_000, onError);
    this.#waits = new LeaseWaits({ ...DEFAULT_WAITER_LIMITS, ...options.leaseWaiters });
    this.#defaultTtlMs = checkTtl(options.defaultTtlMs);
    this.#namespaceTtlMs = options.namespaceTtlMs ?? new Map();
    if (near) {
      this.#touchTimer = setInterval(() => void this.#touchServed(near), TOUCH_INTERVAL_MS);
      this.#touchTimer.unref();
    }
  }

  get available(): boolean {
    return this.#redis.available;
  }

  onAvailabilityChange(listener: (available: boolean) => void): void {
    this.#redis.onAvailabilityChange(listener);
  }

  get leasesOutstanding(): number {
    return 0; // They are in Redis, any replica's: not this process's to count.
  }

  get leaseWaiters(): number {
    return this.#waits.waiting;
  }

  get nearCache(): NearCache | undefined {
    return this.#near;
  }

  /** Changes as the near cache hears of them: without one, a replica hears of none. */
  readonly changes: ChangeFeed<Buffer> | undefined;

  async lookup(namespace: string, prompt: string, llmString: string, { bypass, leaseMs, waitMs, signal }: BackendLookup): Promise<LeasedLookup<Buffer>> {
    const keys = pairKeys(namespace, prompt, llmString);
    if (bypass) this.#counters.count(namespace, "bypasses");
    if (leaseMs === 0) {
      if (bypass) return MISS;
      const value = await this.#get(namespace, keys.entry);
      return value === undefined ? MISS : { kind: "hit", value };
    }
    const near = bypass ? undefined : this.#near?.get(keys.entry);
    if (near !== undefined) {
      this.#counters.count(namespace, "hits");
      return { kind: "hit", value: near };
    }
    const check = () => this.#lookupOrLease(keys.entry, keys.lease, leaseMs, bypass);
    const found = await check();
    if (found.kind === "hit") {
      this.#counters.count(namespace, "hits");
      return found;
    }
    if (!bypass) this.#counters.count(namespace, "misses");
    if (found.kind === "lease") return this.#granted(namespace, found.token, leaseMs);
    if (waitMs <= 0) return MISS;
    const outcome = await this.#waits.wait(keys.lease, found.pttlMs, waitMs, check, signal?.());
    switch (outcome.kind) {
      case "hit":
        this.#counters.countLease(namespace, "waitsServed");
        return outcome;
      case "lease":
        return this.#granted(namespace, outcome.token, leaseMs);
      case "timeout":
        this.#counters.countLease(namespace, "waitsTimedOut");
        return MISS;
    }
  }

  async lookupMany(pairs: readonly BackendPair[]): Promise<(Buffer | undefined)[]> {
    // Issued together, node-redis pipelines them on each node's connection: one write, not one per key.
    return Promise.all(
      pairs.map(async ({ namespace, prompt, llmString, bypass }) => {
        if (bypass) {
          this.#counters.count(namespace, "bypasses");
          return undefined;
        }
        return this.#get(namespace, pairKeys(namespace, prompt, llmString).entry);
      }),
    );
  }

  async update(namespace: string, prompt: string, llmString: string, value: Buffer, _bytes: number, options: LeasedUpdate): Promise<boolean> {
    const { entry, lease } = pairKeys(namespace, prompt, llmString);
    const ttlMs = checkTtl(options.ttlMs) ?? this.#namespaceTtlMs.get(namespace) ?? this.#defaultTtlMs;
    const result = (await this.#run(UPDATE_THROUGH_LEASE, [entry, lease], [
      value,
      ttlMs === undefined || ttlMs === Infinity ? "" : String(ttlMs),
      options.onlyIfAbsent ? "1" : "0",
      options.leaseToken ?? "",
      options.noStore ? "1" : "0",
      LEASES_CHANNEL,
    ])) as number;
    // Redis tells every replica of the change; this one must not answer the old value even before it hears.
    this.#near?.forget(entry);
    if (result === -1) {
      this.#counters.countLease(namespace, "staleFillsRefused");
      this.#counters.count(namespace, "updatesNotStored");
      return false;
    }
    if (result >= 2) this.#counters.countLease(namespace, "filled");
    const stored = result % 2 === 1;
    if (!stored) this.#counters.count(namespace, "updatesNotStored");
    return stored;
  }

  async release(namespace: string, prompt: string, llmString: string, token: string): Promise<boolean> {
    const { lease } = pairKeys(namespace, prompt, llmString);
    const released = (await this.#run(RELEASE_LEASE, [lease], [token, LEASES_CHANNEL])) === 1;
    if (released) this.#counters.countLease(namespace, "released");
    return released;
  }

  /**
   * SCANs every primary for the namespace's keys (or all of llmcache's) and
   * UNLINKs them a batch at a time: Redis is never blocked for long, and
   * keys that are not llmcache's are never touched. Entries stored while
   * the clear runs may survive it. Waiters everywhere then look again.
   */
  async clear(namespace?: string): Promise<void> {
    const pattern = scanPattern(namespace);
    await Promise.all(
      (await this.#redis.primaries()).map(async (node) => {
        let cursor = "0";
        do {
          const [next, keys] = (await node.send(["SCAN", cursor, "MATCH", pattern, "COUNT", String(CLEAR_BATCH)])) as [Buffer, Buffer[]];
          cursor = next.toString();
          // One UNLINK per key: on a Cluster a node's keys span many slots, and a multi-key command may not.
          await Promise.all(keys.map((key) => node.send(["UNLINK", key])));
        } while (cursor !== "0");
      }),
    );
    this.#near?.invalidateAll();
    await this.#redis.sendToKey(LEASES_CHANNEL, false, ["PUBLISH", LEASES_CHANNEL, ALL_LEASES]);
  }

  checkFits(): void {
    // Redis takes values up to 512 MB, far past the server's request limits: nothing to refuse here.
  }

  checkNamespacesFit(): void {
    // Any number of namespaces share Redis's memory.
  }

  /**
   * Every replica's counts (see SharedCounters), with entries and bytes as
   * Redis reports them: keys in the database (llmcache's and any others')
   * and used_memory, summed over the primaries, in the total only; and
   * Redis's evictions (by maxmemory) and expiries.
   */
  async stats(): Promise<StatsReport> {
    const [byNamespace, held] = await Promise.all([this.#counters.read(), this.#held()]);
    const total = newCounters();
    for (const counters of byNamespace.values()) addCounters(total, counters);
    total.evictedBytes = held.evicted;
    total.evictedTtl = held.expired;
    const namespaces: Record<string, CacheStats> = {};
    let listed = 0;
    for (const [name, counters] of byNamespace) {
      if (listed++ >= STATS_NAMESPACES_LISTED) break;
      namespaces[name] = toStats(0, 0, counters);
    }
    return { total: toStats(held.entries, held.bytes, total), namespaces, namespacesNotListed: Math.max(0, byNamespace.size - STATS_NAMESPACES_LISTED) };
  }

  refreshGauges(): Promise<void> {
    // A failed refresh keeps the figures as they were: health reports Redis's state.
    const keepFigures = () => {};
    this.#refreshing ??= this.#held()
      .then(keepFigures, keepFigures)
      .finally(() => (this.#refreshing = undefined));
    return this.#refreshing;
  }

  total(): CacheStats {
    return toStats(this.#lastHeld.entries, this.#lastHeld.bytes, this.#counters.sinceStart);
  }

  stopWaiting(error: Error): void {
    this.#waits.close(error);
  }

  async close(): Promise<void> {
    clearInterval(this.#touchTimer);
    await this.#counters.close();
    await this.#redis.close();
  }

  /**
   * What bounds the cache's memory on each primary, in words for the log:
   * undefined when every primary has maxmemory and evicts any key, else
   * why the cache could grow without bound or refuse writes.
   */
  async memoryWarning(): Promise<string | undefined> {
    const problems = new Set<string>();
    for (const node of await this.#redis.primaries()) {
      const info = String(await node.send(["INFO", "memory"]));
      const policy = /^maxmemory_policy:(\S+)/m.exec(info)?.[1] ?? "unknown";
      if (infoField(info, "maxmemory") === 0) problems.add("a primary has no maxmemory: the cache can grow until the machine runs out of memory");
      else if (!policy.startsWith("allkeys-")) {
        problems.add(`a primary's maxmemory-policy is ${policy}: once full, Redis ${policy === "noeviction" ? "refuses every write" : "evicts only keys with a TTL, and refuses writes when none is left"}`);
      }
    }
    return problems.size === 0 ? undefined : `${[...problems].join("; ")} (set maxmemory and maxmemory-policy allkeys-lru on every primary)`;
  }

  /** Starts hearing of leases that end on any replica. */
  async listen(): Promise<void> {
    await this.#redis.subscribe(LEASES_CHANNEL, (message) => this.#waits.wake(message.toString("latin1")));
  }

  /** The entry's value, from the near cache or Redis, counted as a hit or a miss. */
  async #get(namespace: string, entry: string): Promise<Buffer | undefined> {
    const value = this.#near ? await this.#getThroughNear(entry, this.#near) : ((await this.#redis.sendToKey(entry, true, ["GET", entry])) as Buffer | null);
    this.#counters.count(namespace, value === null ? "misses" : "hits");
    return value ?? undefined;
  }

  /**
   * TOUCHes the keys the near cache served lately, on their primaries, so
   * that Redis's eviction sees them used and keeps the hot entries rather
   * than evicting them first. One command a key (each pair has a slot of its
   * own), issued together so that node-redis pipelines them. A failure is
   * let go: Redis away is reported by health, and the next second tries
   * again with what is served by then.
   */
  async #touchServed(near: NearCache): Promise<void> {
    const keys = near.takeServed();
    await Promise.all(keys.map((key) => this.#redis.sendToKey(key, false, ["TOUCH", key]))).catch(() => {});
  }

  async #getThroughNear(entry: string, near: NearCache): Promise<Buffer | null> {
    const kept = near.get(entry);
    if (kept !== undefined) return kept;
    return this.#readKeeping(entry, async () => {
      // Issued together, they travel in one write and are answered in one read.
      const [value, ttlMs] = (await Promise.all([
        this.#redis.sendToKey(entry, true, ["GET", entry]),
        this.#redis.sendToKey(entry, true, ["PTTL", entry]),
      ])) as [Buffer | null, number];
      return { result: value, value, ttlMs };
    });
  }

  /**
   * Runs `read` of the entry, and gives what it found to the near cache, if
   * any, to keep (see NearCache.beginRead); `ttlMs` as PTTL says it.
   */
  async #readKeeping<R>(entry: string, read: () => Promise<{ result: R; value: Buffer | null; ttlMs: number }>): Promise<R> {
    const keep = this.#near?.beginRead(entry);
    try {
      const { result, value, ttlMs } = await read();
      keep?.(value, ttlMs);
      return result;
    } catch (error) {
      keep?.(null, -1);
      throw error;
    }
  }

  #lookupOrLease(entry: string, lease: string, leaseMs: number, bypass: boolean): Promise<LeaseCheck<Buffer>> {
    const token = `${this.#tokenPrefix}.${(++this.#lastToken).toString(36)}`;
    const args = [token, String(leaseMs), bypass ? "1" : "0"];
    const lookup = async (): Promise<{ result: LeaseCheck<Buffer>; value: Buffer | null; ttlMs: number }> => {
      const [kind, detail, ttlMs] = (await this.#run(LOOKUP_OR_LEASE, [entry, lease], args)) as [number, Buffer | number | undefined, number?];
      if (kind === 1) return { result: { kind: "hit", value: detail as Buffer }, value: detail as Buffer, ttlMs: ttlMs ?? -1 };
      return { result: kind === 2 ? { kind: "lease", token } : { kind: "held", pttlMs: Number(detail) }, value: null, ttlMs: -1 };
    };
    // A bypassing lookup reads nothing: nothing to keep.
    return bypass ? lookup().then(({ result }) => result) : this.#readKeeping(entry, lookup);
  }

  #granted(namespace: string, token: string, leaseMs: number): LeasedLookup<Buffer> {
    this.#counters.countLease(namespace, "granted");
    return { kind: "lease", lease: { token, leaseMs } };
  }

  /** Runs a script on the node of its first key: by digest, or whole if the node does not know it yet. */
  async #run(script: Script, keys: string[], args: RedisArgument[]): Promise<unknown> {
    const command = (verb: string, body: string) => [verb, body, String(keys.length), ...keys, ...args];
    try {
      return await this.#redis.sendToKey(keys[0]!, false, command("EVALSHA", script.sha1));
    } catch (error) {
      if (!(error instanceof Error) || !error.message.startsWith("NOSCRIPT")) throw error;
      return this.#redis.sendToKey(keys[0]!, false, command("EVAL", script.source));
    }
  }

  /** Keys, used memory, evictions and expiries, summed over the primaries. */
  async #held(): Promise<{ entries: number; bytes: number; evicted: number; expired: number }> {
    const held = { entries: 0, bytes: 0, evicted: 0, expired: 0 };
    const perPrimary = (await this.#redis.primaries()).map((node) => Promise.all([node.send(["DBSIZE"]), node.send(["INFO", "memory"]), node.send(["INFO", "stats"])]));
    for (const [size, memory, stats] of await Promise.all(perPrimary)) {
      const info = `${String(memory)}\n${String(stats)}`;
      held.entries += Number(size);
      held.bytes += infoField(info, "used_memory");
      held.evicted += infoField(info, "evicted_keys");
      held.expired += infoField(info, "expired_keys");
    }
    this.#lastHeld = { entries: held.entries, bytes: held.bytes };
    return held;
  }
}

/** Connects to Redis, and starts hearing of leases' ends, before the server serves. */
export async function openRedisBackend(
  location: Exclude<StoreLocation, { kind: "memory" }>,
  options: RedisBackendOptions,
  onError: (error: unknown) => void,
): Promise<RedisBackend> {
  const near = options.nearCacheBytes === undefined ? undefined : new NearCache(options.nearCacheBytes);
  const redis = await RedisConnection.open(location, onError, near);
  const backend = new RedisBackend(redis, options, onError, near);
  try {
    await backend.listen();
  } catch (error) {
    await backend.close();
    throw error;
  }
  return backend;
}

function infoField(info: string, name: string): number {
  const match = new RegExp(`^${name}:(\\d+)`, "m").exec(info);
  return match ? Number(match[1]) : 0;
}

function changeFeedOf(near: NearCache): ChangeFeed<Buffer> {
  return {
    watch: (listener) => near.onChange((key) => listener(key === null ? null : { key, namespace: entryNamespace(key) })),
    leave: (namespace, prompt, llmString, value) => {
      const key = pairKeys(namespace, prompt, llmString).entry;
      const kept = near.peek(key);
      // Equal bytes are enough: whichever write left them, they are what a change would be told against.
      if (kept === undefined || !kept.value.equals(value)) return undefined;
      return { key, ttlMs: kept.expiresAt === Infinity ? 0 : Math.max(1, Math.floor(kept.expiresAt - near.now())) };
    },
  };
}
