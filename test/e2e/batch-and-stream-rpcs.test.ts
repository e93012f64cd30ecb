import assert from "node:assert/strict";
import { create, toBinary } from "@bufbuild/protobuf";
import { status } from "@grpc/grpc-js";
import { BatchUpdateRequestSchema, CacheService, UpdateRequestSchema } from "../../gen/llmcache/v1/cache_pb.js";
import { CacheClient, CacheError, type Generation } from "../../src/index.js";
import { methodPath } from "../../src/rpc/service-definition.js";
import { grpcFrame, rawCall } from "../helpers/raw-grpc.js";
import { openRawStream } from "../helpers/raw-stream.js";
import { startServerProcess, type ServerProcess } from "../helpers/server-process.js";

describe("BatchLookup, BatchUpdate and Stream", function () {
  this.timeout(20_000);
  let server: ServerProcess;
  let client: CacheClient;

  before(async () => {
    server = await startServerProcess(["--maxsize", "5"]);
    client = new CacheClient({ address: server.address });
  });
  beforeEach(() => client.aclear());
  after(async () => {
    await client.close();
    await server.stop();
  });

  describe("the batch calls", () => {
    it("answer lookups in request order: hits, misses, empty-list hits and repeats", async () => {
      await client.aupdateMany([
        ["a", "llm", [{ text: "A" }]],
        ["b", "llm", []],
        ["c", "other", [{ text: "C1" }, { text: "C2" }]],
      ]);
      const results = await client.alookupMany([
        ["c", "other"],
        ["missing", "llm"],
        ["a", "llm"],
        ["b", "llm"],
        ["a", "llm"],
        ["c", "llm"],
      ]);
      assert.deepEqual(results, [[{ text: "C1" }, { text: "C2" }], null, [{ text: "A" }], [], [{ text: "A" }], null]);
    });

    it("answer an empty batch with an empty list", async () => {
      assert.deepEqual(await client.alookupMany([]), []);
      await client.aupdateMany([]);
    });

    it("apply updates in order, as many single updates would: the last of a repeated key wins, eviction is FIFO", async () => {
      const entries = ["k1", "k2", "k1", "k3", "k4", "k5", "k6"].map(
        (key, i) => [key, "llm", [{ text: `${key}#${i}` }]] as [string, string, Generation[]],
      );
      await client.aupdateMany(entries);
      // maxsize 5: k1..k6 are six keys, so the oldest inserted (k1) is gone; k1's overwrite kept its place.
      assert.deepEqual(
        await client.alookupMany([["k1", "llm"], ["k2", "llm"], ["k3", "llm"], ["k6", "llm"]]),
        [null, [{ text: "k2#1" }], [{ text: "k3#3" }], [{ text: "k6#6" }]],
      );
    });

    it("store nothing when the client refuses one entry, and say which", async () => {
      await assert.rejects(
        client.aupdateMany([
          ["fine", "llm", [{ text: "ok" }]],
          ["bad", "llm", [{ text: 42 }] as unknown as Generation[]],
        ]),
        { name: "TypeError", message: "entries[1].generations[0].text must be a string, got number 42" },
      );
      assert.equal(await client.alookup("fine", "llm"), null);
    });

    it("store nothing when the server refuses one update, and say which", async () => {
      const good = toBinary(UpdateRequestSchema, create(UpdateRequestSchema, { prompt: "fine", llmString: "llm", generations: [{ text: "ok" }] }));
      const bad = Buffer.from([0x0a, 0x02, 0xc3, 0x28]); // prompt: invalid UTF-8
      const body = Buffer.concat([Buffer.from([0x0a, good.length]), good, Buffer.from([0x0a, bad.length]), bad]);
      const reply = await rawCall(server.address, methodPath(CacheService.method.batchUpdate), grpcFrame(body));
      assert.equal(reply.status, status.INVALID_ARGUMENT);
      assert.equal(reply.message, "cannot decode llmcache.v1.BatchUpdateRequest: updates[1]: prompt is not valid UTF-8");
      assert.equal(await client.alookup("fine", "llm"), null);
    });

    it("refuse a batch over the message size limit with RESOURCE_EXHAUSTED", async () => {
      const keys = Array.from({ length: 5 }, (_, i): [string, string] => [`${i}`.repeat(1024 * 1024), "llm"]);
      await assert.rejects(client.alookupMany(keys), (error: unknown) => {
        assert.ok(error instanceof CacheError);
        assert.equal(error.code, "RESOURCE_EXHAUSTED");
        assert.match(error.message, /^BatchLookup failed: RESOURCE_EXHAUSTED: /);
        return true;
      });
    });

    it("decode with protobuf-es exactly as BatchUpdateRequest encodes them (unknown fields skipped)", async () => {
      const request = create(BatchUpdateRequestSchema, {
        updates: [{ prompt: "p", llmString: "l", generations: [{ text: "t", generationInfo: { n: 1 } }] }],
      });
      const withUnknown = Buffer.concat([Buffer.from(toBinary(BatchUpdateRequestSchema, request)), Buffer.from([0xf8, 0x07, 0x05])]);
      const reply = await rawCall(server.address, methodPath(CacheService.method.batchUpdate), grpcFrame(withUnknown));
      assert.equal(reply.status, status.OK, reply.message);
      assert.deepEqual(await client.alookup("p", "l"), [{ text: "t", generationInfo: { n: 1 } }]);
    });
  });

  describe("the stream", () => {
    const openStream = () => openRawStream(server.address);

    it("answers every operation of a message with its id, and keeps order within the message", async () => {
      const stream = openStream();
      try {
        stream.send({
          operations: [
            { id: 7, operation: { case: "update", value: { prompt: "p", llmString: "l", generations: [{ text: "x" }] } } },
            { id: 9, operation: { case: "lookup", value: { prompt: "p", llmString: "l" } } },
            { id: 3, operation: { case: "lookup", value: { prompt: "nope", llmString: "l" } } },
          ],
        });
        const { results } = await stream.next();
        assert.deepEqual(results.map((r) => [r.id, r.result.case]), [[7, "update"], [9, "lookup"], [3, "lookup"]]);
        const hit = results[1]!.result.value as { hit: boolean; generations: { text: string }[] };
        assert.equal(hit.hit, true);
        assert.deepEqual(hit.generations.map((g) => g.text), ["x"]);
        assert.equal((results[2]!.result.value as { hit: boolean }).hit, false);
      } finally {
        stream.close();
      }
    });

    it("answers a malformed operation with an error result of its own, and goes on", async () => {
      const stream = openStream();
      try {
        // Operation 2's lookup has a prompt that is not UTF-8; operation 4 has no body at all.
        const body = Buffer.concat([
          operationBytes(1, 2, Buffer.from([0x0a, 0x01, 0x61])),
          operationBytes(2, 2, Buffer.from([0x0a, 0x02, 0xc3, 0x28])),
          Buffer.from([0x0a, 0x02, 0x08, 0x04]),
          operationBytes(5, 2, Buffer.from([0x0a, 0x01, 0x61])),
        ]);
        stream.call.write(body);
        const { results } = await stream.next();
        assert.deepEqual(
          results.map((r) => [r.id, r.result.case, r.result.case === "error" ? [r.result.value.code, r.result.value.message] : undefined]),
          [
            [1, "lookup", undefined],
            [2, "error", [status.INVALID_ARGUMENT, "cannot decode llmcache.v1.LookupRequest: prompt is not valid UTF-8"]],
            [4, "error", [status.INVALID_ARGUMENT, "operation 4 has no lookup, update, release_lease, cancel or watch"]],
            [5, "lookup", undefined],
          ],
        );
        stream.send({ operations: [{ id: 6, operation: { case: "lookup", value: { prompt: "a", llmString: "" } } }] });
        assert.deepEqual((await stream.next()).results.map((r) => r.id), [6]);
      } finally {
        stream.close();
      }
    });

    it("ends the stream with INVALID_ARGUMENT when the message itself is malformed", async () => {
      const stream = openStream();
      try {
        // events.once would reject on the "error" that comes with the status.
        const ended = new Promise<{ code: number; details: string }>((resolve) => stream.call.on("status", resolve));
        stream.call.write(Buffer.from([0x0a, 0x7f, 0x01]));
        const { code, details } = await ended;
        assert.equal(code, status.INVALID_ARGUMENT);
        assert.equal(details, "cannot decode llmcache.v1.StreamRequest: premature EOF");
      } finally {
        stream.close();
      }
      assert.deepEqual(await client.alookup("still", "answering"), null);
    });
  });
});

/** A StreamOperation with an id and a body under the given field number (2: lookup, 3: update), as raw bytes. */
function operationBytes(id: number, field: number, body: Buffer): Buffer {
  const operation = Buffer.concat([Buffer.from([0x08, id, (field << 3) | 2, body.length]), body]);
  return Buffer.concat([Buffer.from([0x0a, operation.length]), operation]);
}
