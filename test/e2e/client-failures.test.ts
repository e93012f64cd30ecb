import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { setTimeout as sleep } from "node:timers/promises";
import { promisify } from "node:util";
import { CacheClient, startServer } from "../../src/index.js";
import { isCacheError } from "../helpers/assertions.js";
import { runCli, startServerProcess, type ServerProcess } from "../helpers/server-process.js";
import { closedPort, startSilentListener, startStalledGrpcServer } from "../helpers/stalled-server.js";

async function elapsedMs(run: () => unknown): Promise<number> {
  const start = performance.now();
  try {
    await run();
  } catch {
    // the caller asserts on the error separately
  }
  return performance.now() - start;
}

describe("CacheClient failures", function () {
  this.timeout(20_000);

  describe("with no server listening", () => {
    let client: CacheClient;
    before(async () => {
      client = new CacheClient({ address: `127.0.0.1:${await closedPort()}`, timeoutMs: 3_000 });
    });
    after(() => client.close());

    it("rejects an async call with UNAVAILABLE, naming the method", async () => {
      await assert.rejects(client.alookup("p", "llm"), isCacheError("UNAVAILABLE", /^Lookup failed: UNAVAILABLE: /));
    });

    it("throws UNAVAILABLE from a blocking call", () => {
      assert.throws(() => client.update("p", "llm", []), isCacheError("UNAVAILABLE", /^Update failed: UNAVAILABLE: /));
    });
  });

  describe("deadlines", () => {
    it("rejects with DEADLINE_EXCEEDED when a server does not answer in time", async () => {
      const stalled = await startStalledGrpcServer();
      const client = new CacheClient({ address: stalled.address, timeoutMs: 300 });
      try {
        const took = await elapsedMs(() =>
          assert.rejects(client.alookup("p", "llm"), isCacheError("DEADLINE_EXCEEDED", /^Lookup failed: DEADLINE_EXCEEDED: /)),
        );
        assert.ok(took >= 250 && took < 3_000, `took ${took} ms`);
      } finally {
        await client.close();
        stalled.stop();
      }
    });

    // The stream stayed half-closed, waiting for results the server never
    // sent: the process lived on until it did (599 s behind a frozen Redis).
    it("lets the CLI exit soon after a deadline passes, though the server never answers", async () => {
      const stalled = await startStalledGrpcServer();
      try {
        const started = Date.now();
        const run = await runCli(["lookup", "--address", stalled.address, "--timeout-ms", "500", "p", "llm"], {}, 15_000);
        assert.equal(run.code, 1, run.stderr);
        assert.match(run.stderr, /^llmcache: Lookup failed: DEADLINE_EXCEEDED: no result within 500 ms$/m);
        assert.ok(Date.now() - started < 5_000, `exited after ${Date.now() - started} ms`);
      } finally {
        stalled.stop();
      }
    });

    it("lets a script that never closes its client exit soon after a deadline passes, though the server never answers", async () => {
      const stalled = await startStalledGrpcServer();
      const script = [
        `import { CacheClient } from ${JSON.stringify(new URL("../../src/index.js", import.meta.url).href)};`,
        `const client = new CacheClient({ address: ${JSON.stringify(stalled.address)}, timeoutMs: 300 });`,
        `await client.alookup("p", "llm").catch((error) => console.log(error.code));`,
      ].join("\n");
      try {
        const started = Date.now();
        const { stdout } = await promisify(execFile)(process.execPath, ["--input-type=module", "-e", script], { timeout: 15_000 });
        assert.equal(stdout.trim(), "DEADLINE_EXCEEDED");
        assert.ok(Date.now() - started < 5_000, `exited after ${Date.now() - started} ms`);
      } finally {
        stalled.stop();
      }
    });

    it("takes a per-call deadline over the client's", async () => {
      const stalled = await startStalledGrpcServer();
      const client = new CacheClient({ address: stalled.address, timeoutMs: 60_000 });
      try {
        const took = await elapsedMs(() =>
          assert.rejects(client.aclear({ timeoutMs: 200 }), isCacheError("DEADLINE_EXCEEDED", /^Clear failed/)),
        );
        assert.ok(took < 3_000, `took ${took} ms`);
      } finally {
        await client.close();
        stalled.stop();
      }
    });

    it("throws DEADLINE_EXCEEDED from a blocking call to a server that never answers", async () => {
      const silent = await startSilentListener();
      const client = new CacheClient({ address: silent.address, timeoutMs: 400 });
      try {
        const took = await elapsedMs(() =>
          assert.throws(() => client.lookup("p", "llm"), isCacheError("DEADLINE_EXCEEDED", /^Lookup failed: DEADLINE_EXCEEDED/)),
        );
        assert.ok(took >= 350 && took < 3_000, `took ${took} ms`);
      } finally {
        await client.close();
        silent.stop();
      }
    });

    it("fails a blocking call to a server on the same thread after its deadline, saying why, instead of hanging", async () => {
      const server = await startServer({ port: 0 });
      const client = new CacheClient({ address: server.address, timeoutMs: 500 });
      try {
        await client.aupdate("p", "llm", [{ text: "reachable async" }]);
        const took = await elapsedMs(() =>
          assert.throws(
            () => client.lookup("p", "llm"),
            isCacheError("DEADLINE_EXCEEDED", /cannot be answered by a server running on the calling thread; use the async method/),
          ),
        );
        assert.ok(took >= 450 && took < 2_500, `took ${took} ms`);
        assert.deepEqual(await client.alookup("p", "llm"), [{ text: "reachable async" }], "the async path still works");
      } finally {
        await client.close();
        await server.shutdown(0);
      }
    });
  });

  describe("cancellation", () => {
    it("rejects with CANCELLED when the caller aborts", async () => {
      const stalled = await startStalledGrpcServer();
      const client = new CacheClient({ address: stalled.address, timeoutMs: 10_000 });
      try {
        const controller = new AbortController();
        const pending = client.alookup("p", "llm", { signal: controller.signal });
        setTimeout(() => controller.abort(), 100);
        const took = await elapsedMs(() => assert.rejects(pending, isCacheError("CANCELLED", /^Lookup failed: CANCELLED/)));
        assert.ok(took < 5_000, `took ${took} ms`);
      } finally {
        await client.close();
        stalled.stop();
      }
    });

    it("does not send a call whose signal is already aborted", async () => {
      const client = new CacheClient({ address: `127.0.0.1:${await closedPort()}` });
      try {
        await assert.rejects(
          client.aupdate("p", "llm", [], { signal: AbortSignal.abort() }),
          isCacheError("CANCELLED", /^Update failed: CANCELLED: cancelled before it was sent$/),
        );
      } finally {
        await client.close();
      }
    });
  });

  describe("against a server process", () => {
    let server: ServerProcess;
    let client: CacheClient;
    before(async () => {
      server = await startServerProcess();
      client = new CacheClient({ address: server.address });
    });
    after(async () => {
      await client.close();
      await server.stop();
    });

    it("turns the server's RESOURCE_EXHAUSTED for an oversized message into a CacheError with its message", async () => {
      const huge = [{ text: "x".repeat(5 * 1024 * 1024) }];
      await assert.rejects(
        client.aupdate("p", "llm", huge),
        isCacheError("RESOURCE_EXHAUSTED", /^Update failed: RESOURCE_EXHAUSTED: Received message larger than max \(\d+ vs 4194304\)$/),
      );
      assert.throws(() => client.update("p", "llm", huge), isCacheError("RESOURCE_EXHAUSTED", /larger than max/));
      assert.equal(await client.alookup("p", "llm"), null, "nothing was stored");
    });

    it("answers many concurrent calls, each with its own result", async () => {
      const keys = Array.from({ length: 300 }, (_, i) => `prompt ${i}`);
      await Promise.all(keys.map((key, i) => client.aupdate(key, "llm", [{ text: `answer ${i}` }])));
      const answers = await Promise.all(keys.map((key) => client.alookup(key, "llm")));
      assert.deepEqual(answers, keys.map((_, i) => [{ text: `answer ${i}` }]));
    });

    for (const batching of [true, false]) {
      it(`lets the calls made before close() finish, on a client that has made none yet (batching ${batching ? "on" : "off"})`, async () => {
        const closing = new CacheClient({ address: server.address, batching });
        const prompts = Array.from({ length: 20 }, (_, i) => `made before close ${batching} ${i}`);
        const updates = prompts.map((prompt) => closing.aupdate(prompt, "llm", [{ text: prompt }]));
        const closed = closing.close();
        await assert.rejects(closing.alookup("p", "llm"), isCacheError("FAILED_PRECONDITION", /^the client is closed$/), "a call made after close()");
        const settled = await Promise.allSettled(updates);
        await closed;
        assert.deepEqual(settled.map((outcome) => outcome.status), prompts.map(() => "fulfilled"));
        const stored = await client.alookupMany(prompts.map((prompt) => [prompt, "llm"] as const));
        assert.deepEqual(stored, prompts.map((prompt) => [{ text: prompt }]));
      });
    }

    for (const batching of [true, false]) {
      it(`still sends a lease's fill while close() waits for a call waiting on it (batching ${batching ? "on" : "off"})`, async () => {
        // close() waits for the waiter; refused, the fill left it to wait out its 20 s.
        const closing = new CacheClient({ address: server.address, batching, namespace: `close-lease-${batching}` });
        let computing!: () => void;
        const computeStarted = new Promise<void>((resolve) => (computing = resolve));
        const holder = closing.getOrCompute("p", "llm", async () => {
          computing();
          await sleep(500);
          return [{ text: "computed" }];
        });
        await computeStarted;
        const waiter = closing.alookup("p", "llm", { lease: { leaseMs: 5_000, waitMs: 20_000 } });
        await sleep(100); // the waiter's lookup waits on the server
        const start = Date.now();
        await closing.close();
        assert.ok(Date.now() - start < 5_000, `closed after ${Date.now() - start} ms`);
        assert.deepEqual(await holder, [{ text: "computed" }]);
        assert.deepEqual((await waiter).generations, [{ text: "computed" }]);
        await assert.rejects(closing.areleaseLease("p", "llm", "token"), isCacheError("FAILED_PRECONDITION", /^the client is closed$/), "refused once closed");
      });
    }

    it("still takes a blocking lease's fill while close() waits for a call waiting on it", async () => {
      const closing = new CacheClient({ address: server.address, namespace: "close-blocking-fill" });
      const { lease } = closing.lookup("p", "llm", { lease: { leaseMs: 5_000 } });
      assert.ok(lease, "granted");
      const waiter = closing.alookup("p", "llm", { lease: { leaseMs: 5_000, waitMs: 20_000 } });
      await sleep(100); // the waiter's lookup waits on the server
      const start = Date.now();
      const closed = closing.close();
      closing.update("p", "llm", [{ text: "filled" }], { leaseToken: lease.token });
      assert.deepEqual((await waiter).generations, [{ text: "filled" }]);
      await closed;
      assert.ok(Date.now() - start < 5_000, `closed after ${Date.now() - start} ms`);
    });

    it("lets a getOrCompute made before close() compute and store its answer, with no other call in flight", async () => {
      // Closed under its compute, its fill and its release were refused: nothing stored, the lease held to its end.
      const closing = new CacheClient({ address: server.address, namespace: "close-get-or-compute" });
      let computing!: () => void;
      const computeStarted = new Promise<void>((resolve) => (computing = resolve));
      const answer = closing.getOrCompute("p", "llm", async () => {
        computing();
        await sleep(300);
        return [{ text: "computed" }];
      });
      await computeStarted;
      await closing.close();
      assert.deepEqual(await answer, [{ text: "computed" }]);
      assert.deepEqual(await client.alookup("p", "llm", { namespace: "close-get-or-compute" }), [{ text: "computed" }]);
    });

    it("lets a getOrCompute whose wait ran out store what it computed while close() waits for it", async () => {
      // Its store carries no token (it holds no lease): refused as a new call once closing.
      const namespace = "close-compute-no-lease";
      const holder = new CacheClient({ address: server.address, namespace });
      const closing = new CacheClient({ address: server.address, namespace });
      try {
        assert.ok((await holder.alookup("p", "llm", { lease: { leaseMs: 30_000 } })).lease, "another caller's lease, never filled");
        const answer = closing.getOrCompute("p", "llm", async () => {
          await sleep(500);
          return [{ text: "computed" }];
        }, { waitMs: 300 });
        await sleep(400); // the wait has run out; compute runs
        await closing.close();
        assert.deepEqual(await answer, [{ text: "computed" }]);
        assert.deepEqual(await holder.alookup("p", "llm"), [{ text: "computed" }]);
      } finally {
        await holder.close();
      }
    });

    it("refuses calls after close", async () => {
      const closing = new CacheClient({ address: server.address });
      await closing.aclear();
      await closing.close();
      await assert.rejects(closing.alookup("p", "llm"), isCacheError("FAILED_PRECONDITION", /^the client is closed$/));
      assert.throws(() => closing.clear(), isCacheError("FAILED_PRECONDITION", /^the client is closed$/));
    });
  });

  it("refuses a deadline that is not a positive number", () => {
    assert.throws(() => new CacheClient({ timeoutMs: 0 }), {
      name: "RangeError",
      message: "timeoutMs must be a positive number of milliseconds, got 0",
    });
    assert.throws(() => new CacheClient({ timeoutMs: "2000" as never }), {
      name: "TypeError",
      message: "timeoutMs must be a number of milliseconds, got a string",
    });
  });

  // Past 2^31 ms a grpc-js server read the deadline as negative: a lookup
  // that was to wait for a lease's fill answered a miss at once.
  it("refuses a deadline longer than 24 days, for the client and for a call", async () => {
    const message = "timeoutMs must be at most 2073600000 (24 days), got 2147483647";
    assert.throws(() => new CacheClient({ timeoutMs: 2 ** 31 - 1 }), { name: "RangeError", message });
    const client = new CacheClient({ address: "127.0.0.1:1", timeoutMs: 24 * 86_400_000 });
    try {
      await assert.rejects(client.alookup("p", "llm", { timeoutMs: 2 ** 31 - 1 }), { name: "RangeError", message });
    } finally {
      await client.close();
    }
  });

  it("refuses options it does not know, and tls or batching of the wrong kind, when it is made", () => {
    const refused: [unknown, { name: string; message: string }][] = [
      [{ adress: "127.0.0.1:50051" }, { name: "TypeError", message: "unknown option adress (the options are address, token, tls, timeoutMs, namespace, batching, nearCache)" }],
      [{ timeout: 5, retries: 2 }, { name: "TypeError", message: "unknown options timeout, retries (the options are address, token, tls, timeoutMs, namespace, batching, nearCache)" }],
      ["127.0.0.1:50051", { name: "TypeError", message: "options must be an object, got a string" }],
      [{ tls: "yes" }, { name: "TypeError", message: "tls must be a boolean or { ca?, cert?, key?, serverName? }, got a string" }],
      [{ batching: "on" }, { name: "TypeError", message: "batching must be a boolean or { windowMs? }, got a string" }],
      [{ batching: { windowMs: -3 } }, { name: "RangeError", message: "batching.windowMs must be a number of milliseconds, 0 or more, got number -3" }],
    ];
    for (const [options, error] of refused) assert.throws(() => new CacheClient(options as never), error, JSON.stringify(options));
  });

  it("refuses a batch item that is not a pair (lookupMany) or a triple (updateMany), naming it", async () => {
    const client = new CacheClient({ address: "127.0.0.1:1" });
    try {
      // A string was read as its characters: "ab" looked up the pair ("a", "b").
      await assert.rejects(client.alookupMany(["ab"] as never), { name: "TypeError", message: "keys[0] must be [prompt, llmString], got a string" });
      await assert.rejects(client.alookupMany([["a", "b"], ["a", "b", "x"]] as never), {
        name: "TypeError",
        message: "keys[1] must be [prompt, llmString], got an array of 3 items",
      });
      await assert.rejects(client.aupdateMany([["a", "b"]] as never), {
        name: "TypeError",
        message: "entries[0] must be [prompt, llmString, generations], got an array of 2 items",
      });
    } finally {
      await client.close();
    }
  });

  // grpc-js checks a header's value only when a call starts: with batching,
  // that was in a setImmediate, where the throw killed the process.
  it("refuses a token a header cannot carry when it is made, rather than fail (or crash) at the first call", () => {
    const message = "token must be a non-empty string of visible ASCII characters, without spaces";
    for (const token of ["", "two words", "tok\u00e9n", "tok\u0001en", "line\nbreak"]) {
      assert.throws(() => new CacheClient({ address: "127.0.0.1:1", token }), { name: "TypeError", message }, JSON.stringify(token));
    }
  });
});
