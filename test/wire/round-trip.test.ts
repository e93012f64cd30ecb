import assert from "node:assert/strict";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { LookupResponseSchema, ReleaseLeaseResponseSchema, UpdateResponseSchema } from "../../gen/llmcache/v1/cache_pb.js";
import type { CacheStats } from "../../src/engine/stats.js";
import { copyGenerations, type Generation } from "../../src/generation.js";
import { DecodeError } from "../../src/rpc/codec.js";
import {
  batchLookupResponseSize,
  decodeBatchLookupResponse,
  encodeBatchLookupRequest,
  readBatchLookupRequest,
  writeBatchLookupResponse,
} from "../../src/rpc/codec/batch-lookup.js";
import { decodeBatchUpdateResponse, encodeBatchUpdateRequest, readBatchUpdateRequest, writeBatchUpdateResponse } from "../../src/rpc/codec/batch-update.js";
import { decodeClearResponse, encodeClearRequest, readClearRequest, writeClearResponse } from "../../src/rpc/codec/clear.js";
import { toWireGeneration } from "../../src/rpc/codec/generation-objects.js";
import {
  decodeLeasedLookupResponse,
  decodeLookupResponse,
  encodeLease,
  encodeLookupRequest,
  lookupResponseSize,
  readLookupRequest,
  writeLookupResponse,
  type LookupFields,
} from "../../src/rpc/codec/lookup.js";
import {
  decodeReleaseLeaseResponse,
  encodeReleaseLeaseRequest,
  readReleaseLeaseRequest,
  writeReleaseLeaseResponse,
} from "../../src/rpc/codec/release-lease.js";
import { decodeStatsResponse, encodeStatsRequest, readStatsRequest, writeStatsResponse } from "../../src/rpc/codec/stats.js";
import {
  decodeStreamResponse,
  encodeStreamRequest,
  readStreamRequest,
  streamOperationSize,
  writeStreamResponses,
  type StreamOperation,
  type WireResult,
} from "../../src/rpc/codec/stream.js";
import { decodeUpdateResponse, encodeUpdateRequest, readUpdateRequest, writeUpdateResponse, type UpdateFields } from "../../src/rpc/codec/update.js";
import { asKeyBytes } from "../../src/rpc/key-bytes.js";
import { DEFAULT_REQUEST_LIMITS, requestChecks } from "../../src/server/request-limits.js";
import type { StoredGenerations } from "../../src/rpc/codec/generations.js";
import { chatGenerations } from "../fixtures/generations.js";

// Every message of the service, from the side that writes it to the side
// that reads it: the client's requests to the server's readers, the
// server's replies to the client's decoders.

const CHECKS = requestChecks(DEFAULT_REQUEST_LIMITS);
const keys: [string, string, string][] = [
  ["", "", ""],
  ["What is the capital of France?", "model='gpt-5.4-mini'", "team-a"],
  ["東京 🚀 é", "模型 ✨".repeat(40), "équipe"],
  ["x".repeat(70_000), "y".repeat(300), "n".repeat(256)],
];
const generationLists: Generation[][] = [[], [{ text: "" }], [{ text: "Paris" }, { text: "Lyon 🗼" }], ...Object.values(chatGenerations)].map((list) =>
  copyGenerations(list),
);
const PLAIN_UPDATE: UpdateFields = { namespace: "", ttlMs: undefined, noStore: false, onlyIfAbsent: false };

/** What the server holds for these generations, as its reader of an update makes it. */
function stored(generations: Generation[]): StoredGenerations {
  return readUpdateRequest(encodeUpdateRequest("p", "l", generations, PLAIN_UPDATE), CHECKS).generations;
}

const stats = (n: number): CacheStats => ({
  entries: n,
  bytes: n * 1000,
  hits: n + 1,
  misses: n + 2,
  bypasses: n + 3,
  hitRatio: 0.25,
  evictions: { size: n + 4, bytes: n + 5, ttl: n + 6 },
  expirations: n + 7,
  updatesNotStored: n + 8,
  leases: { granted: n + 9, filled: n + 10, waitsServed: n + 11, waitsTimedOut: n + 12, expired: n + 13, released: n + 14, staleFillsRefused: n + 15 },
});

describe("each message, from its writer to its reader", () => {
  describe("LookupRequest: the client's encoder to the server's reader", () => {
    const options: [string, LookupFields][] = [
      ["a plain lookup", { namespace: "", bypass: false }],
      ["a bypass", { namespace: "", bypass: true }],
      ["a lease and a wait", { namespace: "", bypass: false, lease: { leaseMs: 30_000, waitMs: 60_000 } }],
    ];
    for (const [prompt, llmString, namespace] of keys) {
      for (const [name, fields] of options) {
        it(`reads the key as its bytes (${prompt.length}-char prompt), ${name}`, () => {
          assert.deepEqual(readLookupRequest(encodeLookupRequest(prompt, llmString, { ...fields, namespace }), CHECKS), {
            namespace: asKeyBytes(namespace),
            prompt: asKeyBytes(prompt),
            llmString: asKeyBytes(llmString),
            bypass: fields.bypass,
            leaseMs: fields.lease?.leaseMs ?? 0,
            waitMs: fields.lease?.waitMs ?? 0,
          });
        });
      }
    }
  });

  describe("LookupResponse: the server's writer to the client's decoders", () => {
    generationLists.forEach((generations, i) => {
      it(`gives back the generations an update stored (#${i})`, () => {
        const reply = writeLookupResponse(stored(generations));
        assert.equal(reply.length, lookupResponseSize(stored(generations)));
        assert.deepEqual(decodeLookupResponse(reply), generations);
        assert.deepEqual(decodeLeasedLookupResponse(reply), { generations, lease: null });
      });
    });

    it("gives back a miss, and a miss with a lease", () => {
      assert.equal(decodeLookupResponse(writeLookupResponse(undefined)), null);
      const lease = encodeLease({ token: "t0k.1", leaseMs: 1_500 });
      assert.deepEqual(decodeLeasedLookupResponse(writeLookupResponse(undefined, lease)), { generations: null, lease: { token: "t0k.1", leaseMs: 1_500 } });
    });
  });

  describe("UpdateRequest: the client's encoder to the server's reader", () => {
    generationLists.forEach((generations, i) => {
      it(`keeps generations #${i} as the bytes protobuf-es writes for LookupResponse.generations`, () => {
        const expected = toBinary(LookupResponseSchema, create(LookupResponseSchema, { generations: generations.map(toWireGeneration) }));
        assert.deepEqual(stored(generations), Buffer.from(expected));
      });
    });

    const options: [string, UpdateFields, object][] = [
      ["the defaults", PLAIN_UPDATE, { ttlMs: undefined, noStore: false, onlyIfAbsent: false, leaseToken: undefined }],
      ["a TTL and only_if_absent", { ...PLAIN_UPDATE, ttlMs: 2 ** 40 + 5, onlyIfAbsent: true }, { ttlMs: 2 ** 40 + 5, onlyIfAbsent: true }],
      ["never_expires, no_store and a lease token", { ...PLAIN_UPDATE, ttlMs: Infinity, noStore: true, leaseToken: "t0k.1" }, { ttlMs: Infinity, noStore: true, leaseToken: "t0k.1" }],
    ];
    for (const [prompt, llmString, namespace] of keys) {
      for (const [name, fields, expected] of options) {
        it(`reads the key as its bytes (${prompt.length}-char prompt) and ${name}`, () => {
          const read = readUpdateRequest(encodeUpdateRequest(prompt, llmString, [{ text: "t" }], { ...fields, namespace }), CHECKS);
          assert.deepEqual(read, {
            namespace: asKeyBytes(namespace),
            prompt: asKeyBytes(prompt),
            llmString: asKeyBytes(llmString),
            generations: stored([{ text: "t" }]),
            ...{ ttlMs: undefined, noStore: false, onlyIfAbsent: false, leaseToken: undefined },
            ...expected,
          });
        });
      }
    }
  });

  it("UpdateResponse: the server's writer to the client's decoder", () => {
    assert.equal(decodeUpdateResponse(writeUpdateResponse(true)), true);
    assert.equal(decodeUpdateResponse(writeUpdateResponse(false)), false);
  });

  it("UpdateResponse and ReleaseLeaseResponse as any writer may write them: read as protobuf-es reads them", () => {
    const replies: [string, number[]][] = [
      ["nothing", []],
      ["the flag set", [0x08, 1]],
      ["the flag written false", [0x08, 0]],
      ["set, then false: the last wins", [0x08, 1, 0x08, 0]],
      ["false, then set", [0x08, 0, 0x08, 1]],
      ["a non-canonical true (2, as a two-byte varint)", [0x08, 0x82, 0x00]],
      ["unknown fields around it", [0x28, 7, 0x08, 1, 0x3a, 2, 0x61, 0x62, 0x45, 1, 2, 3, 4, 0x49, 1, 2, 3, 4, 5, 6, 7, 8]],
      ["an unknown field alone, the size of the flag", [0x10, 1]],
    ];
    for (const [what, bytes] of replies) {
      const reply = Buffer.from(bytes);
      assert.equal(decodeUpdateResponse(reply), fromBinary(UpdateResponseSchema, reply).stored, what);
      assert.equal(decodeReleaseLeaseResponse(reply), fromBinary(ReleaseLeaseResponseSchema, reply).released, what);
    }
    for (const [what, bytes] of [
      ["the flag as a string", [0x0a, 1, 0x01]],
      ["the flag cut short", [0x08]],
      ["an unknown field cut short", [0x3a, 5, 0x61]],
    ] as const) {
      const reply = Buffer.from(bytes);
      assert.throws(() => fromBinary(UpdateResponseSchema, reply), Error, `protobuf-es refuses ${what}`);
      assert.throws(() => decodeUpdateResponse(reply), DecodeError, what);
      assert.throws(() => decodeReleaseLeaseResponse(reply), DecodeError, what);
    }
  });

  it("ReleaseLeaseRequest and ReleaseLeaseResponse, both ways", () => {
    for (const [prompt, llmString, namespace] of keys) {
      assert.deepEqual(readReleaseLeaseRequest(encodeReleaseLeaseRequest(prompt, llmString, namespace, "t0k.1"), CHECKS), {
        namespace: asKeyBytes(namespace),
        prompt: asKeyBytes(prompt),
        llmString: asKeyBytes(llmString),
        leaseToken: "t0k.1",
      });
    }
    assert.equal(decodeReleaseLeaseResponse(writeReleaseLeaseResponse(true)), true);
    assert.equal(decodeReleaseLeaseResponse(writeReleaseLeaseResponse(false)), false);
  });

  it("BatchLookupRequest and BatchLookupResponse, both ways", () => {
    const lookups = keys.map(([prompt, llmString, namespace]) => encodeLookupRequest(prompt, llmString, { namespace, bypass: false }));
    assert.deepEqual(
      readBatchLookupRequest(encodeBatchLookupRequest(lookups), CHECKS),
      lookups.map((lookup) => readLookupRequest(lookup, CHECKS)),
    );
    const results = [...generationLists.map(stored), undefined];
    const reply = writeBatchLookupResponse(results);
    assert.equal(reply.length, batchLookupResponseSize(results));
    assert.deepEqual(decodeBatchLookupResponse(reply), [...generationLists, null]);
  });

  it("BatchUpdateRequest and BatchUpdateResponse, both ways", () => {
    const updates = generationLists.map((generations, i) => encodeUpdateRequest(`p${i}`, "l", generations, { ...PLAIN_UPDATE, namespace: "ns" }));
    assert.deepEqual(
      readBatchUpdateRequest(encodeBatchUpdateRequest(updates), CHECKS),
      updates.map((update) => readUpdateRequest(update, CHECKS)),
    );
    assert.equal(writeBatchUpdateResponse().length, 0);
    assert.equal(decodeBatchUpdateResponse(writeBatchUpdateResponse()), undefined);
  });

  it("ClearRequest and ClearResponse, both ways: a namespace as its bytes, or every namespace", () => {
    assert.equal(readClearRequest(encodeClearRequest("équipe", false)), asKeyBytes("équipe"));
    assert.equal(readClearRequest(encodeClearRequest("", false)), asKeyBytes(""));
    assert.equal(readClearRequest(encodeClearRequest("équipe", true)), undefined);
    assert.equal(decodeClearResponse(writeClearResponse()), undefined);
  });

  it("StatsRequest and StatsResponse, both ways: namespaces held as bytes come back as text", () => {
    readStatsRequest(encodeStatsRequest());
    const report = { total: stats(100), namespaces: { [asKeyBytes("équipe")]: stats(1), [asKeyBytes("")]: stats(2) }, namespacesNotListed: 3 };
    assert.deepEqual(decodeStatsResponse(writeStatsResponse(report)), {
      total: stats(100),
      namespaces: { "équipe": stats(1), "": stats(2) },
      namespacesNotListed: 3,
    });
  });

  describe("Stream", () => {
    it("StreamRequest: the client's framing to the server's reader, each operation with its id", () => {
      const operations: StreamOperation[] = [
        { id: 1, kind: "lookup", request: encodeLookupRequest("p é", "l", { namespace: "ns", bypass: false, lease: { leaseMs: 10, waitMs: 20 } }) },
        { id: 2 ** 32 - 1, kind: "update", request: encodeUpdateRequest("p", "l", generationLists[3]!, { ...PLAIN_UPDATE, ttlMs: 5 }) },
        { id: 3, kind: "release", request: encodeReleaseLeaseRequest("p", "l", "ns", "t0k.1") },
        { id: 4, kind: "cancel", request: new Uint8Array(0) },
      ];
      const size = operations.reduce((sum, operation) => sum + streamOperationSize(operation), 0);
      const message = encodeStreamRequest(operations, size);
      assert.equal(message.length, size);
      assert.deepEqual(readStreamRequest(message, CHECKS), [
        { id: 1, kind: "lookup", lookup: readLookupRequest(Buffer.from(operations[0]!.request), CHECKS) },
        { id: 2 ** 32 - 1, kind: "update", update: readUpdateRequest(Buffer.from(operations[1]!.request), CHECKS) },
        { id: 3, kind: "release", release: readReleaseLeaseRequest(Buffer.from(operations[2]!.request), CHECKS) },
        { id: 4, kind: "cancel" },
      ]);
    });

    it("StreamResponse: the server's writer to the client's decoder, in as many messages as the size allows", () => {
      const results: WireResult[] = [
        ...generationLists.map((generations, i): WireResult => ({ id: 10 + i, kind: "lookup", stored: stored(generations) })),
        { id: 2, kind: "lookup", stored: undefined },
        { id: 3, kind: "lookup", stored: undefined, lease: encodeLease({ token: "t0k.1", leaseMs: 5 }) },
        { id: 4, kind: "update", stored: true },
        { id: 5, kind: "update", stored: false },
        { id: 6, kind: "release", released: true },
        { id: 7, kind: "error", code: 8, message: "entry too large: é", reason: "entry_too_large" },
        { id: 8, kind: "error", code: 3, message: "", reason: "" },
      ];
      const expected = [
        ...generationLists.map((generations, i) => ({ id: 10 + i, kind: "lookup", generations, lease: null, near: null })),
        { id: 2, kind: "lookup", generations: null, lease: null, near: null },
        { id: 3, kind: "lookup", generations: null, lease: { token: "t0k.1", leaseMs: 5 }, near: null },
        { id: 4, kind: "update", stored: true },
        { id: 5, kind: "update", stored: false },
        { id: 6, kind: "release", released: true },
        { id: 7, kind: "error", code: 8, message: "entry too large: é", reason: "entry_too_large" },
        { id: 8, kind: "error", code: 3, message: "", reason: "" },
      ];
      const [whole, ...none] = writeStreamResponses(results, DEFAULT_REQUEST_LIMITS.maxReplyBytes);
      assert.equal(none.length, 0);
      assert.deepEqual(decodeStreamResponse(whole!), expected);
      const split = writeStreamResponses(results, 64);
      assert.ok(split.length > 1 && split.every((message) => message.length <= 64 || decodeStreamResponse(message).length === 1));
      assert.deepEqual(split.flatMap(decodeStreamResponse), expected);
    });
  });
});
