import assert from "node:assert/strict";
import { once } from "node:events";
import { status } from "@grpc/grpc-js";
import type { StreamResult } from "../../gen/llmcache/v1/cache_pb.js";
import { setTimeout as sleep } from "node:timers/promises";
import { CacheClient, type Generation } from "../../src/index.js";
import { writeAuthFile } from "../helpers/auth-file.js";
import { startRedis, type PrivateRedis } from "../helpers/redis-servers.js";
import { startServerProcess, type ServerProcess } from "../helpers/server-process.js";
import { openRawStream } from "../helpers/raw-stream.js";
import { waitFor } from "../helpers/single-flight.js";

const version = (n: number): Generation[] => [{ text: `v${n}` }];
const NEAR_CLIENT = { nearCache: { maxBytes: 1 << 20 } };

/** The version an answer holds, or 0 for a miss. */
function versionOf(found: Generation[] | null): number {
  return found === null ? 0 : Number(found[0]!.text.slice(1));
}

describe("a client's near cache (CacheClient nearCache)", function () {
  this.timeout(60_000);
  let redis: PrivateRedis;
  /** A replica with a near cache of its own, which tells its streams of changes. */
  let watched: ServerProcess;
  /** Another replica on the same Redis, through which others write. */
  let other: ServerProcess;
  let writer: CacheClient;
  const clients: CacheClient[] = [];

  function nearClient(address = watched.address, options: Record<string, unknown> = {}): CacheClient {
    const client = new CacheClient({ address, ...NEAR_CLIENT, ...options });
    clients.push(client);
    return client;
  }

  before(async () => {
    redis = await startRedis();
    [watched, other] = await Promise.all([
      startServerProcess(["--store", redis.url, "--near-cache", "16MiB"]),
      startServerProcess(["--store", redis.url]),
    ]);
    writer = new CacheClient({ address: other.address });
  });
  afterEach(async () => {
    await Promise.all(clients.splice(0).map((client) => client.close()));
  });
  after(async () => {
    await writer.close();
    await Promise.all([watched.stop(), other.stop()]);
    await redis.stop();
  });

  it("answers a hit it was granted again without a call: the server counts none of them", async () => {
    const client = nearClient();
    await writer.aupdate("hot", "llm", version(1));
    assert.deepEqual(await client.alookup("hot", "llm"), version(1));
    const before = (await client.astats()).total;
    for (let i = 0; i < 100; i++) assert.deepEqual(await client.alookup("hot", "llm"), version(1));
    const after = (await client.astats()).total;
    assert.equal(after.hits, before.hits, "no lookup reached the server");
    assert.equal(client.nearCacheStats!.hits, 100);
    assert.equal(client.nearCacheStats!.entries, 1);
  });

  it("hands each caller generations of its own: changing one answer changes no other", async () => {
    const client = nearClient();
    await writer.aupdate("mutable", "llm", version(1));
    await client.alookup("mutable", "llm");
    const first = (await client.alookup("mutable", "llm"))!;
    first[0]!.text = "changed by the caller";
    assert.deepEqual(await client.alookup("mutable", "llm"), version(1));
    assert.ok(client.nearCacheStats!.hits >= 2);
  });

  it("never goes back to an older version while another replica overwrites what it serves", async () => {
    const client = nearClient();
    const versions = 40;
    await writer.aupdate("overwritten", "llm", version(1));
    const seen: number[] = [];
    let writing = true;
    const reader = (async () => {
      while (writing) {
        seen.push(versionOf(await client.alookup("overwritten", "llm")));
        // A hit from memory settles in a microtask: without a turn of the event loop, no reply would ever be read.
        await new Promise(setImmediate);
      }
    })();
    for (let n = 2; n <= versions; n++) {
      await writer.aupdate("overwritten", "llm", version(n));
      await sleep(5);
    }
    const acknowledged = performance.now();
    await waitFor(async () => versionOf(await client.alookup("overwritten", "llm")) === versions, "the last version to be answered", 2_000);
    const lag = performance.now() - acknowledged;
    writing = false;
    await reader;
    assert.ok(client.nearCacheStats!.hits > versions, `only ${client.nearCacheStats!.hits} lookups answered from the near cache`);
    for (let i = 1; i < seen.length; i++) assert.ok(seen[i]! >= seen[i - 1]!, `answered v${seen[i]} after v${seen[i - 1]}`);
    assert.ok(lag < 1_000, `the last version came ${lag.toFixed(0)} ms after its update was acknowledged`);
  });

  it("answers its own update at once, even with a lookup of the old value still in flight", async () => {
    const client = nearClient();
    await client.aupdate("own", "llm", version(1));
    assert.deepEqual(await client.alookup("own", "llm"), version(1));
    for (let n = 2; n <= 30; n++) {
      // Sent in the same message as the update, and answered (and granted) before it: the old value.
      const racing = client.alookup("own", "llm");
      await client.aupdate("own", "llm", version(n));
      await racing;
      assert.deepEqual(await client.alookup("own", "llm"), version(n));
    }
  });

  it("drops what a clear through another replica removed, and what its own clear did at once", async () => {
    const client = nearClient();
    await writer.aupdate("cleared", "llm", version(1));
    assert.deepEqual(await client.alookup("cleared", "llm"), version(1));
    await writer.aclear();
    await waitFor(async () => (await client.alookup("cleared", "llm")) === null, "the cleared entry to be gone", 1_000);
    await writer.aupdate("cleared", "llm", version(2));
    assert.deepEqual(await client.alookup("cleared", "llm"), version(2));
    await client.aclear();
    assert.equal(await client.alookup("cleared", "llm"), null);
  });

  it("stops answering an entry when its time to live runs out", async () => {
    const client = nearClient();
    await writer.aupdate("short-lived", "llm", version(1), { ttlMs: 300 });
    const stored = performance.now();
    assert.deepEqual(await client.alookup("short-lived", "llm"), version(1));
    assert.deepEqual(await client.alookup("short-lived", "llm"), version(1));
    assert.equal(client.nearCacheStats!.hits, 1);
    await sleep(320 - (performance.now() - stored));
    assert.equal(await client.alookup("short-lived", "llm"), null);
  });

  it("answers a lookup that may take a lease from memory, and never a bypassing one", async () => {
    const client = nearClient();
    await writer.aupdate("leased", "llm", version(1));
    const leased = { lease: { leaseMs: 5_000 } };
    assert.deepEqual(await client.alookup("leased", "llm", leased), { generations: version(1), lease: null });
    assert.deepEqual(await client.alookup("leased", "llm", leased), { generations: version(1), lease: null });
    assert.equal(client.nearCacheStats!.hits, 1);
    assert.equal(await client.alookup("leased", "llm", { bypass: true }), null);
    assert.equal(client.nearCacheStats!.hits, 1);
  });

  it("keeps entries apart by namespace", async () => {
    const client = nearClient();
    await writer.aupdate("spaced", "llm", version(1), { namespace: "a" });
    await writer.aupdate("spaced", "llm", version(2), { namespace: "b" });
    for (let i = 0; i < 2; i++) {
      assert.deepEqual(await client.alookup("spaced", "llm", { namespace: "a" }), version(1));
      assert.deepEqual(await client.alookup("spaced", "llm", { namespace: "b" }), version(2));
    }
    assert.equal(client.nearCacheStats!.hits, 2);
  });

  it("serves its blocking lookups from memory too, and forgets what its blocking update changed", async () => {
    const client = nearClient();
    await writer.aupdate("blocking", "llm", version(1));
    assert.deepEqual(await client.alookup("blocking", "llm"), version(1));
    assert.deepEqual(client.lookup("blocking", "llm"), version(1));
    assert.equal(client.nearCacheStats!.hits, 1);
    client.update("blocking", "llm", version(2));
    assert.deepEqual(client.lookup("blocking", "llm"), version(2));
  });

  it("drops everything when its stream ends, and keeps again on the next", async () => {
    const client = nearClient();
    await writer.aupdate("idle", "llm", version(1));
    await client.alookup("idle", "llm");
    assert.equal(client.nearCacheStats!.entries, 1);
    // An idle stream is ended after a second.
    await waitFor(() => client.nearCacheStats!.entries === 0, "the idle stream's entries to go", 3_000);
    await writer.aupdate("idle", "llm", version(2));
    assert.deepEqual(await client.alookup("idle", "llm"), version(2));
    assert.deepEqual(await client.alookup("idle", "llm"), version(2));
    assert.equal(client.nearCacheStats!.hits, 1);
  });

  it("keeps nothing, with one warning, when the server cannot tell of changes, and answers as without it", async () => {
    const plain = await startServerProcess([]);
    try {
      const client = nearClient(plain.address);
      const warned = once(process, "warning");
      await client.aupdate("plain", "llm", version(1));
      for (let i = 0; i < 5; i++) assert.deepEqual(await client.alookup("plain", "llm"), version(1));
      const [warning] = (await warned) as [Error & { code?: string }];
      assert.equal(warning.code, "LLMCACHE_NEAR_CACHE_REFUSED");
      assert.match(warning.message, /cannot tell of changes/);
      await client.aupdate("plain", "llm", version(2));
      assert.deepEqual(await client.alookup("plain", "llm"), version(2));
      assert.deepEqual(client.nearCacheStats, { entries: 0, bytes: 0, hits: 0, invalidations: 0 });
    } finally {
      await plain.stop();
    }
  });

  it("is told only of changes in namespaces its token may read", async () => {
    const auth = writeAuthFile([
      { name: "reader", token: "reader-token", read: ["mine"], write: ["mine"] },
      { name: "admin", token: "admin-token", read: ["*"], write: ["*"] },
    ]);
    const guarded = await startServerProcess(["--store", redis.url, "--near-cache", "16MiB", "--auth-file", auth]);
    const admin = new CacheClient({ address: guarded.address, token: "admin-token" });
    try {
      const client = nearClient(guarded.address, { token: "reader-token" });
      await client.aupdate("k", "llm", version(1), { namespace: "mine" });
      assert.deepEqual(await client.alookup("k", "llm", { namespace: "mine" }), version(1));
      const before = client.nearCacheStats!.invalidations;
      for (let n = 1; n <= 20; n++) await admin.aupdate("k", "llm", version(n), { namespace: "theirs" });
      await admin.aupdate("k", "llm", version(2), { namespace: "mine" });
      await waitFor(async () => versionOf(await client.alookup("k", "llm", { namespace: "mine" })) === 2, "the change in its namespace", 1_000);
      // The change in "mine" is told twice (by this replica, then by Redis); none of the 20 in "theirs" is.
      const told = client.nearCacheStats!.invalidations - before;
      assert.ok(told >= 1 && told <= 2, `told of ${told} changes`);

      // The reader loses "mine": what it kept was read with a right it no longer has.
      writeAuthFile(
        [
          { name: "reader", token: "reader-token", read: ["other"], write: ["other"] },
          { name: "admin", token: "admin-token", read: ["*"], write: ["*"] },
        ],
        auth,
      );
      // Read until kept: a late word of the last change (Redis's, after this replica's own) may have dropped it.
      await waitFor(async () => {
        await client.alookup("k", "llm", { namespace: "mine" });
        return client.nearCacheStats!.entries === 1;
      }, "the entry to be kept");
      guarded.child.kill("SIGHUP");
      // Calls keep the stream from ending idle (which would drop everything anyway) while the word comes.
      const keepBusy = () => client.alookup("busy", "llm", { namespace: "other" }).catch(() => null);
      await waitFor(async () => (await keepBusy(), client.nearCacheStats!.entries === 0), "the reload to drop what the reader kept", 800);
      await assert.rejects(client.alookup("k", "llm", { namespace: "mine" }), /may not read namespace "mine"/);
    } finally {
      await admin.close();
      await guarded.stop();
    }
  });

  describe("WatchChanges, as a client in another language sees it", () => {
    /** The next result of the stream, from whichever message it comes in. */
    async function nextResult(stream: ReturnType<typeof openRawStream>, pending: StreamResult[]): Promise<StreamResult> {
      while (pending.length === 0) pending.push(...(await stream.next()).results);
      return pending.shift()!;
    }

    it("grants hits only on a stream that watches, and tells it when the granted entry changes", async () => {
      await writer.aupdate("raw", "llm", version(1));
      const watching = openRawStream(watched.address);
      const plain = openRawStream(watched.address);
      const pending: StreamResult[] = [];
      try {
        const lookup = { case: "lookup" as const, value: { prompt: "raw", llmString: "llm" } };
        plain.send({ operations: [{ id: 1, operation: lookup }] });
        const unwatched = (await plain.next()).results[0]!;
        assert.equal(unwatched.result.case, "lookup");
        assert.equal(unwatched.result.value.near, undefined, "no grant without a watch");

        watching.send({ operations: [{ id: 1, operation: { case: "watch", value: {} } }, { id: 2, operation: lookup }] });
        const granted = await nextResult(watching, pending);
        assert.equal(granted.id, 2);
        assert.ok(granted.result.case === "lookup" && granted.result.value.hit);
        const near = granted.result.value.near;
        assert.ok(near && near.key.length > 0, "a grant with a key");
        assert.equal(near.ttlMs, 0n, "the entry has no expiry");

        await writer.aupdate("raw", "llm", version(2));
        const told = await nextResult(watching, pending);
        assert.equal(told.id, 1, "invalidations carry the watch's id");
        assert.ok(told.result.case === "invalidation");
        assert.deepEqual(told.result.value.keys, [near.key]);
        assert.equal(told.result.value.all, false);
      } finally {
        watching.close();
        plain.close();
      }
    });

    it("refuses a second watch on the stream, and a watch where the server cannot tell of changes, with FAILED_PRECONDITION", async () => {
      const plainServer = await startServerProcess([]);
      const twice = openRawStream(watched.address);
      const unable = openRawStream(plainServer.address);
      try {
        const watch = { case: "watch" as const, value: {} };
        twice.send({ operations: [{ id: 1, operation: watch }, { id: 2, operation: watch }] });
        const [second] = (await twice.next()).results;
        assert.equal(second!.id, 2);
        assert.ok(second!.result.case === "error");
        assert.equal(second!.result.value.code, status.FAILED_PRECONDITION);
        assert.match(second!.result.value.message, /already watches \(operation 1\)/);

        unable.send({ operations: [{ id: 5, operation: watch }] });
        const [refused] = (await unable.next()).results;
        assert.ok(refused!.result.case === "error");
        assert.equal(refused!.result.value.code, status.FAILED_PRECONDITION);
        assert.match(refused!.result.value.message, /cannot tell of changes/);
      } finally {
        twice.close();
        unable.close();
        await plainServer.stop();
      }
    });
  });

  describe("settings", () => {
    it("needs batching", () => {
      assert.throws(() => new CacheClient({ batching: false, ...NEAR_CLIENT }), /nearCache needs batching/);
    });

    it("refuses a size that is not a positive whole number of bytes, and a misspelt option", () => {
      for (const maxBytes of [0, -1, 1.5, Number.NaN, "1MiB", undefined]) {
        assert.throws(() => new CacheClient({ nearCache: { maxBytes } as never }), /nearCache.maxBytes must be a positive whole number of bytes/);
      }
      assert.throws(() => new CacheClient({ nearCache: { maxbytes: 10 } as never }), /unknown option maxbytes/);
      assert.throws(() => new CacheClient({ nearCache: 1024 as never }), /nearCache must be \{ maxBytes \}/);
    });
  });
});
