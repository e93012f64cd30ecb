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
import { asKeyBytes, fromKeyBytes } from "./key-bytes.js";
import { streamHandler, unaryHandler, type HandlerContext, type MethodImplementation, type StreamImplementation } from "./method-handlers.js";
import { checkLimit, type RequestLimits } from "./request-limits.js";
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
import {
  batchLookupResponseSize,
  encodeBatchLookupResponse,
  encodeLookupResponse,
  encodeStreamResponses,
  encodeUpdateResponse,
  lookupResponseSize,
  type WireResult,
} from "./response-writer.js";
import { toFailure } from "./status.js";

const EMPTY = Buffer.alloc(0);

/** The grpc-js handlers of llmcache.v1.CacheService over a store. */
export function cacheServiceHandlers(store: CacheStore<string>, limits: RequestLimits, context: HandlerContext): UntypedServiceImplementation {
  const { unary, stream } = cacheServiceMethods(store, limits, context.observer.failed);
  const handlers: UntypedServiceImplementation = {};
  for (const method of CacheService.methods) {
    handlers[method.localName] =
      method.methodKind === "bidi_streaming" ? streamHandler(method, stream, context) : unaryHandler(method, unary[method.localName]!, context);
  }
  return handlers;
}

/**
 * The methods of llmcache.v1.CacheService over a store that holds, for each
 * key's bytes, its generations' bytes (see request-reader.ts): the store
 * never sees a decoded message, and no caller ever shares its values. Each
 * operation is checked against the caller's rights on its namespace. The
 * stream's method answers one request message of the stream. No reply is
 * larger than limits.maxReplyBytes: a lookup or batch that would pass it is
 * refused, and a stream's results are spread over several messages.
 */
export function cacheServiceMethods(
  store: CacheStore<string>,
  limits: RequestLimits,
  logFailure?: (path: string, error: unknown) => void,
): { unary: Record<string, MethodImplementation>; stream: StreamImplementation } {
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

  function checkReply(size: number): void {
    checkLimit(limits, "maxReplyBytes", "the reply's size in bytes", size);
  }

  /** What a single lookup answers, refused if its reply alone would pass the reply limit. */
  function getWithinReplyLimit(lookup: WireLookup, principal: Principal): string | undefined {
    const stored = get(lookup, principal);
    checkReply(lookupResponseSize(stored));
    return stored;
  }

  function execute(operation: WireOperation, principal: Principal): WireResult {
    try {
      switch (operation.kind) {
        case "lookup":
          return { id: operation.id, kind: "lookup", stored: getWithinReplyLimit(operation.lookup, principal) };
        case "update":
          return { id: operation.id, kind: "update", stored: set(operation.update, principal) };
        case "invalid":
          throw operation.problem;
      }
    } catch (error) {
      return { id: operation.id, kind: "error", ...toFailure(streamPath, error, logFailure) };
    }
  }

  const unary: Record<string, MethodImplementation> = {
    [lookup.localName]: (request, principal) => encodeLookupResponse(getWithinReplyLimit(readLookupRequest(request, limits), principal)),
    [update.localName]: (request, principal) => encodeUpdateResponse(set(readUpdateRequest(request, limits), principal)),
    [clear.localName]: (request, principal) => {
      const { namespace, allNamespaces } = decodeMessage(ClearRequestSchema, request);
      const target = allNamespaces ? undefined : asKeyBytes(namespace);
      if (!principal.canClear(target)) throw denied(principal, "clear", target);
      store.clear(target);
      return EMPTY;
    },
    [batchLookup.localName]: (request, principal) => {
      const results = readBatchLookupRequest(request, limits).map((entry) => get(entry, principal));
      checkReply(batchLookupResponseSize(results));
      return encodeBatchLookupResponse(results);
    },
    [batchUpdate.localName]: (request, principal) => {
      // Read and check all first: a malformed, forbidden or oversized update anywhere, or one
      // namespace too many, applies none of them.
      const updates = readBatchUpdateRequest(request, limits);
      for (const entry of updates) {
        if (!principal.canWrite(entry.namespace)) throw denied(principal, "write", entry.namespace);
        store.checkFits(entry.namespace, entryBytes(entry));
      }
      store.checkNamespacesFit(updates.filter((entry) => !entry.noStore).map((entry) => entry.namespace));
      for (const entry of updates) set(entry, principal);
      return EMPTY;
    },
    [stats.localName]: (request, principal) => {
      decodeMessage(StatsRequestSchema, request);
      if (!principal.canReadStats()) throw new CacheError("PERMISSION_DENIED", `token "${principal.name}" may not read the statistics`);
      const report = store.stats();
      const namespaces: Record<string, WireCacheStats> = {};
      for (const [name, namespaceStats] of Object.entries(report.namespaces)) {
        namespaces[fromKeyBytes(name)] = toWireStats(namespaceStats);
      }
      return asBuffer(
        toBinary(
          StatsResponseSchema,
          create(StatsResponseSchema, { total: toWireStats(report.total), namespaces, namespacesNotListed: BigInt(report.namespacesNotListed) }),
        ),
      );
    },
  };
  const streamMessage: StreamImplementation = (request, principal) =>
    encodeStreamResponses(
      readStreamRequest(request, limits).map((operation) => execute(operation, principal)),
      limits.maxReplyBytes,
    );
  return { unary, stream: streamMessage };
}

/** The key and value strings hold one character per byte: their lengths are their sizes. */
function entryBytes({ prompt, llmString, generations }: Pick<WireUpdate, "prompt" | "llmString" | "generations">): number {
  return prompt.length + llmString.length + generations.length;
}

function denied(principal: Principal, right: string, namespace: string | undefined): CacheError {
  const where = namespace === undefined ? "every namespace" : `namespace "${fromKeyBytes(namespace)}"`;
  return new CacheError("PERMISSION_DENIED", `token "${principal.name}" may not ${right} ${where}`);
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
