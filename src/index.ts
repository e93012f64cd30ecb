// The public surface of llmcache, what users need first.
export type { BaseCache, CacheStatsReport } from "./base-cache.js";
export type { ClearOptions, Lease, LeasedLookup, LeaseOptions, LookupOptions, UpdateOptions } from "./call-options.js";
export { DEFAULT_LEASE_MS, DEFAULT_WAIT_MS, type GetOrComputeOptions } from "./single-flight.js";
export { MAX_LEASE_MS } from "./engine/leases.js";
export { TooManyLeaseWaitersError } from "./engine/too-many-lease-waiters-error.js";
export { InMemoryCache, type InMemoryCacheOptions, type InMemoryLookupOptions } from "./in-memory-cache.js";
export { EntryTooLargeError } from "./engine/entry-too-large-error.js";
export { ENTRY_OVERHEAD_BYTES, GROUP_OVERHEAD_BYTES, NAMESPACE_OVERHEAD_BYTES, type EvictionPolicy, type Limits } from "./engine/limits.js";
export { TooManyNamespacesError } from "./engine/too-many-namespaces-error.js";
export type { CacheStats, LeaseStats } from "./engine/stats.js";
export {
  CacheClient,
  DEFAULT_ADDRESS,
  DEFAULT_TIMEOUT_MS,
  type CacheClientOptions,
  type CallOptions,
} from "./client/cache-client.js";
export type { BatchingOptions } from "./client/operation-stream.js";
export type { NearCacheStats } from "./client/near-cache.js";
export { startServer, type RunningServer, type ServerOptions } from "./server/server.js";
export { CacheError, type StatusName } from "./rpc/errors.js";
export type { Generation } from "./generation.js";
export type { ChatMessage, InvalidToolCall, ToolCall, ToolCallChunk, UsageMetadata } from "./chat-message.js";
export type { JsonObject, JsonValue } from "./json.js";
