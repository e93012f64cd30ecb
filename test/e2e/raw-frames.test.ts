import assert from "node:assert/strict";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { status } from "@grpc/grpc-js";
import { LookupRequestSchema, LookupResponseSchema, UpdateRequestSchema } from "../../gen/llmcache/v1/cache_pb.js";
import { CacheClient } from "../../src/index.js";
import { grpcFrame, rawCall } from "../helpers/raw-grpc.js";
import { startServerProcess, type ServerProcess } from "../helpers/server-process.js";

const LOOKUP = "/llmcache.v1.CacheService/Lookup";
const UPDATE = "/llmcache.v1.CacheService/Update";

/** A protobuf string field (wire type 2) holding the given bytes as they are. */
function stringField(fieldNumber: number, bytes: number[]): number[] {
  return [(fieldNumber << 3) | 2, bytes.length, ...bytes];
}

describe("the server, given raw frames", function () {
  this.timeout(20_000);
  let server: ServerProcess;
  let client: CacheClient;

  before(async () => {
    server = await startServerProcess();
    client = new CacheClient({ address: server.address });
    await client.aupdate("canary", "llm", [{ text: "still here" }]);
  });

  afterEach(async () => {
    assert.deepEqual(await client.alookup("canary", "llm"), [{ text: "still here" }], "the server still answers a normal lookup");
    assert.equal(server.child.exitCode, null, "the server is still running");
  });

  after(async () => {
    await client.close();
    const { code } = await server.stop();
    assert.equal(code, 0);
  });

  it("answers a well-formed Lookup written by hand (the harness works)", async () => {
    const request = toBinary(LookupRequestSchema, create(LookupRequestSchema, { prompt: "canary", llmString: "llm" }));
    const reply = await rawCall(server.address, LOOKUP, grpcFrame(request));
    assert.equal(reply.status, status.OK);
    const response = fromBinary(LookupResponseSchema, reply.body.subarray(5));
    assert.equal(response.hit, true);
    assert.deepEqual(response.generations.map((g) => g.text), ["still here"]);
  });

  for (const ttlMs of [2n ** 53n, 2n ** 63n, 2n ** 64n - 1n]) {
    it(`answers INVALID_ARGUMENT naming ttl_ms for a ttl_ms of ${ttlMs}, never INTERNAL`, async () => {
      const request = toBinary(UpdateRequestSchema, create(UpdateRequestSchema, { prompt: "p", llmString: "llm", generations: [{ text: "t" }], ttlMs }));
      const reply = await rawCall(server.address, UPDATE, grpcFrame(request));
      assert.equal(reply.status, status.INVALID_ARGUMENT, reply.message);
      assert.equal(
        reply.message,
        `cannot decode llmcache.v1.UpdateRequest: ttl_ms is ${ttlMs}, over the largest allowed, 9007199254740991 (set never_expires for an entry that never expires)`,
      );
    });
  }

  it("stores an entry with the largest ttl_ms allowed", async () => {
    const request = toBinary(UpdateRequestSchema, create(UpdateRequestSchema, { prompt: "long", llmString: "llm", generations: [{ text: "t" }], ttlMs: 2n ** 53n - 1n }));
    assert.equal((await rawCall(server.address, UPDATE, grpcFrame(request))).status, status.OK);
    assert.deepEqual(await client.alookup("long", "llm"), [{ text: "t" }]);
  });

  it("answers INVALID_ARGUMENT for garbage bytes", async () => {
    const reply = await rawCall(server.address, LOOKUP, grpcFrame(Buffer.from([0xff, 0xff, 0xff, 0xff, 0x0f])));
    assert.equal(reply.status, status.INVALID_ARGUMENT);
    assert.match(reply.message, /^cannot decode llmcache\.v1\.LookupRequest: /);
  });

  it("answers INVALID_ARGUMENT for a field number 0", async () => {
    const reply = await rawCall(server.address, LOOKUP, grpcFrame(Buffer.from([0x00, 0x01])));
    assert.equal(reply.status, status.INVALID_ARGUMENT);
    assert.match(reply.message, /^cannot decode llmcache\.v1\.LookupRequest: illegal tag/);
  });

  it("answers INVALID_ARGUMENT for a truncated message", async () => {
    const whole = toBinary(UpdateRequestSchema, create(UpdateRequestSchema, { prompt: "p", llmString: "llm", generations: [{ text: "hello" }] }));
    for (const cut of [1, 4, whole.length - 1]) {
      const reply = await rawCall(server.address, UPDATE, grpcFrame(whole.subarray(0, cut)));
      assert.equal(reply.status, status.INVALID_ARGUMENT, `cut at ${cut}`);
      assert.equal(reply.message, "cannot decode llmcache.v1.UpdateRequest: premature EOF");
    }
    assert.equal(await client.alookup("p", "llm"), null, "nothing was stored");
  });

  it("answers INVALID_ARGUMENT for invalid UTF-8 in a key", async () => {
    const reply = await rawCall(server.address, LOOKUP, grpcFrame(Buffer.from(stringField(1, [0x61, 0xc3, 0x28]))));
    assert.equal(reply.status, status.INVALID_ARGUMENT);
    assert.equal(reply.message, "cannot decode llmcache.v1.LookupRequest: prompt is not valid UTF-8");
  });

  it("answers INVALID_ARGUMENT for invalid UTF-8 in a generation's text, and stores nothing", async () => {
    const generation = stringField(1, [0xed, 0xa0, 0x80]); // an encoded surrogate: not UTF-8
    const body = [...stringField(1, [0x70]), ...stringField(2, [0x6c]), ...stringField(3, generation)];
    const reply = await rawCall(server.address, UPDATE, grpcFrame(Buffer.from(body)));
    assert.equal(reply.status, status.INVALID_ARGUMENT);
    assert.equal(reply.message, "cannot decode llmcache.v1.UpdateRequest: generations[0]: a string field is not valid UTF-8");
    assert.equal(await client.alookup("p", "l"), null);
  });

  it("answers INVALID_ARGUMENT for a known field sent with the wrong wire type", async () => {
    const reply = await rawCall(server.address, LOOKUP, grpcFrame(Buffer.from([(2 << 3) | 0, 0x01])));
    assert.equal(reply.status, status.INVALID_ARGUMENT);
    assert.equal(reply.message, "cannot decode llmcache.v1.LookupRequest: llm_string has wire type varint, expected length-delimited");
  });

  it("answers INVALID_ARGUMENT for a length that runs past the end of the message", async () => {
    const reply = await rawCall(server.address, LOOKUP, grpcFrame(Buffer.from([0x0a, 0x7f, 0x61])));
    assert.equal(reply.status, status.INVALID_ARGUMENT);
    assert.equal(reply.message, "cannot decode llmcache.v1.LookupRequest: premature EOF");
  });

  it("answers RESOURCE_EXHAUSTED for a message over the 4 MiB limit", async () => {
    const reply = await rawCall(server.address, LOOKUP, grpcFrame(Buffer.alloc(4 * 1024 * 1024 + 1)));
    assert.equal(reply.status, status.RESOURCE_EXHAUSTED);
    assert.match(reply.message, /^Received message larger than max \(4194305 vs 4194304\)$/);
  });

  it("answers RESOURCE_EXHAUSTED for a frame that only claims a huge length", async () => {
    const reply = await rawCall(server.address, LOOKUP, grpcFrame(Buffer.alloc(8), 1 << 30));
    assert.equal(reply.status, status.RESOURCE_EXHAUSTED);
  });

  it("answers INVALID_ARGUMENT for bytes that are not a ClearRequest or a StatsRequest", async () => {
    for (const method of ["Clear", "Stats"]) {
      const reply = await rawCall(server.address, `/llmcache.v1.CacheService/${method}`, grpcFrame(Buffer.from([0x0a, 0x05, 0x61])));
      assert.equal(reply.status, status.INVALID_ARGUMENT, method);
      assert.equal(reply.message, `cannot decode llmcache.v1.${method}Request: premature EOF`);
    }
  });

  it("answers UNIMPLEMENTED for a method the service does not have", async () => {
    const reply = await rawCall(server.address, "/llmcache.v1.CacheService/Nope", grpcFrame(Buffer.alloc(0)));
    assert.equal(reply.status, status.UNIMPLEMENTED);
    assert.match(reply.message, /\/llmcache\.v1\.CacheService\/Nope/);
  });

  it("answers UNIMPLEMENTED for a service it does not serve", async () => {
    const reply = await rawCall(server.address, "/other.v1.Service/Lookup", grpcFrame(Buffer.alloc(0)));
    assert.equal(reply.status, status.UNIMPLEMENTED);
  });

  // grpc-js itself answers a unary call that carries no complete message, and
  // it picks UNIMPLEMENTED: the handler never runs. What matters is that it is
  // a clean status, neither INTERNAL nor UNKNOWN, and the server lives on.
  for (const [name, body] of [
    ["an empty body", Buffer.alloc(0)],
    ["a frame cut inside its 5-byte prefix", Buffer.from([0, 0, 0])],
    ["a frame shorter than its declared length", grpcFrame(Buffer.from([0x0a, 0x01, 0x61]), 10)],
  ] as const) {
    it(`answers a clean UNIMPLEMENTED for ${name}`, async () => {
      const reply = await rawCall(server.address, LOOKUP, body);
      assert.equal(reply.status, status.UNIMPLEMENTED);
    });
  }

  it("answers an empty message (all fields default) as a lookup of ('', '')", async () => {
    await client.aupdate("", "", [{ text: "empty key" }]);
    const reply = await rawCall(server.address, LOOKUP, grpcFrame(Buffer.alloc(0)));
    assert.equal(reply.status, status.OK);
    const response = fromBinary(LookupResponseSchema, reply.body.subarray(5));
    assert.equal(response.hit, true);
    assert.deepEqual(response.generations.map((g) => g.text), ["empty key"]);
  });
});
