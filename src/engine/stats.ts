/** What a namespace (or the whole store) has held and done since the store was made. */
export interface CacheStats {
  entries: number;
  /** Accounted bytes (see ENTRY_OVERHEAD_BYTES). */
  bytes: number;
  hits: number;
  /** Lookups that found no live entry, expired ones included. */
  misses: number;
  /** Lookups that asked to skip the cache; neither hits nor misses. */
  bypasses: number;
  /** hits / (hits + misses); 0 before the first lookup. */
  hitRatio: number;
  evictions: {
    /** To stay within maxsize. */
    size: number;
    /** To stay within maxBytes. */
    bytes: number;
    /** Expired before anyone looked them up: reclaimed, or their place was needed. */
    ttl: number;
  };
  /** Lookups that found their entry expired (also counted as misses). */
  expirations: number;
  /** Updates that stored nothing: asked not to, or only-if-absent with the pair present. */
  updatesNotStored: number;
}

export type Counter = "hits" | "misses" | "bypasses" | "evictedSize" | "evictedBytes" | "evictedTtl" | "expirations" | "updatesNotStored";

export type Counters = Record<Counter, number>;

export function newCounters(): Counters {
  return { hits: 0, misses: 0, bypasses: 0, evictedSize: 0, evictedBytes: 0, evictedTtl: 0, expirations: 0, updatesNotStored: 0 };
}

export function toStats(entries: number, bytes: number, counters: Counters): CacheStats {
  const looked = counters.hits + counters.misses;
  return {
    entries,
    bytes,
    hits: counters.hits,
    misses: counters.misses,
    bypasses: counters.bypasses,
    hitRatio: looked === 0 ? 0 : counters.hits / looked,
    evictions: { size: counters.evictedSize, bytes: counters.evictedBytes, ttl: counters.evictedTtl },
    expirations: counters.expirations,
    updatesNotStored: counters.updatesNotStored,
  };
}
