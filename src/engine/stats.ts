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
  /** Updates that stored nothing: asked not to, only-if-absent with the pair present, or a stale lease token. */
  updatesNotStored: number;
  /** Single flight's work (see LeaseTable). */
  leases: LeaseStats;
}

export interface LeaseStats {
  /** Lookups that missed and were granted a lease. */
  granted: number;
  /** Updates with a current lease token. */
  filled: number;
  /** Lookups that waited and were answered by another caller's fill. */
  waitsServed: number;
  /** Lookups that waited as long as they would and got a plain miss. */
  waitsTimedOut: number;
  /** Leases that ended at their time with no fill. */
  expired: number;
  /** Leases given up without a fill. */
  released: number;
  /** Updates whose lease token was stale and that were not stored. */
  staleFillsRefused: number;
}

/** What single flight counts, as LeaseTable reports it. */
export type LeaseEvent = keyof LeaseStats;

export function newLeaseStats(): LeaseStats {
  return { granted: 0, filled: 0, waitsServed: 0, waitsTimedOut: 0, expired: 0, released: 0, staleFillsRefused: 0 };
}

export type Counter = "hits" | "misses" | "bypasses" | "evictedSize" | "evictedBytes" | "evictedTtl" | "expirations" | "updatesNotStored";

export type Counters = Record<Counter, number> & { leases: LeaseStats };

export function newCounters(): Counters {
  return {
    hits: 0,
    misses: 0,
    bypasses: 0,
    evictedSize: 0,
    evictedBytes: 0,
    evictedTtl: 0,
    expirations: 0,
    updatesNotStored: 0,
    leases: newLeaseStats(),
  };
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
    leases: { ...counters.leases },
  };
}
