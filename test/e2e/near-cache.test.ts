import assert from "node:assert/strict";
import { setTimeout as sleep } from "node:timers/promises";
import { createClient } from "@redis/client";
import { CacheClient, CacheError, type Generation } from "../../src/index.js";
import { pairKeys } from "../../src/redis/keys.js";
import { healthOf } from "../helpers/raw-grpc.js";
import { redisServers, startRedis, type PrivateRedis } from "../helpers/redis-servers.js";
import { runCli, startServerProcess, type ServerProcess } from "../helpers/server-process.js";
import { MetricsScraper, waitFor } from "../helpers/single-flight.js";

const NEAR = ["--near-cache", "16MiB"];
const version = (n: number): Generation[] => [{ text: `v${n}` }];

interface Replica {
  server: ServerProcess;
  client: CacheClient;
}

async function replicaOn(store: string, args: string[] = []): Promise<Replica> {
  const server = await startServerProcess(["--store", store, ...args]);
  return { server, client: new CacheClient({ address: server.address, batching: false }) };
}

async function stop(...replicas: (Replica | undefined)[]): Promise<void> {
  for (const replica of replicas) {
    await replica?.client.close();
    await replica?.server.stop();
  }
}

/** The version an answer holds, or 0 for a miss. */
function versionOf(found: Generation[] | null): number {
  return found === null ? 0 : Number(found[0]!.text.slice(1));
}

/**
 * B overwrites an entry again and again while A serves it in a loop. A may
 * lag (it hears of each change a moment after Redis made it), but once it
 * has answered a version it never answers an older one, and it answers the
 * last one soon after B's update was acknowledged.
 */
async function overwriteWhileServing(a: Replica, b: Replica, prompt: string): Promise<void> {
  const versions = 40;
  await b.client.aupdate(prompt, "llm", version(1));
  const seen: number[] = [];
  let writing = true;
  const reader = (async () => {
    while (writing) seen.push(versionOf(await a.client.alookup(prompt, "llm")));
  })();
  for (let n = 2; n <= versions; n++) {
    await b.client.aupdate(prompt, "llm", version(n));
    await sleep(5);
  }
  const acknowledged = performance.now();
  await waitFor(async () => versionOf(await a.client.alookup(prompt, "llm")) === versions, "A to answer B's last version", 2_000);
  const lag = performance.now() - acknowledged;
  writing = false;
  await reader;
  assert.ok(seen.length > versions, `A answered only ${seen.length} lookups while B wrote`);
  for (let i = 1; i < seen.length; i++) {
    assert.ok(seen[i]! >= seen[i - 1]!, `A answered v${seen[i]} after v${seen[i - 1]}`);
  }
  assert.ok(lag < 1_000, `A answered the last version ${lag.toFixed(0)} ms after B's update was acknowledged`);
}

describe("the near cache (--near-cache)", function () {
  this.timeout(60_000);

  describe("in front of a Redis of its own", () => {
    let redis: PrivateRedis;
    let near: Replica;
    let other: Replica;
    let admin: ReturnType<typeof createClient>;

    before(async () => {
      redis = await startRedis();
      [near, other] = await Promise.all([replicaOn(redis.url, [...NEAR, "--metrics-port", "0"]), replicaOn(redis.url)]);
      admin = createClient({ url: redis.url });
      // It loses its connection when a test kills Redis, and reconnects.
      admin.on("error", () => {});
      await admin.connect();
    });
    after(async () => {
      await admin.close().catch(() => {});
      await stop(near, other);
      await redis.stop();
    });

    /** How many GETs Redis has served since its statistics were reset. */
    async function getsServed(): Promise<number> {
      const info = await admin.info("commandstats");
      return Number(/^cmdstat_get:calls=(\d+)/m.exec(info)?.[1] ?? 0);
    }

    it("answers a hot entry from memory, without asking Redis, and counts the hits", async () => {
      await near.client.aupdate("hot", "llm", version(1));
      assert.deepEqual(await near.client.alookup("hot", "llm"), version(1));
      const hitsBefore = (await near.client.astats()).total.hits;
      await admin.configResetStat();
      for (let i = 0; i < 50; i++) assert.deepEqual(await near.client.alookup("hot", "llm"), version(1));
      assert.deepEqual(await near.client.alookupMany([["hot", "llm"]]), [version(1)]);
      assert.equal(await getsServed(), 0);
      assert.equal((await near.client.astats()).total.hits, hitsBefore + 51);
    });

    it("marks the entries it serves as used in Redis, lest Redis's LRU evict the hottest first", async () => {
      await near.client.aupdate("served", "llm", version(1));
      assert.deepEqual(await near.client.alookup("served", "llm"), version(1), "read from Redis once, and kept");
      // Redis's LRU clock counts whole seconds: 2.5 s of hits answered from memory alone.
      for (const until = Date.now() + 2_500; Date.now() < until; await sleep(50)) {
        assert.deepEqual(await near.client.alookup("served", "llm"), version(1));
      }
      const idleSeconds = Number(await admin.sendCommand(["OBJECT", "IDLETIME", pairKeys("", "served", "llm").entry]));
      assert.ok(idleSeconds <= 1, `idle for ${idleSeconds} s in Redis while the near cache served it`);
    });

    it("shows its figures in the replica's metrics", async () => {
      await near.client.aupdate("metered", "llm", version(1));
      await near.client.alookup("metered", "llm");
      const before = await nearMetrics();
      for (let i = 0; i < 5; i++) await near.client.alookup("metered", "llm");
      await other.client.aupdate("metered", "llm", version(2));
      await waitFor(async () => versionOf(await near.client.alookup("metered", "llm")) === 2, "the overwrite to be heard of", 1_000);
      const after = await nearMetrics();
      assert.ok(after.hits >= before.hits + 5, `hits ${before.hits} then ${after.hits}`);
      assert.ok(after.invalidations > before.invalidations, `invalidations ${before.invalidations} then ${after.invalidations}`);
      assert.ok(after.entries >= 1 && after.bytes > 0, JSON.stringify(after));
    });

    /** The near cache's figures from the replica's Prometheus metrics. */
    async function nearMetrics(): Promise<{ hits: number; invalidations: number; entries: number; bytes: number }> {
      const metrics = new MetricsScraper(near.server);
      const metric = (name: string) => metrics.value(`llmcache_near_cache_${name}`);
      return { hits: await metric("hits_total"), invalidations: await metric("invalidations_total"), entries: await metric("entries"), bytes: await metric("bytes") };
    }

    it("keeps what a lookup that may take a lease found, and answers such lookups from memory", async () => {
      const leased = { lease: { leaseMs: 5_000 } };
      await other.client.aupdate("leased-hot", "llm", version(1));
      assert.deepEqual(await near.client.alookup("leased-hot", "llm", leased), { generations: version(1), lease: null });
      await admin.configResetStat();
      for (let i = 0; i < 20; i++) assert.deepEqual(await near.client.alookup("leased-hot", "llm", leased), { generations: version(1), lease: null });
      const info = await admin.info("commandstats");
      assert.doesNotMatch(info, /^cmdstat_(get|evalsha|eval):/m, "no lookup reached Redis");
    });

    it("goes to Redis for a bypassing lookup, and for a miss every time", async () => {
      await near.client.aupdate("bypassed", "llm", version(1));
      await near.client.alookup("bypassed", "llm");
      await admin.configResetStat();
      assert.equal(await near.client.alookup("bypassed", "llm", { bypass: true }), null);
      for (let i = 0; i < 3; i++) assert.equal(await near.client.alookup("never-stored", "llm"), null);
      assert.equal(await getsServed(), 3);
    });

    it("answers its own update at once", async () => {
      await near.client.aupdate("own", "llm", version(1));
      assert.deepEqual(await near.client.alookup("own", "llm"), version(1));
      for (let n = 2; n <= 20; n++) {
        await near.client.aupdate("own", "llm", version(n));
        assert.deepEqual(await near.client.alookup("own", "llm"), version(n));
      }
    });

    it("drops an entry overwritten through another replica, never going back to an older version", async () => {
      await overwriteWhileServing(near, other, "overwritten");
    });

    it("drops the entries a clear through another replica removed", async () => {
      await near.client.aupdate("cleared", "llm", version(1));
      assert.deepEqual(await near.client.alookup("cleared", "llm"), version(1));
      await other.client.aclear();
      await waitFor(async () => (await near.client.alookup("cleared", "llm")) === null, "the cleared entry to be gone", 1_000);
    });

    it("stops answering an entry when its TTL runs out, even while Redis has not reclaimed the key", async () => {
      // With active expiry off, Redis removes an expired key only when
      // someone touches it, so it never says the entry is gone.
      await admin.sendCommand(["DEBUG", "SET-ACTIVE-EXPIRE", "0"]);
      try {
        await other.client.aupdate("short-lived", "llm", version(1), { ttlMs: 300 });
        const stored = performance.now();
        assert.deepEqual(await near.client.alookup("short-lived", "llm"), version(1));
        await sleep(320 - (performance.now() - stored));
        assert.equal(await near.client.alookup("short-lived", "llm"), null);
      } finally {
        await admin.sendCommand(["DEBUG", "SET-ACTIVE-EXPIRE", "1"]);
      }
    });

    it("forgets everything when Redis goes away: a Redis that comes back empty is not answered for", async () => {
      await near.client.aupdate("before-crash", "llm", version(1));
      assert.deepEqual(await near.client.alookup("before-crash", "llm"), version(1));
      redis.kill();
      await waitFor(async () => (await healthOf(near.server.address, "")) === "NOT_SERVING", "health to turn NOT_SERVING", 5_000);
      await assert.rejects(near.client.alookup("before-crash", "llm"), (error: unknown) => error instanceof CacheError && error.code === "UNAVAILABLE");
      await redis.restart();
      await waitFor(async () => (await healthOf(near.server.address, "")) === "SERVING", "health to turn SERVING again", 10_000);
      assert.equal(await near.client.alookup("before-crash", "llm"), null);
      // And it keeps entries again.
      await other.client.aupdate("after-crash", "llm", version(2));
      assert.deepEqual(await near.client.alookup("after-crash", "llm"), version(2));
      await other.client.aupdate("after-crash", "llm", version(3));
      await waitFor(async () => versionOf(await near.client.alookup("after-crash", "llm")) === 3, "the overwrite after the restart to be heard of", 1_000);
    });
  });

  describe("on a Redis Cluster", () => {
    let a: Replica;
    let b: Replica;

    before(async () => {
      const { cluster } = await redisServers();
      [a, b] = await Promise.all([replicaOn(cluster, NEAR), replicaOn(cluster, NEAR)]);
    });
    after(() => stop(a, b));

    it("drops an entry overwritten through the other replica while it serves it in a loop", async () => {
      // Prompts spread over the three primaries: each node's invalidations must arrive.
      for (const prompt of ["c-one", "c-two", "c-three", "c-four"]) await overwriteWhileServing(a, b, prompt);
    });

    it("drops the entries a clear through the other replica removed, on every primary", async () => {
      const prompts = Array.from({ length: 20 }, (_, i) => `clear-${i}`);
      for (const prompt of prompts) await b.client.aupdate(prompt, "llm", version(1));
      for (const prompt of prompts) assert.deepEqual(await a.client.alookup(prompt, "llm"), version(1));
      await b.client.aclear();
      await waitFor(
        async () => (await a.client.alookupMany(prompts.map((prompt) => [prompt, "llm"] as const))).every((found) => found === null),
        "every cleared entry to be gone",
        1_000,
      );
    });
  });

  describe("settings", () => {
    it("is refused with the memory store, exit 2, in one line", async () => {
      const run = await runCli(["serve", "--port", "0", "--near-cache", "16MiB"]);
      assert.equal(run.code, 2, run.stderr);
      assert.match(run.stderr, /--near-cache needs a Redis store/);
      assert.equal(run.stderr.trim().split("\n").length, 1, run.stderr);
    });

    it("refuses a size it cannot read, naming the setting", async () => {
      const { single } = await redisServers();
      const run = await runCli(["serve", "--port", "0", "--store", single], { LLMCACHE_NEAR_CACHE: "lots" });
      assert.equal(run.code, 2, run.stderr);
      assert.match(run.stderr, /invalid LLMCACHE_NEAR_CACHE "lots": must be a size such as 4096/);
    });
  });
});
