import type { CheckedLimits } from "./limits.js";
import type { CacheStats, LeaseEvent } from "./stats.js";

/**
 * What a cache's store does, for those that use one: the server's methods,
 * the snapshot, InMemoryCache, the metrics and the reclaimer are written
 * against this, not against a particular store. Values are keyed by
 * (namespace, prompt, llm_string) and kept within limits; every operation
 * counts what it did (see CacheStats). CacheStore, in this process's
 * memory, is the first implementation.
 *
 * A value handed out may be the store's own (SegmentIndex hands out its
 * bytes, not a copy): it stays as it is only until the store is next
 * written to, and whoever keeps it longer copies it.
 *
 * The interface is synchronous, as the in-memory store is: a store over the
 * network (Redis) will widen its results to promises, and its callers,
 * which already answer later when single flight waits, with them.
 */
export interface Store<V> {
  /** The limits of the whole store (each namespace may have its own on top). */
  readonly limits: CheckedLimits;
  /** How many entries the store holds, expired ones not yet removed included. */
  readonly size: number;
  /** The live value for the pair, counted as a hit or a miss. */
  get(namespace: string, prompt: string, llmString: string): V | undefined;
  /** The live value for the pair, counted as nothing and moving nothing (a lookup already counted that looks again). */
  peek(namespace: string, prompt: string, llmString: string): V | undefined;
  /**
   * Stores a value whose key and value take `bytes` bytes, evicting as its
   * limits require, and says whether it did (false: onlyIfAbsent, and a live
   * entry is there). Throws EntryTooLargeError or TooManyNamespacesError,
   * storing and evicting nothing, when the entry cannot fit at all.
   */
  set(namespace: string, prompt: string, llmString: string, value: V, bytes: number, options?: SetOptions): boolean;
  /** Throws as set would if an entry of `bytes` could never fit in the namespace. */
  checkFits(namespace: string, bytes: number): void;
  /** Throws TooManyNamespacesError if storing in all these namespaces would need too many to hold entries. */
  checkNamespacesFit(namespaces: Iterable<string>): void;
  /** Removes every entry of a namespace, or of all; limits and counters stay. */
  clear(namespace?: string): void;
  /** Counts a lookup that skipped the cache. */
  bypass(namespace: string): void;
  /** Counts an update that asked not to be stored. */
  skipStore(namespace: string): void;
  /** Counts what single flight did in a namespace (see LeaseTable). */
  countLease(namespace: string, event: LeaseEvent): void;
  /** What the store holds and has done, in total and for the first `listed` namespaces. */
  stats(listed?: number): StatsReport;
  /** Every namespace together: cheap enough for every metrics scrape. */
  total(): CacheStats;
}

/** A store whose entries can be walked while it changes: what a snapshot needs. */
export interface WalkableStore<V> extends Store<V> {
  walk(): StoreWalk<V>;
}

/** A store whose expired entries are removed a bounded number at a time (see reclaimInBackground). */
export interface ReclaimableStore {
  /** Removes expired entries, looking at no more than `maxChecks`; returns how many it removed. */
  reclaimExpired(maxChecks?: number): number;
  /** Calls `listener` once an entry can expire, at once if one already can. */
  onceEntriesCanExpire(listener: () => void): void;
}

export interface SetOptions {
  /** How long the entry lives, in ms; Infinity: for ever. Default: the namespace's, else the store's default. */
  ttlMs?: number;
  /** When the entry expires on the store's clock, instead of ttlMs: for entries restored from a snapshot. */
  expiresAt?: number;
  /** Store only if no live entry holds the pair. */
  onlyIfAbsent?: boolean;
}

/** An entry as a snapshot holds it. */
export interface StoredEntry<V> {
  namespace: string;
  prompt: string;
  llmString: string;
  value: V;
  /** Its key and value bytes, as given to set (without the fixed overhead). */
  bytes: number;
  /** On the store's clock; Infinity: never. */
  expiresAt: number;
}

/**
 * Walks the entries in eviction order, oldest (or least recently used)
 * first, a step at a time, while the store goes on changing between steps:
 * an entry removed or moved before the walk reaches it moves the walk on to
 * the next, so no step ever lands on a removed entry. An entry moved to the
 * newest end (lru) may be met twice; the later is the newer.
 */
export interface StoreWalk<V> {
  next(): StoredEntry<V> | undefined;
  /** Stops the walk; the store stops keeping it up to date. */
  close(): void;
}

/** Most namespaces listed one by one in stats(); the total always counts them all. */
export const STATS_NAMESPACES_LISTED = 1_000;

export interface StatsReport {
  total: CacheStats;
  /** By namespace: the first STATS_NAMESPACES_LISTED the store knows (see stats()). */
  namespaces: Record<string, CacheStats>;
  /** How many more namespaces the store knows than are listed. */
  namespacesNotListed: number;
}

