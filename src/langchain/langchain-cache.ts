import { BaseCache as LangChainBaseCache } from "@langchain/core/caches";
import type { ChatGeneration, Generation as LangChainGeneration } from "@langchain/core/outputs";
import type { BaseCache } from "../base-cache.js";
import { checkLeaseOptions, checkLookupOptions, checkUpdateOptions, type LeaseOptions } from "../call-options.js";
import type { Generation } from "../generation.js";
import { describe, type JsonObject } from "../json.js";
import { pairKey } from "../engine/leases.js";
import { DEFAULT_LEASE_MS, DEFAULT_WAIT_MS } from "../single-flight.js";
import { fromStoredMessage, toStoredMessage } from "./messages.js";

export interface LangChainCacheOptions {
  /** The namespace to look up and store in. Default: the cache's own default namespace. */
  namespace?: string;
  /** How long stored entries live, in ms; Infinity: for ever. Default: the cache's default TTL. */
  ttlMs?: number;
  /** Skip reads: every lookup is a miss (what LangChain then computes is still stored). */
  bypass?: boolean;
  /**
   * Single flight: of many callers that miss the same pair at once, across
   * processes, one calls the model and the others wait for its answer.
   * `true` takes a lease of DEFAULT_LEASE_MS (30 s: the longest a model
   * call is expected to take) and waits up to DEFAULT_WAIT_MS (60 s); or
   * give `{ leaseMs, waitMs }`. If the model call throws, LangChain stores
   * nothing and the lease expires: a waiter then takes over. If the update
   * fails, the lease is released and a waiter takes over at once.
   *
   * One call of `generate()` that repeats a prompt looks the repeat up while
   * it holds the first one's lease, and so waits for itself until the lease
   * expires: JavaScript gives the adapter no way to tell that lookup from
   * another caller's. Give such calls distinct prompts, or no single flight.
   */
  singleFlight?: boolean | Partial<LeaseOptions>;
}

/** Most tokens remembered for updates still to come; past it, those whose lease has expired are dropped. */
const REMEMBERED_TOKENS = 1_000;

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
  readonly #lease: Required<LeaseOptions> | undefined;
  /**
   * The leases this adapter's lookups were granted, by pair, for the
   * update LangChain makes once the model answers. A lease whose update
   * never comes (the model threw) is forgotten once it has expired.
   */
  readonly #tokens = new Map<string, { token: string; expiresAt: number }>();

  constructor(cache: BaseCache, options: LangChainCacheOptions = {}) {
    super();
    checkCache(cache);
    this.cache = cache;
    this.options = { ...options };
    // Checked now, not at the update after the model has answered.
    checkLookupOptions({ namespace: options.namespace, bypass: options.bypass }, "");
    checkUpdateOptions({ namespace: options.namespace, ttlMs: options.ttlMs }, "");
    const { singleFlight } = options;
    if (singleFlight !== undefined && typeof singleFlight !== "boolean" && (singleFlight === null || typeof singleFlight !== "object")) {
      throw new TypeError(`singleFlight must be a boolean or { leaseMs?, waitMs? }, got ${describe(singleFlight)}`);
    }
    if (singleFlight !== undefined && singleFlight !== false && options.bypass) {
      throw new TypeError("singleFlight with bypass: a lookup that bypasses the cache never takes or waits for a lease");
    }
    this.#lease =
      singleFlight === undefined || singleFlight === false
        ? undefined
        : checkLeaseOptions({ leaseMs: DEFAULT_LEASE_MS, waitMs: DEFAULT_WAIT_MS, ...(singleFlight === true ? {} : singleFlight) });
  }

  async lookup(prompt: string, llmKey: string): Promise<LangChainGeneration[] | null> {
    const { namespace, bypass } = this.options;
    if (!this.#lease) {
      const stored = await this.cache.alookup(prompt, llmKey, { namespace, bypass });
      return stored && stored.map(fromStoredGeneration);
    }
    const { generations, lease } = await this.cache.alookup(prompt, llmKey, { namespace, lease: this.#lease });
    if (lease) this.#remember(prompt, llmKey, lease.token, lease.leaseMs);
    return generations && generations.map(fromStoredGeneration);
  }

  /**
   * Stores the model's answer, filling the lease this adapter's lookup of
   * the pair was granted. An update that fails (a value the cache cannot
   * carry, an entry too large) releases the lease, so that the callers
   * waiting for it do not wait out its time.
   */
  async update(prompt: string, llmKey: string, value: LangChainGeneration[]): Promise<void> {
    const { namespace, ttlMs } = this.options;
    const leaseToken = this.#take(prompt, llmKey);
    try {
      await this.cache.aupdate(prompt, llmKey, value.map(toStoredGeneration), { namespace, ttlMs, leaseToken });
    } catch (error) {
      // A failed release is harmless: the lease expires then.
      if (leaseToken !== undefined) await this.cache.areleaseLease(prompt, llmKey, leaseToken, { namespace }).catch(() => false);
      throw error;
    }
  }

  #remember(prompt: string, llmKey: string, token: string, leaseMs: number): void {
    const now = Date.now();
    if (this.#tokens.size >= REMEMBERED_TOKENS) {
      for (const [pair, { expiresAt }] of this.#tokens) if (expiresAt <= now) this.#tokens.delete(pair);
    }
    // Still full of live leases: the oldest goes (its fill then counts as stale, which is safe).
    if (this.#tokens.size >= REMEMBERED_TOKENS) this.#tokens.delete(this.#tokens.keys().next().value!);
    this.#tokens.set(pairKey(prompt, llmKey), { token, expiresAt: now + leaseMs });
  }

  #take(prompt: string, llmKey: string): string | undefined {
    const key = pairKey(prompt, llmKey);
    const remembered = this.#tokens.get(key);
    this.#tokens.delete(key);
    return remembered?.token;
  }
}

/** The cache it adapts: llmcache's, whose async methods it calls. */
function checkCache(cache: unknown): void {
  const methods = cache as Partial<Record<"alookup" | "aupdate" | "areleaseLease", unknown>> | null | undefined;
  if (typeof methods?.alookup !== "function" || typeof methods.aupdate !== "function" || typeof methods.areleaseLease !== "function") {
    throw new TypeError(`cache must be a CacheClient or an InMemoryCache, got ${describe(cache)}: new LangChainCache(new CacheClient({ address }))`);
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
