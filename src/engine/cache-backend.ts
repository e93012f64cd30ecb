import type { LeasedUpdate } from "./leased-update.js";
import type { LeasedLookup } from "./leases.js";
import type { CacheStats } from "./stats.js";
import type { StatsReport } from "./store.js";

/** A result now, or later: the in-memory backend answers at once, a networked one later. */
export type MaybePromise<T> = T | Promise<T>;

/** How a lookup reads its pair. */
export interface BackendLookup {
  /** Skip the cache: count a bypass and answer a miss. */
  bypass: boolean;
  /** On a miss, ask for a lease of this many ms (see LeaseTable); 0: no lease, a plain miss. */
  leaseMs: number;
  /** How long to wait for another's fill when the pair is leased, in ms. */
  waitMs: number;
  /** The signal that stops a wait, made on first use: only a lookup that waits needs one. */
  signal?: () => AbortSignal;
}

/** A pair, as a batch of lookups names it. */
export interface BackendPair {
  namespace: string;
  prompt: string;
  llmString: string;
  bypass: boolean;
}

/** Figures for the metrics: cheap enough to read on every scrape. */
export interface BackendGauges {
  /** What this process has counted, every namespace together. */
  total(): CacheStats;
  /** Leases this process granted that have not ended. */
  readonly leasesOutstanding: number;
  /** Lookups waiting in this process for a lease's fill. */
  readonly leaseWaiters: number;
  /** The figures of a near cache in front of a shared store, where there is one. */
  readonly nearCache?: NearCacheGauges;
  /**
   * Brings total()'s entries and bytes up to date, for a backend that must
   * ask for them (Redis); calls made while one runs share it, and a failure
   * keeps the figures as they were.
   */
  refreshGauges?(): Promise<void>;
}

export interface NearCacheGauges {
  readonly size: number;
  readonly bytes: number;
  /** Listeners to its changes: streams that watch. */
  readonly watchers: number;
  readonly counts: { hits: number; invalidations: number };
}

/** An entry that changed: its key (as NearLeave names it) and its namespace. */
export interface EntryChange {
  key: string;
  namespace: string;
}

/** Leave to keep a hit near the caller until `key` changes, or for `ttlMs` (0: no expiry). */
export interface NearLeave {
  /** ASCII. */
  key: string;
  ttlMs: number;
}

/**
 * A backend that hears of every change to its entries, wherever made (a
 * near cache fed by Redis's invalidations), and so can let callers keep
 * hits near them.
 */
export interface ChangeFeed<V> {
  /** `listener` hears every change from now on (null: everything may have changed); returns what stops it. */
  watch(listener: (change: EntryChange | null) => void): () => void;
  /**
   * Leave to keep `value`, just read for the pair: given only while it is
   * what the backend itself keeps, so that the next change of it is sure
   * to reach the listeners.
   */
  leave(namespace: string, prompt: string, llmString: string, value: V): NearLeave | undefined;
}

/**
 * What the server's methods run on: a cache of values keyed by
 * (namespace, prompt, llm_string), with single flight's leases, counting
 * what it does. Two implement it: LocalBackend (the in-memory store, in
 * this process) and RedisBackend (Redis or a Redis Cluster, shared by many
 * replicas). Callers check rights and sizes; the backend keeps the data.
 *
 * Results may come at once or as promises (MaybePromise): the in-memory
 * backend answers synchronously, so that its hot path makes no promise.
 * A failure is thrown, or rejected, as an Error whose kind the caller
 * maps to a status (a backend that cannot reach its data throws
 * BackendUnavailableError).
 *
 * Values handed out may be the backend's own (lendsValues): they stay as
 * they are only until the backend is next written to, and whoever keeps
 * one longer copies it.
 */
export interface CacheBackend<V> extends BackendGauges {
  /** Handed-out values are the backend's own bytes, valid until its next write. */
  readonly lendsValues: boolean;
  lookup(namespace: string, prompt: string, llmString: string, options: BackendLookup): MaybePromise<LeasedLookup<V>>;
  /** Plain lookups of many pairs (no leases), in order. */
  lookupMany(pairs: readonly BackendPair[]): MaybePromise<(V | undefined)[]>;
  /** Stores a value (see updateThroughLeases); says whether it did. */
  update(namespace: string, prompt: string, llmString: string, value: V, bytes: number, options: LeasedUpdate): MaybePromise<boolean>;
  /** Gives up a lease without a fill; false if the token is not the pair's current lease. */
  release(namespace: string, prompt: string, llmString: string, token: string): MaybePromise<boolean>;
  /** Removes every entry of a namespace, or of all, and ends their leases. */
  clear(namespace?: string): MaybePromise<void>;
  /** Throws (EntryTooLargeError, TooManyNamespacesError) if an entry of `bytes` could never be stored in the namespace. */
  checkFits(namespace: string, bytes: number): void;
  /** Throws TooManyNamespacesError if storing in all these namespaces would need too many. */
  checkNamespacesFit(namespaces: Iterable<string>): void;
  /** What the cache holds and has done, in total and by namespace. */
  stats(): MaybePromise<StatsReport>;
  /** Whether the backend can reach its data now; `listener` hears every change. */
  readonly available: boolean;
  onAvailabilityChange(listener: (available: boolean) => void): void;
  /** Ends every lease and fails every waiter with `error`, for shutdown; later lookups that would wait throw it. */
  stopWaiting(error: Error): void;
  /** Where the backend can tell of changes; undefined where it cannot. */
  readonly changes?: ChangeFeed<V> | undefined;
  /** Lets go of what the backend holds open (connections, timers). */
  close(): Promise<void>;
}

/**
 * The backend cannot reach where its data lives (Redis is down, or a
 * cluster has no primary for the key's slot): the call may succeed later,
 * or on another replica. Its message names what could not be reached.
 */
export class BackendUnavailableError extends Error {
  override readonly name = "BackendUnavailableError";
  /** The gRPC status a server answers with for it (see rpc/status-mapping.ts's StatusCarrier). */
  readonly code = "UNAVAILABLE";
}

/** `then` for a MaybePromise: synchronous when the value is. */
export function andThen<T, U>(value: MaybePromise<T>, next: (value: T) => MaybePromise<U>): MaybePromise<U> {
  return value instanceof Promise ? value.then(next) : next(value);
}

/** Promise.all for MaybePromises: synchronous when every value is. */
export function allOf<T>(values: MaybePromise<T>[]): MaybePromise<T[]> {
  return values.some((value) => value instanceof Promise) ? Promise.all(values) : (values as T[]);
}
