import type { BaseCache, CacheStatsReport } from "../base-cache.js";
import {
  checkClearOptions,
  checkLookupOptions,
  checkNamespace,
  checkUpdateOptions,
  type ClearOptions,
  type LookupOptions,
  type UpdateOptions,
} from "../call-options.js";
import { checkKey, copyGenerations, type Generation } from "../generation.js";
import { cloneJson, type JsonValue } from "../json.js";
import { CacheStore, type StoreOptions } from "./cache-store.js";
import { reclaimInBackground } from "./reclaimer.js";

export interface InMemoryCacheOptions extends StoreOptions {
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
 */
export class InMemoryCache implements BaseCache {
  readonly namespace: string;
  readonly #store: CacheStore<Generation[]>;

  constructor(options: InMemoryCacheOptions = {}) {
    this.#store = new CacheStore(options);
    this.namespace = options.namespace === undefined ? "" : checkNamespace(options.namespace);
    const interval = options.reclaimIntervalMs ?? 1_000;
    if (interval > 0) reclaimInBackground(this.#store, interval);
  }

  get maxsize(): number | undefined {
    return this.#store.limits.maxsize;
  }

  /** How many entries the cache holds. */
  get size(): number {
    return this.#store.size;
  }

  lookup(prompt: string, llmString: string, options?: LookupOptions): Generation[] | null {
    checkKey(prompt, llmString);
    const { namespace, bypass } = checkLookupOptions(options, this.namespace);
    if (bypass) {
      this.#store.bypass(namespace);
      return null;
    }
    const generations = this.#store.get(namespace, prompt, llmString);
    // Stored copies were checked on the way in: handing one out needs a copy, not another check.
    return generations === undefined ? null : cloneJson(generations as unknown as JsonValue) as unknown as Generation[];
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
  }

  stats(): CacheStatsReport {
    return this.#store.stats();
  }

  async alookup(prompt: string, llmString: string, options?: LookupOptions): Promise<Generation[] | null> {
    return this.lookup(prompt, llmString, options);
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
    const { namespace, ttlMs, noStore } = checkUpdateOptions(options, this.namespace);
    if (noStore) {
      this.#store.skipStore(namespace);
      return false;
    }
    return this.#store.set(namespace, prompt, llmString, copy, entryBytes(prompt, llmString, copy), { ttlMs, onlyIfAbsent });
  }
}

/** An entry's key and value in UTF-8 bytes, as the server would count them (the value as JSON). */
function entryBytes(prompt: string, llmString: string, generations: Generation[]): number {
  return Buffer.byteLength(prompt) + Buffer.byteLength(llmString) + Buffer.byteLength(JSON.stringify(generations));
}
