import type { BackendLookup, BackendPair, CacheBackend } from "./cache-backend.js";
import { updateThroughLeases, type LeasedUpdate } from "./leased-update.js";
import { LeaseTable, type LeasedLookup } from "./leases.js";
import type { CacheStats } from "./stats.js";
import type { StatsReport, Store } from "./store.js";

export interface LocalBackendOptions<V> {
  /** Single flight's leases over the store; every store of a pair goes through it. Default: a table of its own. */
  leases?: LeaseTable;
  /**
   * How to copy a value the store lends (see Store): given, handed-out
   * values are the store's own, and a lookup answered after a wait gets a
   * copy, since other writes came between its read and its reply.
   */
  copyLent?: (value: V) => V;
}

/**
 * The in-memory store of this process as a CacheBackend: every answer is
 * synchronous unless a lookup waits for a lease's fill, and the store is
 * always available.
 */
export class LocalBackend<V> implements CacheBackend<V> {
  readonly store: Store<V>;
  readonly leases: LeaseTable;
  readonly lendsValues: boolean;
  readonly available = true;
  readonly #copyLent: (value: V) => V;

  constructor(store: Store<V>, options: LocalBackendOptions<V> = {}) {
    this.store = store;
    this.leases = options.leases ?? new LeaseTable({ count: (namespace, event) => store.countLease(namespace, event) });
    this.lendsValues = options.copyLent !== undefined;
    this.#copyLent = options.copyLent ?? ((value) => value);
  }

  get leasesOutstanding(): number {
    return this.leases.outstanding;
  }

  get leaseWaiters(): number {
    return this.leases.waiting;
  }

  lookup(namespace: string, prompt: string, llmString: string, options: BackendLookup): LeasedLookup<V> | Promise<LeasedLookup<V>> {
    const value = this.#get(namespace, prompt, llmString, options.bypass);
    if (value !== undefined) return { kind: "hit", value };
    if (options.leaseMs === 0) return MISS;
    const reread = () => {
      const found = this.store.peek(namespace, prompt, llmString);
      return found === undefined ? undefined : this.#copyLent(found);
    };
    return this.leases.afterMiss(namespace, prompt, llmString, reread, {
      leaseMs: options.leaseMs,
      waitMs: options.waitMs,
      signal: options.waitMs > 0 ? options.signal?.() : undefined,
    });
  }

  lookupMany(pairs: readonly BackendPair[]): (V | undefined)[] {
    return pairs.map(({ namespace, prompt, llmString, bypass }) => this.#get(namespace, prompt, llmString, bypass));
  }

  update(namespace: string, prompt: string, llmString: string, value: V, bytes: number, options: LeasedUpdate): boolean {
    return updateThroughLeases(this.store, this.leases, namespace, prompt, llmString, value, bytes, options);
  }

  release(namespace: string, prompt: string, llmString: string, token: string): boolean {
    return this.leases.release(namespace, prompt, llmString, token);
  }

  clear(namespace?: string): void {
    this.store.clear(namespace);
    this.leases.clear(namespace); // after the store: their waiters must find the pairs gone
  }

  checkFits(namespace: string, bytes: number): void {
    this.store.checkFits(namespace, bytes);
  }

  checkNamespacesFit(namespaces: Iterable<string>): void {
    this.store.checkNamespacesFit(namespaces);
  }

  stats(): StatsReport {
    return this.store.stats();
  }

  total(): CacheStats {
    return this.store.total();
  }

  onAvailabilityChange(): void {
    // Memory is always there.
  }

  stopWaiting(error: Error): void {
    this.leases.close(error);
  }

  async close(): Promise<void> {}

  #get(namespace: string, prompt: string, llmString: string, bypass: boolean): V | undefined {
    if (!bypass) return this.store.get(namespace, prompt, llmString);
    this.store.bypass(namespace);
    return undefined;
  }
}

const MISS: LeasedLookup<never> = { kind: "miss" };
