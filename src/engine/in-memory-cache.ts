import type { BaseCache } from "../base-cache.js";
import { checkKey, copyGenerations, type Generation } from "../generation.js";
import { BoundedStore } from "./bounded-store.js";

export interface InMemoryCacheOptions {
  /** The most entries to hold; the oldest inserted goes first. None: no limit. */
  maxsize?: number | null;
}

/**
 * LangChain's InMemoryCache, in TypeScript: generations keyed by (prompt,
 * llm_string) in this process, optionally bounded by `maxsize`.
 *
 * Unlike LangChain's, it copies values in and out: a caller that changes
 * what it stored or what a lookup returned does not change the cache.
 */
export class InMemoryCache implements BaseCache {
  readonly #store: BoundedStore<Generation[]>;

  constructor(options: InMemoryCacheOptions = {}) {
    this.#store = new BoundedStore(options.maxsize);
  }

  get maxsize(): number | undefined {
    return this.#store.maxsize;
  }

  /** How many entries the cache holds. */
  get size(): number {
    return this.#store.size;
  }

  lookup(prompt: string, llmString: string): Generation[] | null {
    checkKey(prompt, llmString);
    const generations = this.#store.get(prompt, llmString);
    return generations === undefined ? null : copyGenerations(generations);
  }

  update(prompt: string, llmString: string, generations: Generation[]): void {
    checkKey(prompt, llmString);
    this.#store.set(prompt, llmString, copyGenerations(generations));
  }

  clear(): void {
    this.#store.clear();
  }

  async alookup(prompt: string, llmString: string): Promise<Generation[] | null> {
    return this.lookup(prompt, llmString);
  }

  async aupdate(prompt: string, llmString: string, generations: Generation[]): Promise<void> {
    this.update(prompt, llmString, generations);
  }

  async aclear(): Promise<void> {
    this.clear();
  }
}
