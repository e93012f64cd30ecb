import assert from "node:assert/strict";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import {
  BatchLookupRequestSchema,
  BatchLookupResponseSchema,
  BatchUpdateRequestSchema,
  LookupRequestSchema,
  LookupResponseSchema,
  StreamOperationSchema,
  StreamRequestSchema,
  StreamResponseSchema,
  UpdateRequestSchema,
} from "../../gen/llmcache/v1/cache_pb.js";
import { copyGenerations, type Generation } from "../../src/generation.js";
import { DecodeError } from "../../src/rpc/codec.js";
import { decodeBatchLookupResponse, encodeBatchLookupRequest } from "../../src/rpc/codec/batch-lookup.js";
import { encodeBatchUpdateRequest } from "../../src/rpc/codec/batch-update.js";
import { toWireGeneration } from "../../src/rpc/codec/generation-objects.js";
import { decodeLookupResponse, encodeLookupRequest } from "../../src/rpc/codec/lookup.js";
import { decodeStreamResponse, encodeStreamRequest, readStreamRequest, streamOperationSize, writeStreamResponse } from "../../src/rpc/codec/stream.js";
import { DEFAULT_REQUEST_LIMITS, requestChecks } from "../../src/server/request-limits.js";
import { encodeUpdateRequest } from "../../src/rpc/codec/update.js";
import { chatGenerations } from "../fixtures/generations.js";

const keys: [string, string][] = [
  ["", ""],
  ["p", ""],
  ["", "llm"],
  ["What is the capital of France?", "model='gpt-5.4-mini'"],
  ["東京 🚀 é", "模型 ✨".repeat(40)],
  ["x".repeat(70_000), "y".repeat(300)],
];
const generationLists: Generation[][] = [
  [],
  [{ text: "" }],
  [{ text: "Paris" }, { text: "Lyon 🗼" }],
  // Lengths that take two and three bytes as varints, in the generation and around it.
  [{ text: "é".repeat(100) }, { text: "🗼".repeat(5_000) }],
  ...Object.values(chatGenerations),
];

const DEFAULT_LOOKUP = { namespace: "", bypass: false };
const DEFAULT_UPDATE = { namespace: "", ttlMs: undefined, noStore: false, onlyIfAbsent: false };

function protobufEs(generations: Generation[]) {
  return generations.map((generation) => toWireGeneration(generation));
}

describe("the client's hand-written codec", () => {
  describe("writes exactly the bytes protobuf-es writes", () => {
    for (const [prompt, llmString] of keys) {
      it(`for a LookupRequest (prompt of ${prompt.length} chars, llm_string of ${llmString.length})`, () => {
        const expected = toBinary(LookupRequestSchema, create(LookupRequestSchema, { prompt, llmString }));
        assert.deepEqual(new Uint8Array(encodeLookupRequest(prompt, llmString, DEFAULT_LOOKUP)), expected);
      });
    }

    it("for a LookupRequest with a namespace and bypass", () => {
      const expected = toBinary(LookupRequestSchema, create(LookupRequestSchema, { prompt: "p", llmString: "l", namespace: "team ü", bypass: true }));
      assert.deepEqual(new Uint8Array(encodeLookupRequest("p", "l", { namespace: "team ü", bypass: true })), expected);
    });

    const updateFields: [string, typeof DEFAULT_UPDATE | { namespace: string; ttlMs: number; noStore: boolean; onlyIfAbsent: boolean }, object][] = [
      ["a namespace and a TTL", { namespace: "ns", ttlMs: 90_000, noStore: false, onlyIfAbsent: true }, { namespace: "ns", ttlMs: 90_000n, onlyIfAbsent: true }],
      ["a TTL beyond 32 bits", { namespace: "", ttlMs: 2 ** 40 + 5, noStore: false, onlyIfAbsent: false }, { ttlMs: BigInt(2 ** 40 + 5) }],
      ["never_expires and no_store", { namespace: "", ttlMs: Infinity, noStore: true, onlyIfAbsent: false }, { neverExpires: true, noStore: true }],
    ];
    for (const [name, fields, wire] of updateFields) {
      it(`for an UpdateRequest with ${name}`, () => {
        const expected = toBinary(UpdateRequestSchema, create(UpdateRequestSchema, { prompt: "p", llmString: "l", generations: [{ text: "t" }], ...wire }));
        assert.deepEqual(new Uint8Array(encodeUpdateRequest("p", "l", [{ text: "t" }], fields)), expected);
      });
    }

    generationLists.forEach((generations, i) => {
      it(`for an UpdateRequest with generations #${i}`, () => {
        const canonical = copyGenerations(generations);
        const expected = toBinary(UpdateRequestSchema, create(UpdateRequestSchema, { prompt: "p", llmString: "l", generations: protobufEs(canonical) }));
        assert.deepEqual(new Uint8Array(encodeUpdateRequest("p", "l", canonical, DEFAULT_UPDATE)), expected);
      });
    });

    it("for batch requests", () => {
      const lookups = keys.map(([prompt, llmString]) => ({ prompt, llmString }));
      assert.deepEqual(
        new Uint8Array(encodeBatchLookupRequest(lookups.map(({ prompt, llmString }) => encodeLookupRequest(prompt, llmString, DEFAULT_LOOKUP)))),
        toBinary(BatchLookupRequestSchema, create(BatchLookupRequestSchema, { lookups })),
      );
      const updates = generationLists.map((generations, i) => ({ prompt: `p${i}`, llmString: "l", generations: copyGenerations(generations) }));
      assert.deepEqual(
        new Uint8Array(encodeBatchUpdateRequest(updates.map((u) => encodeUpdateRequest(u.prompt, u.llmString, u.generations, DEFAULT_UPDATE)))),
        toBinary(
          BatchUpdateRequestSchema,
          create(BatchUpdateRequestSchema, { updates: updates.map((u) => ({ ...u, generations: protobufEs(u.generations) })) }),
        ),
      );
    });
  });

  describe("reads what protobuf-es writes", () => {
    generationLists.forEach((generations, i) => {
      it(`for a LookupResponse hit with generations #${i}`, () => {
        const canonical = copyGenerations(generations);
        const bytes = toBinary(LookupResponseSchema, create(LookupResponseSchema, { hit: true, generations: protobufEs(canonical) }));
        assert.deepEqual(decodeLookupResponse(Buffer.from(bytes)), canonical);
      });
    });

    it("for a miss, and a miss that carries generations anyway (hit decides)", () => {
      assert.equal(decodeLookupResponse(Buffer.alloc(0)), null);
      const odd = toBinary(LookupResponseSchema, create(LookupResponseSchema, { hit: false, generations: [{ text: "x" }] }));
      assert.equal(decodeLookupResponse(Buffer.from(odd)), null);
    });

    it("for batch and stream responses, skipping fields it does not know", () => {
      const batch = toBinary(
        BatchLookupResponseSchema,
        create(BatchLookupResponseSchema, { results: [{ hit: true, generations: [{ text: "a" }] }, {}, { hit: true }] }),
      );
      const unknownField = Buffer.from([0xf8, 0x07, 0x01]);
      assert.deepEqual(decodeBatchLookupResponse(Buffer.concat([Buffer.from(batch), unknownField])), [[{ text: "a" }], null, []]);

      const stream = toBinary(
        StreamResponseSchema,
        create(StreamResponseSchema, {
          results: [
            { id: 3, result: { case: "lookup", value: { hit: true, generations: [{ text: "b" }] } } },
            { id: 4, result: { case: "update", value: { stored: true } } },
            { id: 5, result: { case: "error", value: { code: 8, message: "too big", reason: "entry_too_large" } } },
            { id: 7, result: { case: "update", value: {} } },
            { id: 6 },
          ],
        }),
      );
      assert.deepEqual(decodeStreamResponse(Buffer.concat([Buffer.from(stream), unknownField])), [
        { id: 3, kind: "lookup", generations: [{ text: "b" }], lease: null, near: null },
        { id: 4, kind: "update", stored: true },
        { id: 5, kind: "error", code: 8, message: "too big", reason: "entry_too_large" },
        { id: 7, kind: "update", stored: false },
        { id: 6, kind: "none" },
      ]);
    });

    it("refuses malformed bytes with a DecodeError", () => {
      const cases: [number[], string][] = [
        [[0x12, 0x05, 0x0a], "premature EOF"],
        [[0x08], "premature EOF"],
        [[0x12, 0x02, 0x12, 0x7f], "generation: premature EOF"],
        [[0x12, 0x03, 0x0a, 0x01, 0xc3], "generation: text is not valid UTF-8"],
      ];
      for (const [bytes, problem] of cases) {
        assert.throws(() => decodeLookupResponse(Buffer.from(bytes)), (error) => {
          assert.ok(error instanceof DecodeError, String(error));
          assert.equal(error.message, `cannot decode llmcache.v1.LookupResponse: ${problem}`);
          return true;
        });
      }
      assert.throws(() => decodeLookupResponse(Buffer.from([0x0a, 0x00])), {
        name: "DecodeError",
        message: "cannot decode llmcache.v1.LookupResponse: hit has wire type length-delimited, expected varint",
      });
      assert.throws(() => decodeStreamResponse(Buffer.from([0x0a, 0x03, 0x12, 0x01])), {
        name: "DecodeError",
        message: "cannot decode llmcache.v1.StreamResponse: premature EOF",
      });
    });
  });

  describe("a near cache's messages (WatchChanges, NearGrant, Invalidation)", () => {
    const KEY = "llmc:e:6e73:{digest}";

    it("writes a watch as protobuf-es does, and the server reads it back", () => {
      const watch = { id: 9, kind: "watch" as const, request: new Uint8Array(0) };
      const bytes = encodeStreamRequest([watch], streamOperationSize(watch));
      const expected = create(StreamRequestSchema, { operations: [create(StreamOperationSchema, { id: 9, operation: { case: "watch", value: {} } })] });
      assert.deepEqual(bytes, Buffer.from(toBinary(StreamRequestSchema, expected)));
      assert.deepEqual(readStreamRequest(bytes, requestChecks(DEFAULT_REQUEST_LIMITS)), [{ id: 9, kind: "watch" }]);
    });

    it("reads a grant and an invalidation as protobuf-es writes them, with the hit's own bytes to keep", () => {
      const hit = { hit: true, generations: [{ text: "b" }], near: { key: KEY, ttlMs: 1_500n } };
      const stream = toBinary(
        StreamResponseSchema,
        create(StreamResponseSchema, {
          results: [
            { id: 3, result: { case: "lookup", value: hit } },
            { id: 1, result: { case: "invalidation", value: { keys: [KEY, "other"] } } },
            { id: 1, result: { case: "invalidation", value: { all: true } } },
          ],
        }),
      );
      const [lookup, some, all] = decodeStreamResponse(Buffer.from(stream));
      assert.ok(lookup?.kind === "lookup" && lookup.near);
      assert.deepEqual(lookup.generations, [{ text: "b" }]);
      assert.deepEqual({ key: lookup.near.key, ttlMs: lookup.near.ttlMs }, { key: KEY, ttlMs: 1_500 });
      assert.deepEqual(decodeLookupResponse(lookup.near.response), [{ text: "b" }]);
      assert.deepEqual(some, { id: 1, kind: "invalidation", keys: [KEY, "other"], all: false });
      assert.deepEqual(all, { id: 1, kind: "invalidation", keys: [], all: true });
    });

    it("reads a heartbeat (an empty Invalidation), and refuses a grant without a key", () => {
      const heartbeat = toBinary(StreamResponseSchema, create(StreamResponseSchema, { results: [{ id: 1, result: { case: "invalidation", value: {} } }] }));
      assert.deepEqual(decodeStreamResponse(Buffer.from(heartbeat)), [{ id: 1, kind: "invalidation", keys: [], all: false }]);
      const keyless = toBinary(
        StreamResponseSchema,
        create(StreamResponseSchema, { results: [{ id: 2, result: { case: "lookup", value: { hit: true, near: { ttlMs: 5n } } } }] }),
      );
      assert.throws(() => decodeStreamResponse(Buffer.from(keyless)), (error: unknown) => error instanceof DecodeError && /near: the key is empty/.test(error.message));
    });

    it("has the server write grants and invalidations exactly as protobuf-es does", () => {
      const stored = Buffer.from(toBinary(LookupResponseSchema, create(LookupResponseSchema, { generations: [{ text: "g" }] })));
      const bytes = writeStreamResponse([
        { id: 4, kind: "lookup", stored: stored as never, near: { key: KEY, ttlMs: 0 } },
        { id: 5, kind: "lookup", stored: stored as never, near: { key: KEY, ttlMs: 300 } },
        { id: 1, kind: "invalidation", keys: [KEY], all: false },
        { id: 1, kind: "invalidation", keys: [], all: true },
      ]);
      const expected = create(StreamResponseSchema, {
        results: [
          { id: 4, result: { case: "lookup", value: { hit: true, generations: [{ text: "g" }], near: { key: KEY } } } },
          { id: 5, result: { case: "lookup", value: { hit: true, generations: [{ text: "g" }], near: { key: KEY, ttlMs: 300n } } } },
          { id: 1, result: { case: "invalidation", value: { keys: [KEY] } } },
          { id: 1, result: { case: "invalidation", value: { all: true } } },
        ],
      });
      assert.deepEqual(bytes, Buffer.from(toBinary(StreamResponseSchema, expected)));
      const { results } = fromBinary(StreamResponseSchema, bytes);
      const [forever, shortLived, some, all] = results;
      assert.ok(forever?.result.case === "lookup" && shortLived?.result.case === "lookup");
      assert.equal(forever.result.value.hit, true);
      assert.deepEqual(forever.result.value.generations.map((generation) => generation.text), ["g"]);
      assert.equal(forever.result.value.near?.key, KEY);
      assert.equal(forever.result.value.near?.ttlMs, 0n);
      assert.equal(shortLived.result.value.near?.ttlMs, 300n);
      assert.ok(some?.result.case === "invalidation" && all?.result.case === "invalidation");
      assert.deepEqual([some.result.value.keys, some.result.value.all], [[KEY], false]);
      assert.deepEqual([all.result.value.keys, all.result.value.all], [[], true]);
    });
  });
});
