import { BasicPooledClientSideCache, type RedisArgument } from "@redis/client";
import { ENTRY_PREFIX } from "./keys.js";
import type { NearCache } from "./near-cache.js";

/**
 * Feeds a NearCache from Redis's client-side caching protocol. node-redis
 * takes a "client-side cache provider" on each connection it opens (every
 * node of a Cluster, and again after every reconnection and failover): it
 * sends the provider's tracking command in the connection's handshake and
 * hands it RESP3 `invalidate` pushes. This provider caches nothing itself
 * (llmcache's commands are sent raw, which node-redis never caches); it
 * only listens.
 *
 * Tracking is in broadcast mode on the entries' prefix: a node reports a
 * change of any llmcache entry, by any client, whether or not this
 * connection read it, so reads may go over any connection. Whenever a
 * connection fails or is replaced, invalidations may be lost: everything is
 * dropped, and nothing is kept until node-redis says the nodes are ready.
 */
export class InvalidationListener extends BasicPooledClientSideCache {
  readonly #near: NearCache;

  constructor(near: NearCache) {
    super();
    this.#near = near;
  }

  override trackingOn(): string[] {
    return ["CLIENT", "TRACKING", "ON", "BCAST", "PREFIX", ENTRY_PREFIX];
  }

  override invalidate(key: RedisArgument | null): void {
    if (key === null) this.#near.invalidateAll();
    else this.#near.invalidate(typeof key === "string" ? key : key.toString("latin1"));
  }

  override clear(): void {
    this.#near.invalidateAll();
  }

  override onError(): void {
    this.#near.invalidateAll();
  }

  override onClose(): void {
    this.#near.invalidateAll();
  }

  override onPoolClose(): void {
    this.#near.invalidateAll();
  }

  /** A Cluster replaces its node connections (after a failover, a slot move): changes may go unheard meanwhile. */
  override disable(): void {
    this.#near.suspend(SLOT_MAP_REFRESH);
  }

  override enable(): void {
    this.#near.resume(SLOT_MAP_REFRESH);
  }
}

const SLOT_MAP_REFRESH = "a Cluster replacing its node connections";
