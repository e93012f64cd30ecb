import { create, toBinary } from "@bufbuild/protobuf";
import type { UntypedServiceImplementation } from "@grpc/grpc-js";
import {
  CacheService,
  CacheStatsSchema,
  ClearRequestSchema,
  StatsResponseSchema,
  type CacheStats as WireCacheStats,
} from "../../gen/llmcache/v1/cache_pb.js";
import type { CacheStore } from "../engine/cache-store.js";
import type { CacheStats } from "../engine/stats.js";
import { asBuffer, decodeMessage } from "../rpc/codec.js";
import { methodPath } from "../rpc/service-definition.js";
import { streamHandler, unaryHandler } from "./method-handlers.js";
import {
  readBatchLookupRequest,
  readBatchUpdateRequest,
  readLookupRequest,
  readStreamRequest,
  readUpdateRequest,
  type WireLookup,
  type WireOperation,
  type WireUpdate,
} from "./request-reader.js";
import { encodeBatchLookupResponse, encodeLookupResponse, encodeStreamResponse, encodeUpdateResponse, type WireResult } from "./response-writer.js";
import { toFailure } from "./status.js";

const EMPTY = Buffer.alloc(0);

/** What each method does with one request message: bytes in, bytes out. */
export type ByteMethods = Record<string, (request: Buffer) => Buffer>;

/** The grpc-js handlers of llmcache.v1.CacheService over a store. */
export function cacheServiceHandlers(store: CacheStore<string>): UntypedServiceImplementation {
  const methods = cacheServiceMethods(store);
  const handlers: UntypedServiceImplementation = {};
  for (const method of CacheService.methods) {
    const implementation = methods[method.localName]!;
    handlers[method.localName] =
      method.methodKind === "bidi_streaming" ? streamHandler(method, implementation) : unaryHandler(method, implementation);
  }
  return handlers;
}

/**
 * The methods of llmcache.v1.CacheService over a store that holds, for each
 * key's bytes, its generations' bytes (see request-reader.ts): the store
 * never sees a decoded message, and no caller ever shares its values. The
 * stream's method answers one request message of the stream.
 */
export function cacheServiceMethods(store: CacheStore<string>): ByteMethods {
  const { lookup, update, clear, batchLookup, batchUpdate, stream, stats } = CacheService.method;
  const streamPath = methodPath(stream);

  function get({ namespace, prompt, llmString, bypass }: WireLookup): string | undefined {
    if (!bypass) return store.get(namespace, prompt, llmString);
    store.bypass(namespace);
    return undefined;
  }

  function set({ namespace, prompt, llmString, generations, ttlMs, noStore, onlyIfAbsent }: WireUpdate): boolean {
    if (noStore) {
      store.skipStore(namespace);
      return false;
    }
    // The key and value strings hold one character per byte: their lengths are their sizes.
    const bytes = prompt.length + llmString.length + generations.length;
    return store.set(namespace, prompt, llmString, generations, bytes, { ttlMs, onlyIfAbsent });
  }

  function execute(operation: WireOperation): WireResult {
    try {
      switch (operation.kind) {
        case "lookup":
          return { id: operation.id, kind: "lookup", stored: get(operation.lookup) };
        case "update":
          return { id: operation.id, kind: "update", stored: set(operation.update) };
        case "invalid":
          throw operation.problem;
      }
    } catch (error) {
      return { id: operation.id, kind: "error", ...toFailure(streamPath, error) };
    }
  }

  return {
    [lookup.localName]: (request) => encodeLookupResponse(get(readLookupRequest(request))),
    [update.localName]: (request) => encodeUpdateResponse(set(readUpdateRequest(request))),
    [clear.localName]: (request) => {
      const { namespace, allNamespaces } = decodeMessage(ClearRequestSchema, request);
      store.clear(allNamespaces ? undefined : asKeyBytes(namespace));
      return EMPTY;
    },
    [batchLookup.localName]: (request) => encodeBatchLookupResponse(readBatchLookupRequest(request).map(get)),
    [batchUpdate.localName]: (request) => {
      // Read and check all first: a malformed or oversized update anywhere applies none of them.
      const updates = readBatchUpdateRequest(request);
      for (const { namespace, prompt, llmString, generations } of updates) {
        store.checkFits(namespace, prompt.length + llmString.length + generations.length);
      }
      for (const entry of updates) set(entry);
      return EMPTY;
    },
    [stream.localName]: (request) => encodeStreamResponse(readStreamRequest(request).map(execute)),
    [stats.localName]: () => {
      const report = store.stats();
      const namespaces: Record<string, WireCacheStats> = {};
      for (const [name, namespaceStats] of Object.entries(report.namespaces)) {
        namespaces[fromKeyBytes(name)] = toWireStats(namespaceStats);
      }
      return asBuffer(toBinary(StatsResponseSchema, create(StatsResponseSchema, { total: toWireStats(report.total), namespaces })));
    },
  };
}

/** A name as the store holds it: its UTF-8 bytes read as latin1, as the request reader reads keys. */
export function asKeyBytes(name: string): string {
  return Buffer.from(name, "utf8").toString("latin1");
}

function fromKeyBytes(name: string): string {
  return Buffer.from(name, "latin1").toString("utf8");
}

function toWireStats(stats: CacheStats): WireCacheStats {
  return create(CacheStatsSchema, {
    entries: BigInt(stats.entries),
    bytes: BigInt(stats.bytes),
    hits: BigInt(stats.hits),
    misses: BigInt(stats.misses),
    bypasses: BigInt(stats.bypasses),
    hitRatio: stats.hitRatio,
    evictions: { size: BigInt(stats.evictions.size), bytes: BigInt(stats.evictions.bytes), ttl: BigInt(stats.evictions.ttl) },
    expirations: BigInt(stats.expirations),
    updatesNotStored: BigInt(stats.updatesNotStored),
  });
}
