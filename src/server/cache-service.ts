import type { UntypedServiceImplementation } from "@grpc/grpc-js";
import { CacheService, type Generation } from "../../gen/llmcache/v1/cache_pb.js";
import type { BoundedStore } from "../engine/bounded-store.js";
import { unaryHandler } from "./unary-handler.js";

/**
 * The handlers of llmcache.v1.CacheService over a store of generations as
 * decoded from the wire. Decoding gives every request fresh objects and
 * replies are encoded afresh, so what the store holds is never shared with a
 * caller.
 */
export function cacheServiceHandlers(store: BoundedStore<Generation[]>): UntypedServiceImplementation {
  const { lookup, update, clear } = CacheService.method;
  return {
    [lookup.localName]: unaryHandler(lookup, ({ prompt, llmString }) => {
      const generations = store.get(prompt, llmString);
      return generations === undefined ? { hit: false } : { hit: true, generations };
    }),
    [update.localName]: unaryHandler(update, ({ prompt, llmString, generations }) => {
      store.set(prompt, llmString, generations);
      return {};
    }),
    [clear.localName]: unaryHandler(clear, () => {
      store.clear();
      return {};
    }),
  };
}
