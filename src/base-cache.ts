import type { Generation } from "./generation.js";

/**
 * The operations of LangChain's BaseCache: a synchronous method and its
 * async twin for each. InMemoryCache (in this process) and CacheClient (a
 * remote llmcache server) both implement it, so code written against one
 * runs against the other unchanged.
 *
 * A miss is `null`; a hit may be an empty list. What a lookup returns is the
 * caller's own copy, and what an update is given is copied before it is kept.
 */
export interface BaseCache {
  lookup(prompt: string, llmString: string): Generation[] | null;
  update(prompt: string, llmString: string, generations: Generation[]): void;
  clear(): void;
  alookup(prompt: string, llmString: string): Promise<Generation[] | null>;
  aupdate(prompt: string, llmString: string, generations: Generation[]): Promise<void>;
  aclear(): Promise<void>;
}
