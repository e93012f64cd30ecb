import type { BaseCache, CacheStatsReport } from "./base-cache.js";
import {
  checkClearOptions,
  checkLookupOptions,
  checkNamespace,
  checkUpdateOptions,
  type CheckedLookupOptions,
  type ClearOptions,
  type LeasedLookup,
  type LeaseOptions,
  type LookupOptions,
  type UpdateOptions,
} from "./call-options.js";
import { checkKey, copyGenerations, type Generation } from "./generation.js";
import { cloneJson, unescapedJsonBytes, type JsonValue } from "./json.js";
import { getOrCompute, type GetOrComputeOptions } from "./single-flight.js";
import { CacheStore, type StoreOptions } from "./engine/cache-store.js";
import type { Store } from "./engine/store.js";
import { updateThroughLeases } from "./engine/leased-update.js";
import { LeaseTable, type LeasedLookup as TableOutcome, type WaiterLimits } from "./engine/leases.js";
import { reclaimInBackground } from "./engine/reclaimer.js";

/** An in-process lookup's options: a wait for a lease's fill may be cancelled. */
export type InMemoryLookupOptions = LookupOptions & { signal?: AbortSignal };

export interface InMemoryCacheOptions extends StoreOptions, Partial<WaiterLimits> {
  /** The namespace of the calls that do not name one. Default "". */
  namespace?: string;
  /**
   * How often to look for expired entries, in ms (a timer that does not keep
   * the process alive). Default 1000; 0: never, though lookups still never
   * return an expired entry.
   */
  reclaimIntervalMs?: number;
}

/**
 * LangChain's InMemoryCache, in TypeScript: generations keyed by (prompt,
 * llm_string) in this process. With no option it behaves as LangChain's;
 * `maxsize`, `maxBytes`, `defaultTtlMs`, `policy` and per-namespace limits
 * are llmcache's (see CacheStore).
 *
 * Unlike LangChain's, it copies values in and out: a caller that changes
 * what it stored or what a lookup returned does not change the cache.
 *
 * Single flight (the `lease` lookup option, getOrCompute) coalesces this
 * process's callers, as the server does for all of its callers.
 */
export class InMemoryCache implements BaseCache {
  readonly namespace: string;
  readonly #store: Store<Generation[]>;
  readonly #leases: LeaseTable;

  constructor(options: InMemoryCacheOptions = {}) {
    const store = new CacheStore<Generation[]>(options);
    this.#store = store;
    this.#leases = new LeaseTable({
      maxWaiters: options.maxWaiters,
      maxWaitersPerPair: options.maxWaitersPerPair,
      count: (namespace, event) => this.#store.countLease(namespace, event),
    });
    this.namespace = options.namespace === undefined ? "" : checkNamespace(options.namespace);
    const interval = options.reclaimIntervalMs ?? 1_000;
    if (interval > 0) reclaimInBackground(store, interval);
  }

  get maxsize(): number | undefined {
    return this.#store.limits.maxsize;
  }

  /** How many entries the cache holds. */
  get size(): number {
    return this.#store.size;
  }

  /** Synchronous: with a lease held by another caller it never waits (nothing could fill the pair meanwhile). */
  lookup(prompt: string, llmString: string, options: LookupOptions & { lease: LeaseOptions }): LeasedLookup;
  lookup(prompt: string, llmString: string, options?: LookupOptions): Generation[] | null;
  lookup(prompt: string, llmString: string, options?: LookupOptions): Generation[] | null | LeasedLookup {
    checkKey(prompt, llmString);
    const checked = checkLookupOptions(options, this.namespace);
    const generations = this.#get(prompt, llmString, checked);
    if (!checked.lease) return generations;
    if (generations) return { generations, lease: null };
    const lease = { ...checked.lease, waitMs: 0 };
    return leasedLookup(this.#leases.afterMiss(checked.namespace, prompt, llmString, () => undefined, lease) as TableOutcome<Generation[]>);
  }

  releaseLease(prompt: string, llmString: string, token: string, options?: Pick<LookupOptions, "namespace">): boolean {
    checkKey(prompt, llmString);
    const { namespace } = checkLookupOptions(options, this.namespace);
    if (typeof token !== "string" || token === "") throw new TypeError("token must be the non-empty token of a lease");
    return this.#leases.release(namespace, prompt, llmString, token);
  }

  async areleaseLease(prompt: string, llmString: string, token: string, options?: Pick<LookupOptions, "namespace">): Promise<boolean> {
    return this.releaseLease(prompt, llmString, token, options);
  }

  getOrCompute(
    prompt: string,
    llmString: string,
    compute: () => Generation[] | Promise<Generation[]>,
    options?: GetOrComputeOptions,
  ): Promise<Generation[]> {
    return getOrCompute(this, prompt, llmString, compute, options);
  }

  /** The pair's generations, counted as a hit or miss; null for a miss or a bypass. */
  #get(prompt: string, llmString: string, { namespace, bypass }: CheckedLookupOptions): Generation[] | null {
    if (bypass) {
      this.#store.bypass(namespace);
      return null;
    }
    return copyOut(this.#store.get(namespace, prompt, llmString));
  }

  update(prompt: string, llmString: string, generations: Generation[], options?: UpdateOptions): void {
    this.#update(prompt, llmString, generations, options, false);
  }

  updateIfAbsent(prompt: string, llmString: string, generations: Generation[], options?: UpdateOptions): boolean {
    return this.#update(prompt, llmString, generations, options, true);
  }

  clear(options?: ClearOptions): void {
    const { namespace, allNamespaces } = checkClearOptions(options, this.namespace);
    this.#store.clear(allNamespaces ? undefined : namespace);
    this.#leases.clear(allNamespaces ? undefined : namespace); // after the store: their waiters must find the pairs gone
  }

  stats(): CacheStatsReport {
    return this.#store.stats();
  }

  alookup(prompt: string, llmString: string, options: InMemoryLookupOptions & { lease: LeaseOptions }): Promise<LeasedLookup>;
  alookup(prompt: string, llmString: string, options?: InMemoryLookupOptions): Promise<Generation[] | null>;
  async alookup(prompt: string, llmString: string, options?: InMemoryLookupOptions): Promise<Generation[] | null | LeasedLookup> {
    checkKey(prompt, llmString);
    const checked = checkLookupOptions(options, this.namespace);
    const generations = this.#get(prompt, llmString, checked);
    if (!checked.lease) return generations;
    if (generations) return { generations, lease: null };
    const { namespace } = checked;
    const reread = () => this.#store.peek(namespace, prompt, llmString);
    const signal = options?.signal;
    return leasedLookup(await this.#leases.afterMiss(namespace, prompt, llmString, reread, { ...checked.lease, signal }));
  }

  async aupdate(prompt: string, llmString: string, generations: Generation[], options?: UpdateOptions): Promise<void> {
    this.update(prompt, llmString, generations, options);
  }

  async aupdateIfAbsent(prompt: string, llmString: string, generations: Generation[], options?: UpdateOptions): Promise<boolean> {
    return this.updateIfAbsent(prompt, llmString, generations, options);
  }

  async aclear(options?: ClearOptions): Promise<void> {
    this.clear(options);
  }

  async astats(): Promise<CacheStatsReport> {
    return this.stats();
  }

  #update(prompt: string, llmString: string, generations: Generation[], options: UpdateOptions | undefined, onlyIfAbsent: boolean): boolean {
    checkKey(prompt, llmString);
    const copy = copyGenerations(generations);
    const { namespace, ...update } = checkUpdateOptions(options, this.namespace);
    const bytes = entryBytes(prompt, llmString, copy);
    return updateThroughLeases(this.#store, this.#leases, namespace, prompt, llmString, copy, bytes, { ...update, onlyIfAbsent });
  }
}

/** Stored copies were checked on the way in: handing one out needs a copy, not another check. */
function copyOut(generations: Generation[] | undefined): Generation[] | null {
  return generations === undefined ? null : (cloneJson(generations as unknown as JsonValue) as unknown as Generation[]);
}

function leasedLookup(outcome: TableOutcome<Generation[]>): LeasedLookup {
  switch (outcome.kind) {
    case "hit":
      return { generations: copyOut(outcome.value), lease: null };
    case "lease":
      return { generations: null, lease: outcome.lease };
    case "miss":
      return { generations: null, lease: null };
  }
}

/** An entry's key and value in UTF-8 bytes: the value as JSON, less its escapes (see unescapedJsonBytes). */
function entryBytes(prompt: string, llmString: string, generations: Generation[]): number {
  return Buffer.byteLength(prompt) + Buffer.byteLength(llmString) + unescapedJsonBytes(generations as unknown as JsonValue);
}
