import type { ClearOptions, LeasedLookup, LeaseOptions, LookupOptions, UpdateOptions } from "./call-options.js";
import type { GetOrComputeOptions } from "./single-flight.js";
import type { CacheStats } from "./engine/stats.js";
import type { Generation } from "./generation.js";

/**
 * The operations of LangChain's BaseCache, a synchronous method and its
 * async twin for each, with llmcache's options (namespaces, TTL, bypass),
 * its conditional update and its statistics. InMemoryCache (in this
 * process) and CacheClient (a remote llmcache server) both implement it, so
 * code written against one runs against the other unchanged.
 *
 * A miss is `null`; a hit may be an empty list. What a lookup returns is the
 * caller's own copy, and what an update is given is copied before it is kept.
 */
export interface BaseCache {
  /** With `lease`, single flight: a LeasedLookup (see LeaseOptions). */
  lookup(prompt: string, llmString: string, options: LookupOptions & { lease: LeaseOptions }): LeasedLookup;
  lookup(prompt: string, llmString: string, options?: LookupOptions): Generation[] | null;
  update(prompt: string, llmString: string, generations: Generation[], options?: UpdateOptions): void;
  clear(options?: ClearOptions): void;
  alookup(prompt: string, llmString: string, options: LookupOptions & { lease: LeaseOptions }): Promise<LeasedLookup>;
  alookup(prompt: string, llmString: string, options?: LookupOptions): Promise<Generation[] | null>;
  aupdate(prompt: string, llmString: string, generations: Generation[], options?: UpdateOptions): Promise<void>;
  aclear(options?: ClearOptions): Promise<void>;

  /**
   * Gives up a lease without filling the pair (the model call failed), so
   * that the next waiting caller takes over at once. False if the token is
   * no longer the pair's lease.
   */
  releaseLease(prompt: string, llmString: string, token: string, options?: Pick<LookupOptions, "namespace">): boolean;
  areleaseLease(prompt: string, llmString: string, token: string, options?: Pick<LookupOptions, "namespace">): Promise<boolean>;

  /**
   * The pair's generations, computed by `compute` only if no one else is
   * computing them: it looks up with a lease, and only the caller granted
   * the lease computes and stores; the others wait for that and get its
   * result. A compute that throws releases the lease and the error goes to
   * its caller; the next waiter computes instead.
   */
  getOrCompute(
    prompt: string,
    llmString: string,
    compute: () => Generation[] | Promise<Generation[]>,
    options?: GetOrComputeOptions,
  ): Promise<Generation[]>;

  /**
   * Stores the generations only if the pair has no live entry, and says
   * whether it did: of two callers racing to store the same answer, one
   * stores and the other learns it need not.
   */
  updateIfAbsent(prompt: string, llmString: string, generations: Generation[], options?: UpdateOptions): boolean;
  aupdateIfAbsent(prompt: string, llmString: string, generations: Generation[], options?: UpdateOptions): Promise<boolean>;

  /** What the cache holds and has done since it started, in total and per namespace. */
  stats(): CacheStatsReport;
  astats(): Promise<CacheStatsReport>;
}

export interface CacheStatsReport {
  total: CacheStats;
  /** At most 1,000 namespaces: those with limits, those holding entries, then the most recently used others. */
  namespaces: Record<string, CacheStats>;
  /** How many namespaces the cache knows beyond those listed. */
  namespacesNotListed: number;
}
