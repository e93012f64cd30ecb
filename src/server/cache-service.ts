import { create, toBinary } from "@bufbuild/protobuf";
import type { UntypedServiceImplementation } from "@grpc/grpc-js";
import {
  CacheService,
  CacheStatsSchema,
  ClearRequestSchema,
  StatsRequestSchema,
  StatsResponseSchema,
  type CacheStats as WireCacheStats,
} from "../../gen/llmcache/v1/cache_pb.js";
import type { CacheStore } from "../engine/cache-store.js";
import type { CacheStats } from "../engine/stats.js";
import { asBuffer, decodeMessage } from "../rpc/codec.js";
import { CacheError } from "../rpc/errors.js";
import { methodPath } from "../rpc/service-definition.js";
import type { Principal } from "./auth/principal.js";
import { streamHandler, unaryHandler, type HandlerContext, type MethodImplementation } from "./method-handlers.js";
import type { RequestLimits } from "./request-limits.js";
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

/** The grpc-js handlers of llmcache.v1.CacheService over a store. */
export function cacheServiceHandlers(store: CacheStore<string>, limits: RequestLimits, context: HandlerContext): UntypedServiceImplementation {
  const methods = cacheServiceMethods(store, limits, context.observer.failed);
  const handlers: UntypedServiceImplementation = {};
  for (const method of CacheService.methods) {
    const implementation = methods[method.localName]!;
    handlers[method.localName] =
      method.methodKind === "bidi_streaming" ? streamHandler(method, implementation, context) : unaryHandler(method, implementation, context);
  }
  return handlers;
}

/**
 * The methods of llmcache.v1.CacheService over a store that holds, for each
 * key's bytes, its generations' bytes (see request-reader.ts): the store
 * never sees a decoded message, and no caller ever shares its values. Each
 * operation is checked against the caller's rights on its namespace. The
 * stream's method answers one request message of the stream.
 */
export function cacheServiceMethods(
  store: CacheStore<string>,
  limits: RequestLimits,
  logFailure?: (path: string, error: unknown) => void,
): Record<string, MethodImplementation> {
  const { lookup, update, clear, batchLookup, batchUpdate, stream, stats } = CacheService.method;
  const streamPath = methodPath(stream);

  function get({ namespace, prompt, llmString, bypass }: WireLookup, principal: Principal): string | undefined {
    if (!principal.canRead(namespace)) throw denied(principal, "read", namespace);
    if (!bypass) return store.get(namespace, prompt, llmString);
    store.bypass(namespace);
    return undefined;
  }

  function set({ namespace, prompt, llmString, generations, ttlMs, noStore, onlyIfAbsent }: WireUpdate, principal: Principal): boolean {
    if (!principal.canWrite(namespace)) throw denied(principal, "write", namespace);
    if (noStore) {
      store.skipStore(namespace);
      return false;
    }
    return store.set(namespace, prompt, llmString, generations, entryBytes({ prompt, llmString, generations }), { ttlMs, onlyIfAbsent });
  }

  function execute(operation: WireOperation, principal: Principal): WireResult {
    try {
      switch (operation.kind) {
        case "lookup":
          return { id: operation.id, kind: "lookup", stored: get(operation.lookup, principal) };
        case "update":
          return { id: operation.id, kind: "update", stored: set(operation.update, principal) };
        case "invalid":
          throw operation.problem;
      }
    } catch (error) {
      return { id: operation.id, kind: "error", ...toFailure(streamPath, error, logFailure) };
    }
  }

  return {
    [lookup.localName]: (request, principal) => encodeLookupResponse(get(readLookupRequest(request, limits), principal)),
    [update.localName]: (request, principal) => encodeUpdateResponse(set(readUpdateRequest(request, limits), principal)),
    [clear.localName]: (request, principal) => {
      const { namespace, allNamespaces } = decodeMessage(ClearRequestSchema, request);
      const target = allNamespaces ? undefined : asKeyBytes(namespace);
      if (!principal.canClear(target)) throw denied(principal, "clear", target);
      store.clear(target);
      return EMPTY;
    },
    [batchLookup.localName]: (request, principal) =>
      encodeBatchLookupResponse(readBatchLookupRequest(request, limits).map((entry) => get(entry, principal))),
    [batchUpdate.localName]: (request, principal) => {
      // Read and check all first: a malformed, forbidden or oversized update anywhere applies none of them.
      const updates = readBatchUpdateRequest(request, limits);
      for (const entry of updates) {
        if (!principal.canWrite(entry.namespace)) throw denied(principal, "write", entry.namespace);
        store.checkFits(entry.namespace, entryBytes(entry));
      }
      for (const entry of updates) set(entry, principal);
      return EMPTY;
    },
    [stream.localName]: (request, principal) =>
      encodeStreamResponse(readStreamRequest(request, limits).map((operation) => execute(operation, principal))),
    [stats.localName]: (request, principal) => {
      decodeMessage(StatsRequestSchema, request);
      if (!principal.canReadStats()) throw new CacheError("PERMISSION_DENIED", `token "${principal.name}" may not read the statistics`);
      const report = store.stats();
      const namespaces: Record<string, WireCacheStats> = {};
      for (const [name, namespaceStats] of Object.entries(report.namespaces)) {
        namespaces[fromKeyBytes(name)] = toWireStats(namespaceStats);
      }
      return asBuffer(toBinary(StatsResponseSchema, create(StatsResponseSchema, { total: toWireStats(report.total), namespaces })));
    },
  };
}

/** The key and value strings hold one character per byte: their lengths are their sizes. */
function entryBytes({ prompt, llmString, generations }: Pick<WireUpdate, "prompt" | "llmString" | "generations">): number {
  return prompt.length + llmString.length + generations.length;
}

function denied(principal: Principal, right: string, namespace: string | undefined): CacheError {
  const where = namespace === undefined ? "every namespace" : `namespace "${fromKeyBytes(namespace)}"`;
  return new CacheError("PERMISSION_DENIED", `token "${principal.name}" may not ${right} ${where}`);
}

/** A name as the store holds it: its UTF-8 bytes read as latin1, as the request reader reads keys. */
export function asKeyBytes(name: string): string {
  return Buffer.from(name, "utf8").toString("latin1");
}

export function fromKeyBytes(name: string): string {
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
