import assert from "node:assert/strict";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import {
  BatchLookupRequestSchema,
  LeaseSchema,
  LookupRequestSchema,
  LookupResponseSchema,
  ReleaseLeaseRequestSchema,
  ReleaseLeaseResponseSchema,
  StreamRequestSchema,
  UpdateRequestSchema,
} from "../../gen/llmcache/v1/cache_pb.js";
import { MAX_LEASE_MS } from "../../src/engine/leases.js";
import { copyGenerations } from "../../src/generation.js";
import { DecodeError } from "../../src/rpc/codec.js";
import { readBatchLookupRequest } from "../../src/rpc/codec/batch-lookup.js";
import {
  decodeLeasedLookupResponse,
  decodeLookupResponse,
  encodeLease,
  encodeLookupRequest,
  readLookupRequest,
  writeLookupResponse,
} from "../../src/rpc/codec/lookup.js";
import {
  decodeReleaseLeaseResponse,
  encodeReleaseLeaseRequest,
  readReleaseLeaseRequest,
  writeReleaseLeaseResponse,
} from "../../src/rpc/codec/release-lease.js";
import { decodeStreamResponse, readStreamRequest, writeStreamResponses } from "../../src/rpc/codec/stream.js";
import { encodeUpdateRequest, readUpdateRequest } from "../../src/rpc/codec/update.js";
import { asKeyBytes } from "../../src/rpc/key-bytes.js";
import { DEFAULT_REQUEST_LIMITS, requestChecks } from "../../src/server/request-limits.js";
import { chatGenerations } from "../fixtures/generations.js";

const LIMITS = requestChecks(DEFAULT_REQUEST_LIMITS);
const TOKEN = "AbCdEf12.1z";

/** A DecodeError whose message matches. */
function decodeError(message: RegExp) {
  return (error: unknown) => {
    assert.ok(error instanceof DecodeError, `a DecodeError, got ${error}`);
    assert.match(error.message, message);
    return true;
  };
}

describe("single flight on the wire", () => {
  describe("a LookupRequest with a lease", () => {
    const cases: [string, { leaseMs: number; waitMs: number }][] = [
      ["a lease and a wait", { leaseMs: 30_000, waitMs: 60_000 }],
      ["a lease of 1 ms and no wait", { leaseMs: 1, waitMs: 0 }],
      ["the longest lease and wait", { leaseMs: MAX_LEASE_MS, waitMs: MAX_LEASE_MS }],
    ];
    for (const [name, lease] of cases) {
      it(`is written as protobuf-es writes it and read back by both (${name})`, () => {
        const bytes = encodeLookupRequest("What is 2+2? é", "llm ✨", { namespace: "team ü", bypass: false, lease });
        const expected = create(LookupRequestSchema, {
          prompt: "What is 2+2? é",
          llmString: "llm ✨",
          namespace: "team ü",
          leaseMs: BigInt(lease.leaseMs),
          waitMs: BigInt(lease.waitMs),
        });
        assert.deepEqual(new Uint8Array(bytes), toBinary(LookupRequestSchema, expected), "the same bytes as protobuf-es");
        const decoded = fromBinary(LookupRequestSchema, bytes);
        assert.equal(decoded.prompt, "What is 2+2? é");
        assert.equal(decoded.llmString, "llm ✨");
        assert.equal(decoded.namespace, "team ü");
        assert.equal(decoded.bypass, false);
        assert.equal(decoded.leaseMs, BigInt(lease.leaseMs));
        assert.equal(decoded.waitMs, BigInt(lease.waitMs));

        assert.deepEqual(readLookupRequest(bytes, LIMITS), {
          namespace: asKeyBytes("team ü"),
          prompt: asKeyBytes("What is 2+2? é"),
          llmString: asKeyBytes("llm ✨"),
          bypass: false,
          leaseMs: lease.leaseMs,
          waitMs: lease.waitMs,
        });
      });
    }

    it("carries no lease field at all without a lease, and the server reads lease_ms 0", () => {
      const bytes = encodeLookupRequest("p", "l", { namespace: "", bypass: false });
      assert.deepEqual(new Uint8Array(bytes), toBinary(LookupRequestSchema, create(LookupRequestSchema, { prompt: "p", llmString: "l" })));
      const read = readLookupRequest(bytes, LIMITS);
      assert.equal(read.leaseMs, 0);
      assert.equal(read.waitMs, 0);
    });

    it("rides in a stream operation, where the server reads its lease", () => {
      const lookup = encodeLookupRequest("p", "l", { namespace: "ns", bypass: false, lease: { leaseMs: 500, waitMs: 700 } });
      const stream = toBinary(
        StreamRequestSchema,
        create(StreamRequestSchema, {
          operations: [{ id: 9, operation: { case: "lookup", value: fromBinary(LookupRequestSchema, lookup) } }],
        }),
      );
      const [operation] = readStreamRequest(Buffer.from(stream), LIMITS);
      assert.ok(operation && operation.kind === "lookup", `a lookup, got ${JSON.stringify(operation)}`);
      assert.equal(operation.id, 9);
      assert.equal(operation.lookup.leaseMs, 500);
      assert.equal(operation.lookup.waitMs, 700);
    });

    it("is refused by the server when it waits without a lease, leases with bypass, or asks past an hour", () => {
      const raw = (fields: object) => Buffer.from(toBinary(LookupRequestSchema, create(LookupRequestSchema, { prompt: "p", llmString: "l", ...fields })));
      assert.throws(() => readLookupRequest(raw({ waitMs: 10n }), LIMITS), decodeError(/wait_ms needs lease_ms/));
      assert.throws(() => readLookupRequest(raw({ leaseMs: 10n, bypass: true }), LIMITS), decodeError(/lease_ms with bypass/));
      assert.throws(() => readLookupRequest(raw({ leaseMs: BigInt(MAX_LEASE_MS + 1) }), LIMITS), decodeError(/lease_ms is 3600001, over the largest allowed/));
      assert.throws(
        () => readLookupRequest(raw({ leaseMs: 1n, waitMs: BigInt(MAX_LEASE_MS + 1) }), LIMITS),
        decodeError(/wait_ms is 3600001, over the largest allowed/),
      );
      assert.throws(() => readLookupRequest(raw({ leaseMs: 2n ** 63n }), LIMITS), decodeError(/lease_ms is 9223372036854775808/));
      // Each message names the request it could not read.
      assert.throws(() => readLookupRequest(raw({ waitMs: 10n }), LIMITS), decodeError(/llmcache\.v1\.LookupRequest/));
    });

    it("is refused in a BatchLookup, while the same lookup without a lease is read", () => {
      const batch = (leaseMs: bigint) =>
        Buffer.from(toBinary(BatchLookupRequestSchema, create(BatchLookupRequestSchema, { lookups: [{ prompt: "a" }, { prompt: "b", leaseMs }] })));
      assert.throws(() => readBatchLookupRequest(batch(100n), LIMITS), decodeError(/lease_ms is not allowed in a batch/));
      assert.equal(readBatchLookupRequest(batch(0n), LIMITS).length, 2);
    });
  });

  describe("an UpdateRequest with a lease token", () => {
    it("is written as protobuf-es writes it, and read back by both", () => {
      const generations = copyGenerations([{ text: "Paris" }, { text: "Lyon 🗼" }]);
      const fields = { namespace: "ns", ttlMs: 60_000, noStore: false, onlyIfAbsent: false, leaseToken: TOKEN };
      const bytes = encodeUpdateRequest("p", "l", generations, fields);
      const expected = create(UpdateRequestSchema, {
        prompt: "p",
        llmString: "l",
        generations: [{ text: "Paris" }, { text: "Lyon 🗼" }],
        namespace: "ns",
        ttlMs: 60_000n,
        leaseToken: TOKEN,
      });
      assert.deepEqual(new Uint8Array(bytes), toBinary(UpdateRequestSchema, expected), "the same bytes as protobuf-es");
      const decoded = fromBinary(UpdateRequestSchema, bytes);
      assert.equal(decoded.leaseToken, TOKEN);
      assert.equal(decoded.ttlMs, 60_000n);
      assert.deepEqual(
        decoded.generations.map((generation) => generation.text),
        ["Paris", "Lyon 🗼"],
      );

      const read = readUpdateRequest(bytes, LIMITS);
      assert.equal(read.leaseToken, TOKEN);
      assert.equal(read.namespace, "ns");
      assert.equal(read.prompt, "p");
      assert.equal(read.llmString, "l");
      assert.equal(read.ttlMs, 60_000);
      assert.equal(read.noStore, false);
      assert.equal(read.onlyIfAbsent, false);
    });

    it("with only_if_absent and never_expires keeps its token beside them", () => {
      const bytes = encodeUpdateRequest("p", "l", [], { namespace: "", ttlMs: Infinity, noStore: false, onlyIfAbsent: true, leaseToken: TOKEN });
      const decoded = fromBinary(UpdateRequestSchema, bytes);
      assert.equal(decoded.neverExpires, true);
      assert.equal(decoded.onlyIfAbsent, true);
      assert.equal(decoded.leaseToken, TOKEN);
      const read = readUpdateRequest(bytes, LIMITS);
      assert.equal(read.ttlMs, Infinity);
      assert.equal(read.onlyIfAbsent, true);
      assert.equal(read.leaseToken, TOKEN);
    });

    it("has no token field without one, and the server reads undefined (an empty token too)", () => {
      const bytes = encodeUpdateRequest("p", "l", [{ text: "t" }], { namespace: "", ttlMs: undefined, noStore: false, onlyIfAbsent: false });
      assert.equal(fromBinary(UpdateRequestSchema, bytes).leaseToken, "");
      assert.equal(readUpdateRequest(bytes, LIMITS).leaseToken, undefined);
      const empty = Buffer.from(toBinary(UpdateRequestSchema, create(UpdateRequestSchema, { prompt: "p", leaseToken: "" })));
      assert.equal(readUpdateRequest(empty, LIMITS).leaseToken, undefined);
    });
  });

  describe("a ReleaseLeaseRequest", () => {
    it("is written as protobuf-es writes it, and read back by both", () => {
      const bytes = encodeReleaseLeaseRequest("prompt é", "llm", "team", TOKEN);
      const expected = create(ReleaseLeaseRequestSchema, { prompt: "prompt é", llmString: "llm", namespace: "team", leaseToken: TOKEN });
      assert.deepEqual(new Uint8Array(bytes), toBinary(ReleaseLeaseRequestSchema, expected), "the same bytes as protobuf-es");
      const decoded = fromBinary(ReleaseLeaseRequestSchema, bytes);
      assert.equal(decoded.prompt, "prompt é");
      assert.equal(decoded.llmString, "llm");
      assert.equal(decoded.namespace, "team");
      assert.equal(decoded.leaseToken, TOKEN);
      assert.deepEqual(readReleaseLeaseRequest(bytes, LIMITS), {
        namespace: "team",
        prompt: asKeyBytes("prompt é"),
        llmString: "llm",
        leaseToken: TOKEN,
      });
    });

    it("in the default namespace leaves the namespace out", () => {
      const bytes = encodeReleaseLeaseRequest("p", "l", "", TOKEN);
      assert.deepEqual(new Uint8Array(bytes), toBinary(ReleaseLeaseRequestSchema, create(ReleaseLeaseRequestSchema, { prompt: "p", llmString: "l", leaseToken: TOKEN })));
      assert.equal(readReleaseLeaseRequest(bytes, LIMITS).namespace, "");
    });

    it("is refused by the server without a token", () => {
      const bytes = Buffer.from(toBinary(ReleaseLeaseRequestSchema, create(ReleaseLeaseRequestSchema, { prompt: "p", llmString: "l" })));
      assert.throws(() => readReleaseLeaseRequest(bytes, LIMITS), decodeError(/llmcache\.v1\.ReleaseLeaseRequest.*lease_token is empty/));
    });

    it("rides in a stream operation as release_lease", () => {
      const stream = toBinary(
        StreamRequestSchema,
        create(StreamRequestSchema, {
          operations: [{ id: 4, operation: { case: "releaseLease", value: fromBinary(ReleaseLeaseRequestSchema, encodeReleaseLeaseRequest("p", "l", "n", TOKEN)) } }],
        }),
      );
      const [operation] = readStreamRequest(Buffer.from(stream), LIMITS);
      assert.ok(operation && operation.kind === "release", `a release, got ${JSON.stringify(operation)}`);
      assert.equal(operation.id, 4);
      assert.deepEqual(operation.release, { namespace: "n", prompt: "p", llmString: "l", leaseToken: TOKEN });
    });
  });

  describe("a LookupResponse that grants a lease", () => {
    it("is written by the server and read by the client's leased decoder and by protobuf-es", () => {
      const bytes = writeLookupResponse(undefined, encodeLease({ token: TOKEN, leaseMs: 30_000 }));
      assert.deepEqual(decodeLeasedLookupResponse(bytes), { generations: null, lease: { token: TOKEN, leaseMs: 30_000 } });
      const decoded = fromBinary(LookupResponseSchema, bytes);
      assert.equal(decoded.hit, false);
      assert.equal(decoded.generations.length, 0);
      assert.equal(decoded.lease?.token, TOKEN);
      assert.equal(decoded.lease?.leaseMs, 30_000n);
      // A client that did not ask for a lease reads it as the miss it is.
      assert.equal(decodeLookupResponse(bytes), null);
    });

    it("keeps the longest lease's time exact", () => {
      const bytes = writeLookupResponse(undefined, encodeLease({ token: "t", leaseMs: MAX_LEASE_MS }));
      assert.deepEqual(decodeLeasedLookupResponse(bytes), { generations: null, lease: { token: "t", leaseMs: MAX_LEASE_MS } });
    });

    it("a plain miss and a hit carry no lease", () => {
      assert.deepEqual(decodeLeasedLookupResponse(writeLookupResponse(undefined)), { generations: null, lease: null });
      for (const generations of [[{ text: "Paris" }], [], ...Object.values(chatGenerations)]) {
        const canonical = copyGenerations(generations);
        // The stored bytes of a hit are what the server kept from an update.
        const stored = readUpdateRequest(
          encodeUpdateRequest("p", "l", canonical, { namespace: "", ttlMs: undefined, noStore: false, onlyIfAbsent: false, leaseToken: TOKEN }),
          LIMITS,
        ).generations;
        assert.deepEqual(decodeLeasedLookupResponse(writeLookupResponse(stored)), { generations: canonical, lease: null });
      }
    });

    it("with an empty token is refused by the client", () => {
      const bytes = Buffer.from(toBinary(LookupResponseSchema, create(LookupResponseSchema, { lease: { token: "", leaseMs: 5n } })));
      assert.throws(() => decodeLeasedLookupResponse(bytes), decodeError(/lease: the token is empty/));
    });

    it("reaches a stream's caller with its id", () => {
      const [message, ...more] = writeStreamResponses(
        [
          { id: 1, kind: "lookup", stored: undefined, lease: encodeLease({ token: TOKEN, leaseMs: 1_500 }) },
          { id: 2, kind: "lookup", stored: undefined },
          { id: 3, kind: "release", released: true },
          { id: 4, kind: "release", released: false },
        ],
        DEFAULT_REQUEST_LIMITS.maxReplyBytes,
      );
      assert.equal(more.length, 0);
      assert.deepEqual(decodeStreamResponse(message!), [
        { id: 1, kind: "lookup", generations: null, lease: { token: TOKEN, leaseMs: 1_500 }, near: null },
        { id: 2, kind: "lookup", generations: null, lease: null, near: null },
        { id: 3, kind: "release", released: true },
        { id: 4, kind: "release", released: false },
      ]);
    });

    it("and the lease message itself is protobuf-es's Lease", () => {
      const lease = encodeLease({ token: TOKEN, leaseMs: 12_345 });
      const decoded = fromBinary(LeaseSchema, lease);
      assert.equal(decoded.token, TOKEN);
      assert.equal(decoded.leaseMs, 12_345n);
    });
  });

  describe("a ReleaseLeaseResponse", () => {
    it("reads back as released or not, by the client and protobuf-es", () => {
      assert.equal(decodeReleaseLeaseResponse(writeReleaseLeaseResponse(true)), true);
      assert.equal(decodeReleaseLeaseResponse(writeReleaseLeaseResponse(false)), false);
      assert.equal(fromBinary(ReleaseLeaseResponseSchema, writeReleaseLeaseResponse(true)).released, true);
    });
  });
});
