import type { BaseCache } from "./base-cache.js";
import { checkGetOrComputeOptions, type LookupOptions, type UpdateOptions } from "./call-options.js";
import type { Generation } from "./generation.js";

/** getOrCompute's lease and wait, unless its options say otherwise: model calls take seconds. */
export const DEFAULT_LEASE_MS = 30_000;
/** Long enough to outlast one lease that expires unfilled, so a waiter can take over from a leaseholder that died. */
export const DEFAULT_WAIT_MS = 60_000;

export interface GetOrComputeOptions extends Pick<LookupOptions, "namespace">, Pick<UpdateOptions, "ttlMs"> {
  /** How long the lease lasts, in ms: what `compute` may take. Default DEFAULT_LEASE_MS. */
  leaseMs?: number;
  /** How long to wait for another caller's `compute`, in ms. Default DEFAULT_WAIT_MS. */
  waitMs?: number;
  /** Each call's deadline, in ms (remote caches; a waiting lookup gets waitMs on top). */
  timeoutMs?: number;
  /** Aborting it stops the wait and the calls (remote caches). */
  signal?: AbortSignal;
}

/**
 * getOrCompute for any BaseCache. A lookup whose wait ran out (the
 * leaseholder is slow) computes too and stores without a token: it ends
 * the holder's lease, whose later fill is then refused as stale.
 */
export async function getOrCompute(
  cache: Pick<BaseCache, "alookup" | "aupdate" | "areleaseLease">,
  prompt: string,
  llmString: string,
  compute: () => Generation[] | Promise<Generation[]>,
  options: GetOrComputeOptions = {},
): Promise<Generation[]> {
  if (typeof compute !== "function") throw new TypeError("compute must be a function that returns the generations");
  checkGetOrComputeOptions(options);
  const { namespace, ttlMs, timeoutMs, signal } = options;
  const lease = { leaseMs: options.leaseMs ?? DEFAULT_LEASE_MS, waitMs: options.waitMs ?? DEFAULT_WAIT_MS };
  // Held in variables, not written in the calls: a cache takes the call options it knows (CacheClient: timeoutMs and signal).
  const lookupOptions = { namespace, lease, timeoutMs, signal };
  const found = await cache.alookup(prompt, llmString, lookupOptions);
  if (found.generations) return found.generations;
  let generations: Generation[];
  try {
    generations = await compute();
  } catch (error) {
    if (found.lease) {
      // The caller's error is what matters; a release that fails too only means the lease expires instead.
      await cache.areleaseLease(prompt, llmString, found.lease.token, { namespace }).catch(() => false);
    }
    throw error;
  }
  const updateOptions = { namespace, ttlMs, leaseToken: found.lease?.token, timeoutMs, signal };
  await cache.aupdate(prompt, llmString, generations, updateOptions);
  return generations;
}
