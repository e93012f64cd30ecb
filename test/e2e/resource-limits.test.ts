import assert from "node:assert/strict";
import { connect as connectHttp2, type ClientHttp2Session } from "node:http2";
import { connect as connectTcp, type Socket } from "node:net";
import { create, toBinary } from "@bufbuild/protobuf";
import { status } from "@grpc/grpc-js";
import { BatchLookupRequestSchema, CacheService, LookupRequestSchema } from "../../gen/llmcache/v1/cache_pb.js";
import { CacheClient, CacheError } from "../../src/index.js";
import { methodPath } from "../../src/rpc/service-definition.js";
import { grpcFrame, rawCall } from "../helpers/raw-grpc.js";
import { startServerProcess, type ServerProcess } from "../helpers/server-process.js";

const MiB = 2 ** 20;
/** About 1 MiB of stored generations. */
const ONE_MIB_ENTRY = [{ text: "x".repeat(MiB - 64) }];

describe("resource limits", function () {
  this.timeout(30_000);

  describe("namespaces", () => {
    let server: ServerProcess;
    let client: CacheClient;
    before(async () => {
      server = await startServerProcess(["--max-namespaces", "50"]);
      client = new CacheClient({ address: server.address });
    });
    after(async () => {
      await client.close();
      await server.stop();
    });

    it("keeps no more than 1,000 records of namespaces that were only looked up, and lists at most 1,000", async () => {
      for (let i = 0; i < 3000; i += 100) {
        await Promise.all(Array.from({ length: 100 }, (_, j) => client.alookup("p", "llm", { namespace: `looked-up-${i + j}` })));
      }
      const { total, namespaces, namespacesNotListed } = await client.astats();
      assert.equal(total.misses, 3000, "every lookup counted in the total");
      const known = Object.keys(namespaces).length + namespacesNotListed;
      assert.ok(known <= 1001, `the server knows ${known} namespaces`);
      assert.ok(Object.keys(namespaces).length <= 1000);
      assert.ok(namespaces["looked-up-2999"], "the most recently used are kept");
      assert.equal(namespaces["looked-up-0"], undefined, "the least recently used are dropped");
    });

    it("refuses a namespace past --max-namespaces with RESOURCE_EXHAUSTED naming it, and takes one again once a namespace empties", async () => {
      for (let i = 0; i < 50; i++) await client.aupdate("p", "llm", [{ text: "t" }], { namespace: `held-${i}` });
      await assert.rejects(client.aupdate("p", "llm", [{ text: "t" }], { namespace: "one-too-many" }), (error: unknown) => {
        assert.ok(error instanceof CacheError);
        assert.equal(error.code, "RESOURCE_EXHAUSTED");
        assert.match(error.message, /too many namespaces: 50 namespaces hold entries, the most allowed \(--max-namespaces\)$/);
        return true;
      });
      await assert.rejects(
        client.aupdateMany([["p", "llm", [{ text: "t" }]], ["q", "llm", [{ text: "t" }]]], { namespace: "one-too-many" }),
        { code: "RESOURCE_EXHAUSTED", message: /too many namespaces/ },
      );
      await assert.rejects(
        client.aupdateMany([["fresh", "llm", [{ text: "t" }]]], { namespace: "one-too-many-too" }),
        { code: "RESOURCE_EXHAUSTED" },
        "a batch that needs a namespace more applies none of its updates",
      );
      assert.equal(await client.alookup("p", "llm", { namespace: "one-too-many" }), null, "nothing of the refused batch was stored");
      await client.aupdate("p", "llm", [{ text: "replaced" }], { namespace: "held-7" });
      await client.aclear({ namespace: "held-0" });
      await client.aupdate("p", "llm", [{ text: "t" }], { namespace: "one-too-many" });
      assert.deepEqual(await client.alookup("p", "llm", { namespace: "one-too-many" }), [{ text: "t" }]);
    });
  });

  describe("replies", () => {
    let server: ServerProcess;
    let client: CacheClient;
    before(async () => {
      server = await startServerProcess(["--max-reply-bytes", "2MiB"]);
      client = new CacheClient({ address: server.address });
      await client.aupdate("big", "llm", ONE_MIB_ENTRY);
    });
    after(async () => {
      await client.close();
      await server.stop();
    });

    it("refuses a BatchLookup whose reply would pass --max-reply-bytes, naming the limit", async () => {
      const lookups = Array.from({ length: 3 }, () => ({ prompt: "big", llmString: "llm" }));
      const request = toBinary(BatchLookupRequestSchema, create(BatchLookupRequestSchema, { lookups }));
      const reply = await rawCall(server.address, methodPath(CacheService.method.batchLookup), grpcFrame(request));
      assert.equal(reply.status, status.RESOURCE_EXHAUSTED);
      assert.match(reply.message, /^the reply's size in bytes is 31\d{5}, over the limit of 2097152 \(--max-reply-bytes\)$/);
      assert.equal((await client.alookupMany([["big", "llm"]]))[0]?.[0]?.text.length, MiB - 64, "one is within the limit");
    });

    it("spreads a stream's big results over several messages, so each caller still gets its own", async () => {
      const results = await Promise.all(Array.from({ length: 5 }, () => client.alookup("big", "llm")));
      for (const result of results) assert.equal(result?.[0]?.text.length, MiB - 64);
    });

    it("refuses a Lookup of an entry larger than the limit on its own", async () => {
      const huge = await startServerProcess(["--max-reply-bytes", "512KiB"]);
      const hugeClient = new CacheClient({ address: huge.address, batching: false });
      try {
        await hugeClient.aupdate("big", "llm", ONE_MIB_ENTRY);
        await assert.rejects(hugeClient.alookup("big", "llm"), {
          code: "RESOURCE_EXHAUSTED",
          message: /^Lookup failed: RESOURCE_EXHAUSTED: the reply's size in bytes is 10\d{5}, over the limit of 524288 \(--max-reply-bytes\)$/,
        });
      } finally {
        await hugeClient.close();
        await huge.stop();
      }
    });
  });

  describe("replies within the default --max-reply-bytes (16 MiB)", () => {
    let server: ServerProcess;
    before(async () => {
      server = await startServerProcess();
      const client = new CacheClient({ address: server.address });
      try {
        for (let i = 0; i < 10; i++) await client.aupdate(`big ${i}`, "llm", ONE_MIB_ENTRY);
      } finally {
        await client.close();
      }
    });
    after(() => server.stop());

    // A reply may be as big as the server allows, which is past grpc-js's own
    // default of 4 MiB for what a client receives.
    for (const batching of [true, false]) {
      it(`reach a client whatever their size up to the server's limit (batching ${batching ? "on" : "off"})`, async () => {
        const client = new CacheClient({ address: server.address, batching });
        const keys = Array.from({ length: 10 }, (_, i): [string, string] => [`big ${i}`, "llm"]);
        try {
          const each = await Promise.all(keys.map(([prompt, llmString]) => client.alookup(prompt, llmString)));
          for (const result of each) assert.equal(result?.[0]?.text.length, MiB - 64);
          const batch = await client.alookupMany(keys);
          assert.equal(batch.length, 10);
          for (const result of batch) assert.equal(result?.[0]?.text.length, MiB - 64);
          assert.equal(client.lookup("big 0", "llm")?.[0]?.text.length, MiB - 64, "through the blocking methods' own channel too");
        } finally {
          await client.close();
        }
      });
    }
  });

  describe("a client that does not read", () => {
    let server: ServerProcess;
    before(async () => {
      server = await startServerProcess(["--max-unread-bytes", "2MiB"]);
      const client = new CacheClient({ address: server.address });
      await client.aupdate("big", "llm", ONE_MIB_ENTRY);
      await client.close();
    });
    after(() => server.stop());

    it("gets RESOURCE_EXHAUSTED once its unread replies would pass --max-unread-bytes, and the server lets them go when it leaves", async () => {
      for (let round = 0; round < 2; round++) {
        // A window of 0: the server may send no reply data on any stream.
        const session = connectHttp2(`http://${server.address}`, { settings: { initialWindowSize: 0 } });
        try {
          const calls = Array.from({ length: 4 }, () => statusOf(session, methodPath(CacheService.method.lookup), lookupOf("big")));
          const refused = await Promise.race([Promise.any(calls), timeout(5_000)]);
          assert.equal(refused.code, status.RESOURCE_EXHAUSTED);
          assert.match(refused.message, /^this connection has \d+ bytes of replies it has not read, and \d+ more would pass the limit of 2097152 \(--max-unread-bytes\)$/);
        } finally {
          session.destroy();
        }
      }
      const client = new CacheClient({ address: server.address });
      assert.equal((await client.alookup("big", "llm"))?.[0]?.text.length, MiB - 64, "a reading client is served");
      await client.close();
    });
  });

  describe("connections", () => {
    it("closes connections that never start a call, and idle ones, so descriptors come back under a low limit", async function () {
      const server = await startServerProcess(["--handshake-timeout", "1s", "--idle-timeout", "1500ms"], {}, [], ["prlimit", "--nofile=96"]);
      const sockets: Socket[] = [];
      const sessions: ClientHttp2Session[] = [];
      try {
        const [host, port] = [server.address.split(":")[0]!, Number(server.address.split(":")[1])];
        // Raw TCP that never speaks, and HTTP/2 that sends its preface and nothing more: together past the limit.
        for (let i = 0; i < 60; i++) sockets.push(connectTcp(port, host).on("error", () => {}));
        for (let i = 0; i < 60; i++) sessions.push(connectHttp2(`http://${server.address}`).on("error", () => {}));
        const closed = Promise.all([
          ...sockets.map((socket) => new Promise((resolve) => socket.once("close", resolve))),
          ...sessions.map((session) => new Promise((resolve) => session.once("close", resolve))),
        ]);
        await Promise.race([closed, timeout(8_000).then(() => assert.fail("the server did not close the silent connections"))]);

        const client = new CacheClient({ address: server.address, timeoutMs: 3_000 });
        await client.aupdate("p", "llm", [{ text: "served" }]);
        assert.deepEqual(await client.alookup("p", "llm"), [{ text: "served" }]);
        await client.close();

        // A connection that made a call, then sits idle past --idle-timeout.
        const idle = connectHttp2(`http://${server.address}`).on("error", () => {});
        sessions.push(idle);
        assert.equal((await statusOf(idle, methodPath(CacheService.method.lookup), lookupOf("p"))).code, status.OK);
        const idleClosed = new Promise((resolve) => idle.once("close", resolve));
        await Promise.race([idleClosed, timeout(5_000).then(() => assert.fail("the idle connection stayed open"))]);
      } finally {
        for (const socket of sockets) socket.destroy();
        for (const session of sessions) session.destroy();
        await server.stop();
      }
    });
  });
});

function lookupOf(prompt: string): Buffer {
  return grpcFrame(toBinary(LookupRequestSchema, create(LookupRequestSchema, { prompt, llmString: "llm" })));
}

/** Starts a call on the session and resolves with its status once one arrives (data is read as far as the window lets it come). */
function statusOf(session: ClientHttp2Session, path: string, body: Buffer): Promise<{ code: number; message: string }> {
  return new Promise((resolve, reject) => {
    const stream = session.request({ ":method": "POST", ":path": path, "content-type": "application/grpc", te: "trailers" });
    const settle = (fields: Record<string, unknown>) => {
      if (fields["grpc-status"] !== undefined) resolve({ code: Number(fields["grpc-status"]), message: decodeURIComponent(String(fields["grpc-message"] ?? "")) });
    };
    stream.on("response", settle);
    stream.on("trailers", settle);
    stream.on("error", reject);
    stream.resume();
    stream.end(body);
  });
}

function timeout(ms: number): Promise<never> {
  return new Promise((_, reject) => setTimeout(() => reject(new Error(`timed out after ${ms} ms`)), ms).unref());
}
