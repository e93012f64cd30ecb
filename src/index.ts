// The public surface of llmcache, what users need first.
export type { BaseCache } from "./base-cache.js";
export { InMemoryCache, type InMemoryCacheOptions } from "./engine/in-memory-cache.js";
export type { Generation } from "./generation.js";
export type { ChatMessage, InvalidToolCall, ToolCall, ToolCallChunk, UsageMetadata } from "./chat-message.js";
export type { JsonObject, JsonValue } from "./json.js";
