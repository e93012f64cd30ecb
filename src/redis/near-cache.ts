import { ExpiringLru, type LruEntry } from "../expiring-lru.js";

/**
 * Entries this replica read from Redis lately, kept in its own memory so
 * that a hot entry costs no round trip (`--near-cache SIZE`). Redis tells
 * every replica when one of llmcache's keys changes anywhere (see
 * invalidation-listener.ts); the entry is dropped when that word arrives.
 *
 * A change may be heard of before the read that saw the old value is
 * answered (node-redis handles a push as soon as it decodes it, and the
 * read's caller only in a later microtask). A read therefore takes a ticket
 * when it starts; what it read is kept only if no change to its key (and no
 * loss of the invalidation stream) was heard of in between. Entries also
 * keep the expiry Redis gave them: Redis expires keys lazily, and a key no
 * one touches may outlive its TTL there.
 *
 * The budget counts keys and values, and evicts the least recently used.
 *
 * Whoever listens (onChange) hears every change this cache hears of, so
 * that clients of this replica may keep hits nearer still (see
 * WatchChanges in the contract); peek() says whether a value is what this
 * cache holds, which is when a change to it is sure to be heard of.
 *
 * Hits here never reach Redis, so to Redis's LRU (or LFU) a key this cache
 * serves looks unused, and Redis would evict the hottest entries first:
 * the keys served are remembered until takeServed(), for the replica to
 * mark them used in Redis.
 */
export class NearCache {
  /** By key (one byte per character). */
  readonly #entries: ExpiringLru<NearEntry>;
  /** Reads from Redis in flight, by key: how many, and whether the key changed since the first began. */
  readonly #reads = new Map<string, ReadsInFlight>();
  /** Bumped whenever everything is dropped at once: reads begun before must not keep what they read. */
  #epoch = 0;
  /**
   * Why invalidations may be missed now (a Cluster replacing its node
   * connections, Redis not answering the probe): while any holds, nothing
   * is served or kept.
   */
  readonly #suspendedFor = new Set<string>();
  #hits = 0;
  #invalidations = 0;
  /** Keys served since takeServed() last ran. */
  readonly #served = new Set<string>();
  /** Told of each key that changed, or null when everything may have. */
  readonly #listeners = new Set<(key: string | null) => void>();

  /** `now`: a clock in ms that never goes back. */
  constructor(maxBytes: number, readonly now: () => number = () => performance.now()) {
    if (!Number.isSafeInteger(maxBytes) || maxBytes <= 0) throw new RangeError(`the near cache's size must be a positive number of bytes, got ${maxBytes}`);
    this.#entries = new ExpiringLru(maxBytes, now);
  }

  get maxBytes(): number {
    return this.#entries.maxBytes;
  }

  get bytes(): number {
    return this.#entries.bytes;
  }

  get size(): number {
    return this.#entries.size;
  }

  /** Hits served and invalidations heard since start, for the metrics. */
  get counts(): { hits: number; invalidations: number } {
    return { hits: this.#hits, invalidations: this.#invalidations };
  }

  /** The value kept for `key`, if any and not expired. */
  get(key: string): Buffer | undefined {
    if (this.#suspendedFor.size > 0) return undefined;
    const entry = this.#entries.use(key);
    if (entry === undefined) return undefined;
    this.#hits++;
    this.#served.add(key);
    return entry.value;
  }

  /**
   * What is kept for `key` now, if anything, and when it expires: not
   * counted as a hit, nor as a use.
   */
  peek(key: string): { value: Buffer; expiresAt: number } | undefined {
    return this.#suspendedFor.size > 0 ? undefined : this.#entries.peek(key);
  }

  /** How many listen (see onChange). */
  get watchers(): number {
    return this.#listeners.size;
  }

  /** `listener` hears every change from now on: a key, or null for everything. Returns what stops it. */
  onChange(listener: (key: string | null) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** The keys served since the last call (see the class's comment). */
  takeServed(): string[] {
    const served = [...this.#served];
    this.#served.clear();
    return served;
  }

  /**
   * Starts a read of `key` from Redis. Call the returned function with what
   * Redis answered (null: no such key) and its remaining time to live as
   * PTTL gives it (ms; -1: none; -2: the key was gone by then); it keeps the
   * value unless the key changed meanwhile.
   * Call it also when the read fails (with null), so the ticket is returned.
   */
  beginRead(key: string): (value: Buffer | null, ttlMs: number) => void {
    const epoch = this.#epoch;
    // Redis measured the time left somewhere between now and the answer: counted from now, it never runs long.
    const startedAt = this.now();
    let reads = this.#reads.get(key);
    if (reads === undefined) this.#reads.set(key, (reads = { count: 0, changed: false }));
    reads.count++;
    const inFlight = reads;
    return (value, ttlMs) => {
      if (--inFlight.count === 0 && this.#reads.get(key) === inFlight) this.#reads.delete(key);
      if (value === null || ttlMs === KEY_GONE || inFlight.changed || epoch !== this.#epoch || this.#suspendedFor.size > 0) return;
      this.#keep(key, value, ttlMs < 0 ? Infinity : startedAt + ttlMs);
    };
  }

  /** Redis reported that the key changed somewhere: drop it, and keep no read of it in flight. */
  invalidate(key: string): void {
    this.#invalidations++;
    this.forget(key);
  }

  /**
   * As invalidate(), for a change this replica made: it must not answer the
   * old value even before Redis's report comes, which then counts it.
   */
  forget(key: string): void {
    const reads = this.#reads.get(key);
    if (reads) {
      reads.changed = true;
      // Reads that start from now on see the change: they get a ticket of their own.
      this.#reads.delete(key);
    }
    this.#entries.delete(key);
    for (const listener of this.#listeners) listener(key);
  }

  /** Drops everything: Redis flushed, or invalidations may have been lost. */
  invalidateAll(): void {
    this.#invalidations++;
    this.#epoch++;
    this.#entries.clear();
    this.#reads.clear();
    for (const listener of this.#listeners) listener(null);
  }

  /** Invalidations may be missed, for `reason`, until resume(reason): drops everything and keeps nothing meanwhile. */
  suspend(reason: string): void {
    this.#suspendedFor.add(reason);
    this.invalidateAll();
  }

  resume(reason: string): void {
    this.#suspendedFor.delete(reason);
  }

  #keep(key: string, value: Buffer, expiresAt: number): void {
    const cost = entryCost(key, value);
    // Not worth a copy: the set would refuse it (and drop what the key held).
    if (cost > this.maxBytes) {
      this.#entries.delete(key);
      return;
    }
    // A copy of exactly its size: a slice of node-redis's read buffer would hold the whole chunk.
    const copy = Buffer.allocUnsafeSlow(value.length);
    value.copy(copy);
    this.#entries.set(key, { value: copy, expiresAt, cost });
  }
}

/** PTTL's answer for a key that does not exist. */
const KEY_GONE = -2;

interface NearEntry extends LruEntry {
  value: Buffer;
}

interface ReadsInFlight {
  count: number;
  changed: boolean;
}

/** What an entry costs: its key and value, and an estimate of what the Map slot, the entry object and the Buffer take besides. */
function entryCost(key: string, value: Buffer): number {
  return key.length + value.length + ENTRY_OVERHEAD_BYTES;
}

const ENTRY_OVERHEAD_BYTES = 200;
