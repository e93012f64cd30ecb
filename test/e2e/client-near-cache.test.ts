import assert from "node:assert/strict";
import { status } from "@grpc/grpc-js";
import type { StreamResult } from "../../gen/llmcache/v1/cache_pb.js";
import { spawn } from "node:child_process";
import { createInterface } from "node:readline";
import { setTimeout as sleep } from "node:timers/promises";
import { fileURLToPath } from "node:url";
import { WATCH_SILENCE_MS } from "../../src/client/operation-stream.js";
import { CacheClient, type Generation } from "../../src/index.js";
import { writeAuthFile } from "../helpers/auth-file.js";
import { redisServers, startRedis, type PrivateRedis } from "../helpers/redis-servers.js";
import { startServerProcess, type ServerProcess } from "../helpers/server-process.js";
import { openRawStream } from "../helpers/raw-stream.js";
import { MetricsScraper, waitFor } from "../helpers/single-flight.js";

const version = (n: number): Generation[] => [{ text: `v${n}` }];
const NEAR_CLIENT = { nearCache: { maxBytes: 1 << 20 } };

/** The version an answer holds, or 0 for a miss. */
function versionOf(found: Generation[] | null): number {
  return found === null ? 0 : Number(found[0]!.text.slice(1));
}

/**
 * `writer` overwrites an entry again and again while `reader` answers it in
 * a loop, from its near cache between changes. The reader may lag (it hears
 * of each change a moment after it was made), but once it has answered a
 * version it never answers an older one, and it answers the last one soon
 * after its update was acknowledged.
 */
async function overwriteWhileServing(reader: CacheClient, writer: CacheClient, prompt: string): Promise<void> {
  const versions = 40;
  await writer.aupdate(prompt, "llm", version(1));
  const hitsBefore = reader.nearCacheStats!.hits;
  const seen: number[] = [];
  let writing = true;
  const reading = (async () => {
    while (writing) {
      seen.push(versionOf(await reader.alookup(prompt, "llm")));
      // A hit from memory settles in a microtask: without a turn of the event loop, no reply would ever be read.
      await new Promise(setImmediate);
    }
  })();
  for (let n = 2; n <= versions; n++) {
    await writer.aupdate(prompt, "llm", version(n));
    await sleep(5);
  }
  const acknowledged = performance.now();
  await waitFor(async () => versionOf(await reader.alookup(prompt, "llm")) === versions, "the last version to be answered", 2_000);
  const lag = performance.now() - acknowledged;
  writing = false;
  await reading;
  const hits = reader.nearCacheStats!.hits - hitsBefore;
  assert.ok(hits > versions, `only ${hits} lookups answered from the near cache`);
  for (let i = 1; i < seen.length; i++) assert.ok(seen[i]! >= seen[i - 1]!, `answered v${seen[i]} after v${seen[i - 1]}`);
  assert.ok(lag < 1_000, `the last version came ${lag.toFixed(0)} ms after its update was acknowledged`);
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
    await overwriteWhileServing(nearClient(), writer, "overwritten");
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

  it("keeps its stream, and what it let be kept, while the near cache answers every lookup", async () => {
    const client = nearClient();
    await writer.aupdate("busy", "llm", version(1));
    await client.alookup("busy", "llm");
    const lookupsBefore = (await client.astats()).total.hits;
    // Three times the idle time of a stream, making no call: every lookup is answered from memory.
    for (const until = performance.now() + 3_000; performance.now() < until; await new Promise(setImmediate)) {
      assert.deepEqual(await client.alookup("busy", "llm"), version(1));
    }
    assert.equal((await client.astats()).total.hits, lookupsBefore, "no lookup went to the replica");
    assert.equal(client.nearCacheStats!.entries, 1);
  });

  it("drops what it keeps once a stuck replica has been silent for a few seconds", async () => {
    const stuck = await startServerProcess(["--store", redis.url, "--near-cache", "16MiB"]);
    try {
      const client = nearClient(stuck.address, { timeoutMs: 300 });
      await writer.aupdate("stuck", "llm", version(1));
      assert.deepEqual(await client.alookup("stuck", "llm"), version(1));
      stuck.child.kill("SIGSTOP");
      await writer.aupdate("stuck", "llm", version(2));
      const stopped = performance.now();
      // Until then the client cannot tell a stuck replica from a quiet one, and answers what it kept.
      await waitFor(
        async () => {
          const found = await client.alookup("stuck", "llm").catch(() => "failed" as const);
          return found === "failed";
        },
        "the kept entry to be dropped",
        WATCH_SILENCE_MS + 1_500,
      );
      const silentFor = performance.now() - stopped;
      assert.ok(silentFor > WATCH_SILENCE_MS - 1_200, `dropped after ${silentFor.toFixed(0)} ms: the replica's heartbeat should have kept it`);
      assert.equal(client.nearCacheStats!.entries, 0);
    } finally {
      stuck.child.kill("SIGCONT");
      await stuck.stop();
    }
  });

  it("keeps nothing, with one warning, when the server cannot tell of changes, asks again on each stream, and answers as without it", async () => {
    const plain = await startServerProcess(["--metrics-port", "0"]);
    const warnings: (Error & { code?: string })[] = [];
    const heard = (warning: Error & { code?: string }) => {
      if (warning.code === "LLMCACHE_NEAR_CACHE_REFUSED") warnings.push(warning);
    };
    process.on("warning", heard);
    try {
      const client = nearClient(plain.address);
      await client.aupdate("plain", "llm", version(1));
      for (let i = 0; i < 5; i++) assert.deepEqual(await client.alookup("plain", "llm"), version(1));
      // The stream ends after a second idle; the next call opens another, which asks again.
      await sleep(1_300);
      await client.aupdate("plain", "llm", version(2));
      assert.deepEqual(await client.alookup("plain", "llm"), version(2));
      await waitFor(() => warnings.length > 0, "the warning");
      const metrics = new MetricsScraper(plain);
      const refusals = await metrics.value("llmcache_stream_operations_total", '{operation="watch",code="FAILED_PRECONDITION"}');
      assert.equal(refusals, 2, "one watch a stream");
      assert.equal(warnings.length, 1, "one warning a replica");
      assert.match(warnings[0]!.message, new RegExp(`nothing read through ${plain.address}.*cannot tell of changes`));
      assert.deepEqual(client.nearCacheStats, { entries: 0, bytes: 0, hits: 0, invalidations: 0 });
    } finally {
      process.off("warning", heard);
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

    it("tells a stream whose client reads nothing for a while that everything changed, rather than queue every change", async () => {
      // A process of its own, stopped: it leaves the socket unread, as a stuck client does.
      const child = spawn(process.execPath, [fileURLToPath(new URL("../helpers/watching-child.js", import.meta.url)), watched.address], {
        stdio: ["pipe", "pipe", "inherit"],
      });
      const lines = createInterface({ input: child.stdout! })[Symbol.asyncIterator]();
      const through = new CacheClient({ address: watched.address, namespace: "n".repeat(100) });
      try {
        assert.equal((await lines.next()).value, "watching");
        child.kill("SIGSTOP");
        // Far more than the socket's buffers hold (some MB on loopback): 30,000 keys of about 270
        // bytes, each told twice (by the replica, then by Redis).
        const changes = 30_000;
        for (let batch = 0; batch < changes / 500; batch++) {
          await through.aupdateMany(Array.from({ length: 500 }, (_, i) => [`unread-${batch}-${i}`, "llm", version(1)] as const));
        }
        child.kill("SIGCONT");
        await sleep(2_000);
        child.stdin!.write("report\n");
        let report: { keys: number; everything: boolean } | undefined;
        for (let line = await lines.next(); !line.done && !report; line = await lines.next()) {
          if (line.value !== "watching") report = JSON.parse(line.value as string) as { keys: number; everything: boolean };
        }
        assert.ok(report, "the child reported");
        assert.equal(report.everything, true, `told of ${report.keys} keys one by one, never that everything changed`);
        assert.ok(report.keys < changes * 2, `told of ${report.keys} keys one by one`);
      } finally {
        child.kill("SIGCONT");
        child.kill();
        await through.close();
      }
    });

    it("stops telling a stream its client cancelled while the server held its replies back", async () => {
      const metered = await startServerProcess(["--store", redis.url, "--near-cache", "16MiB", "--metrics-port", "0"]);
      const metrics = new MetricsScraper(metered);
      const watchers = () => metrics.value("llmcache_near_cache_watchers");
      const stream = openRawStream(metered.address);
      const through = new CacheClient({ address: metered.address, namespace: "n".repeat(100) });
      try {
        stream.send({ operations: [{ id: 1, operation: { case: "watch", value: {} } }] });
        await waitFor(async () => (await watchers()) === 1, "the watch");
        stream.call.pause();
        // Changes until the server holds its replies back: it then stops reading the client, and a
        // lookup it is sent stays unanswered (the misses it counts stop growing).
        const misses = async () => (await through.astats()).total.misses;
        for (let batch = 0; ; batch++) {
          assert.ok(batch < 300, "the server never held the stream's replies back");
          await through.aupdateMany(Array.from({ length: 500 }, (_, i) => [`held-${batch}-${i}`, "llm", version(1)] as const));
          const before = await misses();
          stream.send({ operations: [{ id: 100 + batch, operation: { case: "lookup", value: { prompt: "never", llmString: "llm" } } }] });
          await sleep(200);
          if ((await misses()) === before) break;
        }
        assert.equal(await watchers(), 1);
        stream.call.cancel();
        await waitFor(async () => (await watchers()) === 0, "the cancelled stream's watch to end", 2_000);
      } finally {
        stream.close();
        await through.close();
        await metered.stop();
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

  describe("through two replicas on a Redis Cluster", () => {
    let replicas: ServerProcess[];
    let clusterWriter: CacheClient;

    before(async () => {
      const { cluster } = await redisServers();
      replicas = await Promise.all([0, 1].map(() => startServerProcess(["--store", cluster, "--near-cache", "16MiB"])));
      clusterWriter = new CacheClient({ address: replicas[1]!.address });
    });
    after(async () => {
      await clusterWriter.close();
      await Promise.all(replicas.map((replica) => replica.stop()));
    });

    it("never goes back to an older version of pairs on every primary, whichever replica a lookup went through", async () => {
      const client = nearClient(replicas.map((replica) => replica.address).join(","));
      // Prompts spread over the three primaries: each node's words must arrive, through each replica.
      for (const prompt of ["c-one", "c-two", "c-three", "c-four"]) await overwriteWhileServing(client, clusterWriter, prompt);
    });

    it("drops the entries a clear removed on every primary", async () => {
      const client = nearClient(replicas.map((replica) => replica.address).join(","));
      const prompts = Array.from({ length: 20 }, (_, i) => `clear-${i}`);
      for (const prompt of prompts) await clusterWriter.aupdate(prompt, "llm", version(1));
      for (const prompt of prompts) assert.deepEqual(await client.alookup(prompt, "llm"), version(1));
      assert.ok(client.nearCacheStats!.entries > 0);
      await clusterWriter.aclear();
      await waitFor(
        async () => (await Promise.all(prompts.map((prompt) => client.alookup(prompt, "llm")))).every((found) => found === null),
        "every cleared entry to be gone",
        1_000,
      );
    });

    it("drops everything a replica's stream let it keep when that replica dies, and answers through the other", async () => {
      const spare = await startServerProcess(["--store", (await redisServers()).cluster, "--near-cache", "16MiB"]);
      const client = nearClient(`${spare.address},${replicas[0]!.address}`);
      const prompts = Array.from({ length: 10 }, (_, i) => `dies-${i}`);
      for (const prompt of prompts) await clusterWriter.aupdate(prompt, "llm", version(1));
      // Lookups of one turn go to one replica: over several turns, both streams grant.
      for (const prompt of prompts) assert.deepEqual(await client.alookup(prompt, "llm"), version(1));
      assert.ok(client.nearCacheStats!.entries > 0);
      await spare.stop("SIGKILL");
      await waitFor(() => client.nearCacheStats!.entries === 0, "the lost stream's entries to go", 2_000);
      for (const prompt of prompts) await clusterWriter.aupdate(prompt, "llm", version(2));
      for (const prompt of prompts) assert.deepEqual(await client.alookup(prompt, "llm"), version(2));
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
