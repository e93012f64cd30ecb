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

  const update = (key: string, generations: Generation[]) => encodeUpdateRequest(key, "llm", generations, PLAIN);
  const lookup = (id: number, key: string): StreamOperation => ({ id, kind: "lookup", request: encodeLookupRequest(key, "llm", { namespace: "", bypass: false }) });
  const fillers = Array.from({ length: 12 }, (_, i) => `f${i}`);

  /** A stream's message of `operations` to a store whose first segment holds "a"; its outcomes, by id. */
  function send(operations: StreamOperation[]) {
    const store = new CacheStore<Buffer>({}, new SegmentIndex({ segmentBytes: 512, minDeadBytes: 0 }));
    const { unary, stream } = cacheServiceMethods(new LocalBackend(store, { copyLent: (stored) => Buffer.from(stored) }), DEFAULT_REQUEST_LIMITS);
    // "a" and the first fillers in the first segment, which the rest of the fillers close.
    for (const key of ["a", ...fillers]) unary[CacheService.method.update.localName]!(update(key, text(key)), ANYONE, call);
    const size = operations.reduce((total, operation) => total + streamOperationSize(operation), 0);
    const { now } = stream(encodeStreamRequest(operations, size), ANYONE, call);
    return new Map(now.flatMap((reply) => decodeStreamResponse(reply)).map((outcome) => [outcome.id, outcome]));
  }

  /** Updates that replace "a" and the fillers, leaving the first segment all but empty: it is compacted and reused for the new entries that follow. */
  const overwriting = (firstId: number): StreamOperation[] =>
    ["a", ...fillers, ...Array.from({ length: 30 }, (_, i) => `new${i}`)].map((key, i) => ({ id: firstId + i, kind: "update", request: update(key, text(key === "a" ? "z" : key)) }));

  it("answers the value the lookup found, not what the updates wrote over its bytes", () => {
    const outcomes = send([lookup(1, "a"), ...overwriting(2)]);
    assert.deepEqual(outcomes.get(1), { id: 1, kind: "lookup", generations: text("a"), lease: null, near: null });
  });

  it("between updates too, and a lookup after the last update answers what they wrote", () => {
    const before: StreamOperation = { id: 1, kind: "update", request: update("b", text("b")) };
    const outcomes = send([before, lookup(2, "a"), ...overwriting(3), lookup(99, "a")]);
    assert.deepEqual(outcomes.get(2), { id: 2, kind: "lookup", generations: text("a"), lease: null, near: null });
    assert.deepEqual(outcomes.get(99), { id: 99, kind: "lookup", generations: text("z"), lease: null, near: null });
  });
});
