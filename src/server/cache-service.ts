import { status, type UntypedServiceImplementation } from "@grpc/grpc-js";
import { CacheService, ClearRequestSchema } from "../../gen/llmcache/v1/cache_pb.js";
import type { BoundedStore } from "../engine/bounded-store.js";
import { decodeMessage } from "../rpc/codec.js";
import {
  readBatchLookupRequest,
  readBatchUpdateRequest,
  readLookupRequest,
  readStreamRequest,
  readUpdateRequest,
  type WireOperation,
} from "./request-reader.js";
import { encodeBatchLookupResponse, encodeLookupResponse, encodeStreamResponse, type WireResult } from "./response-writer.js";
import { streamHandler, unaryHandler } from "./method-handlers.js";

const EMPTY = Buffer.alloc(0);

/** What each method does with one request message: bytes in, bytes out. */
export type ByteMethods = Record<string, (request: Buffer) => Buffer>;

/** The grpc-js handlers of llmcache.v1.CacheService over a store. */
export function cacheServiceHandlers(store: BoundedStore<string>): UntypedServiceImplementation {
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
export function cacheServiceMethods(store: BoundedStore<string>): ByteMethods {
  const { lookup, update, clear, batchLookup, batchUpdate, stream } = CacheService.method;

  function execute(operation: WireOperation): WireResult {
    switch (operation.kind) {
      case "lookup":
        return { id: operation.id, kind: "lookup", stored: store.get(operation.key.prompt, operation.key.llmString) };
      case "update": {
        const { prompt, llmString, generations } = operation.update;
        store.set(prompt, llmString, generations);
        return { id: operation.id, kind: "update" };
      }
      case "invalid":
        return { id: operation.id, kind: "error", code: status.INVALID_ARGUMENT, message: operation.problem.message };
    }
  }

  return {
    [lookup.localName]: (request) => {
      const { prompt, llmString } = readLookupRequest(request);
      return encodeLookupResponse(store.get(prompt, llmString));
    },
    [update.localName]: (request) => {
      const { prompt, llmString, generations } = readUpdateRequest(request);
      store.set(prompt, llmString, generations);
      return EMPTY;
    },
    [clear.localName]: (request) => {
      decodeMessage(ClearRequestSchema, request);
      store.clear();
      return EMPTY;
    },
    [batchLookup.localName]: (request) =>
      encodeBatchLookupResponse(readBatchLookupRequest(request).map((key) => store.get(key.prompt, key.llmString))),
    [batchUpdate.localName]: (request) => {
      // Read all first: a malformed update anywhere applies none of them.
      for (const { prompt, llmString, generations } of readBatchUpdateRequest(request)) store.set(prompt, llmString, generations);
      return EMPTY;
    },
    [stream.localName]: (request) => encodeStreamResponse(readStreamRequest(request).map(execute)),
  };
}
