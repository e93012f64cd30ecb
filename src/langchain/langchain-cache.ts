import { BaseCache as LangChainBaseCache } from "@langchain/core/caches";
import type { ChatGeneration, Generation as LangChainGeneration } from "@langchain/core/outputs";
import type { BaseCache } from "../base-cache.js";
import type { Generation } from "../generation.js";
import type { JsonObject } from "../json.js";
import { fromStoredMessage, toStoredMessage } from "./messages.js";

export interface LangChainCacheOptions {
  /** The namespace to look up and store in. Default: the cache's own default namespace. */
  namespace?: string;
  /** How long stored entries live, in ms; Infinity: for ever. Default: the cache's default TTL. */
  ttlMs?: number;
  /** Skip reads: every lookup is a miss (what LangChain then computes is still stored). */
  bypass?: boolean;
}

/**
 * llmcache as LangChain JS's cache: pass it as a model's `cache`. It keeps
 * LangChain's key as llmcache's pair (prompt, llm_string) as it is, with no
 * hashing, so two keys never collide, and it never blocks: it uses the
 * cache's async methods only. What is stored is lossless: a chat model's
 * messages come back as instances of the same class, whose toDict() equals
 * the original's, and LangChain Python reads them as its own equivalents.
 */
export class LangChainCache extends LangChainBaseCache<LangChainGeneration[]> {
  readonly cache: BaseCache;
  readonly options: Readonly<LangChainCacheOptions>;

  constructor(cache: BaseCache, options: LangChainCacheOptions = {}) {
    super();
    this.cache = cache;
    this.options = { ...options };
  }

  async lookup(prompt: string, llmKey: string): Promise<LangChainGeneration[] | null> {
    const { namespace, bypass } = this.options;
    const stored = await this.cache.alookup(prompt, llmKey, { namespace, bypass });
    return stored && stored.map(fromStoredGeneration);
  }

  async update(prompt: string, llmKey: string, value: LangChainGeneration[]): Promise<void> {
    const { namespace, ttlMs } = this.options;
    await this.cache.aupdate(prompt, llmKey, value.map(toStoredGeneration), { namespace, ttlMs });
  }
}

function toStoredGeneration(generation: LangChainGeneration | ChatGeneration): Generation {
  const stored: Generation = { text: generation.text };
  if (generation.generationInfo !== undefined) stored.generationInfo = generation.generationInfo as JsonObject;
  if ("message" in generation && generation.message !== undefined) stored.message = toStoredMessage(generation.message);
  return stored;
}

function fromStoredGeneration({ text, generationInfo, message }: Generation): LangChainGeneration | ChatGeneration {
  const generation: LangChainGeneration | ChatGeneration = { text };
  if (generationInfo !== undefined) generation.generationInfo = generationInfo;
  if (message !== undefined) (generation as ChatGeneration).message = fromStoredMessage(message);
  return generation;
}
