import assert from "node:assert/strict";
import { CacheService } from "../../gen/llmcache/v1/cache_pb.js";
import { CacheStore } from "../../src/engine/cache-store.js";
import { LocalBackend } from "../../src/engine/local-backend.js";
import { SegmentIndex } from "../../src/engine/segment-index.js";
import type { Generation } from "../../src/generation.js";
import { encodeLookupRequest } from "../../src/rpc/codec/lookup.js";
import { decodeStreamResponse, encodeStreamRequest, streamOperationSize, type StreamOperation } from "../../src/rpc/codec/stream.js";
import { encodeUpdateRequest } from "../../src/rpc/codec/update.js";
import { ANYONE } from "../../src/server/auth/principal.js";
import { cacheServiceMethods } from "../../src/server/cache-service.js";
import { DEFAULT_REQUEST_LIMITS } from "../../src/server/request-limits.js";

/**
 * A hit is the store's own bytes, which the next write may reuse: a stream
 * writes its replies after reading its whole message, so a lookup followed
 * by updates in one message must still answer what it found. The segments
 * are small, so that a few updates empty the lookup's segment and reuse it.
 */
describe("a stream's lookup followed by updates in the same message", () => {
  const PLAIN = { namespace: "", ttlMs: undefined, noStore: false, onlyIfAbsent: false };
  const text = (label: string): Generation[] => [{ text: label.repeat(40) }];
  const call = { remainingMs: () => Infinity, signal: new AbortController().signal };

  it("answers the value the lookup found, not what the updates wrote over its bytes", () => {
    const store = new CacheStore<Buffer>({}, new SegmentIndex({ segmentBytes: 512, minDeadBytes: 0 }));
    const { unary, stream } = cacheServiceMethods(new LocalBackend(store, { copyLent: (stored) => Buffer.from(stored) }), DEFAULT_REQUEST_LIMITS);
    const update = (key: string, generations: Generation[]) => encodeUpdateRequest(key, "llm", generations, PLAIN);
    const fillers = Array.from({ length: 12 }, (_, i) => `f${i}`);
    // "a" and the first fillers in the first segment, which the rest of the fillers close.
    for (const key of ["a", ...fillers]) unary[CacheService.method.update.localName]!(update(key, text(key)), ANYONE, call);

    const operations: StreamOperation[] = [
      { id: 1, kind: "lookup", request: encodeLookupRequest("a", "llm", { namespace: "", bypass: false }) },
      // Replacing "a" and the fillers leaves the first segment all but empty: it is compacted and
      // reused for the new entries that follow, over the bytes the lookup found.
      ...["a", ...fillers, ...Array.from({ length: 30 }, (_, i) => `new${i}`)].map(
        (key, i): StreamOperation => ({ id: 2 + i, kind: "update", request: update(key, text(key === "a" ? "z" : key)) }),
      ),
    ];
    const size = operations.reduce((total, operation) => total + streamOperationSize(operation), 0);
    const { now } = stream(encodeStreamRequest(operations, size), ANYONE, call);
    const outcomes = now.flatMap((reply) => decodeStreamResponse(reply));
    assert.deepEqual(outcomes.find((outcome) => outcome.id === 1), { id: 1, kind: "lookup", generations: text("a"), lease: null });
  });
});
