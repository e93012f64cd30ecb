/** What an ExpiringLru entry carries besides its value: when it expires (ms on the cache's clock), and what it costs. */
export interface LruEntry {
  expiresAt: number;
  cost: number;
}

/**
 * Entries by key within a budget of bytes, the least recently used evicted
 * first, each dropped once its time is up: what a replica's near cache
 * and a client's share. `onRemove` hears of every entry that leaves,
 * however it leaves, but for clear().
 */
export class ExpiringLru<E extends LruEntry> {
  readonly maxBytes: number;
  #bytes = 0;
  /** Least recently used first: Map order is recency, the next eviction takes the first key. */
  readonly #entries = new Map<string, E>();
  readonly #onRemove: (key: string, entry: E) => void;

  /** `now`: a clock in ms that never goes back. */
  constructor(maxBytes: number, readonly now: () => number, onRemove: (key: string, entry: E) => void = () => {}) {
    this.maxBytes = maxBytes;
    this.#onRemove = onRemove;
  }

  get bytes(): number {
    return this.#bytes;
  }

  get size(): number {
    return this.#entries.size;
  }

  /** The entry for `key` if its time is not up, now the most recently used. */
  use(key: string): E | undefined {
    const entry = this.peek(key);
    if (entry === undefined) return undefined;
    this.#entries.delete(key);
    this.#entries.set(key, entry);
    return entry;
  }

  /** The entry for `key` if its time is not up, its recency left as it was. */
  peek(key: string): E | undefined {
    const entry = this.#entries.get(key);
    if (entry === undefined) return undefined;
    if (entry.expiresAt > this.now()) return entry;
    this.delete(key);
    return undefined;
  }

  /**
   * Keeps `entry`, replacing what `key` held, then evicts down to the
   * budget. Says whether it was kept: one larger than the whole budget is
   * not (and what `key` held is gone all the same).
   */
  set(key: string, entry: E): boolean {
    this.delete(key);
    if (entry.cost > this.maxBytes) return false;
    this.#entries.set(key, entry);
    this.#bytes += entry.cost;
    for (const [oldest, old] of this.#entries) {
      if (this.#bytes <= this.maxBytes) break;
      this.delete(oldest, old);
    }
    return true;
  }

  delete(key: string, entry = this.#entries.get(key)): void {
    if (entry === undefined) return;
    this.#entries.delete(key);
    this.#bytes -= entry.cost;
    this.#onRemove(key, entry);
  }

  clear(): void {
    this.#entries.clear();
    this.#bytes = 0;
  }
}
