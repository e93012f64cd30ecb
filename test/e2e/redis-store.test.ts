import assert from "node:assert/strict";
import { createClient } from "@redis/client";
import { CacheClient, CacheError, type Generation } from "../../src/index.js";
import { cacheBehaviour, through, type MethodFamily } from "../helpers/cache-behaviour.js";
import { healthOf } from "../helpers/raw-grpc.js";
import { freePort, redisServers, startRedis } from "../helpers/redis-servers.js";
import { runCli, startServerProcess, type ServerProcess } from "../helpers/server-process.js";
import { grantedLease, MetricsScraper, waitFor, watch } from "../helpers/single-flight.js";

const PARIS: Generation[] = [{ text: "Paris" }];

/** A server on the store, with a client of each kind; stopped after its suite. */
async function replicaOn(store: string, args: string[] = []) {
  const server = await startServerProcess(["--store", store, ...args]);
  return { server, client: new CacheClient({ address: server.address }), unbatched: new CacheClient({ address: server.address, batching: false }) };
}

type Replica = Awaited<ReturnType<typeof replicaOn>>;

async function stopAll(replicas: (Replica | undefined)[]): Promise<void> {
  for (const replica of replicas) {
    if (!replica) continue;
    await replica.client.close();
    await replica.unbatched.close();
    await replica.server.stop();
  }
}

const STORES = [
  { kind: "redis", near: false },
  { kind: "redis-cluster", near: false },
  // The near cache must change nothing a caller can see but speed.
  { kind: "redis", near: true },
  { kind: "redis-cluster", near: true },
] as const;

for (const { kind, near } of STORES) {
  describe(`a server on the ${kind === "redis" ? "Redis" : "Redis Cluster"} store${near ? " with a near cache" : ""}`, function () {
    this.timeout(60_000);
    let store: string;
    let replica: Replica;

    before(async () => {
      const { single, cluster } = await redisServers();
      store = kind === "redis" ? single : cluster;
      replica = await replicaOn(store, near ? ["--near-cache", "16MiB"] : []);
    });
    after(() => stopAll([replica]));

    for (const family of ["blocking", "async"] satisfies MethodFamily[]) {
      describe(`InMemoryCache's behaviour through CacheClient's ${family} methods`, () => {
        cacheBehaviour(
          async () => {
            await replica.client.aclear();
            return through(replica.client, family);
          },
          { maxsize: false },
        );
      });
    }

    describe("InMemoryCache's behaviour through unary calls (batching off)", () => {
      cacheBehaviour(
        async () => {
          await replica.unbatched.aclear();
          return through(replica.unbatched, "async");
        },
        { maxsize: false },
      );
    });

    it("lets an entry expire by Redis's own expiry", async () => {
      await replica.client.aupdate("short-lived", "llm", PARIS, { ttlMs: 150 });
      assert.deepEqual(await replica.client.alookup("short-lived", "llm"), PARIS);
      await waitFor(async () => (await replica.client.alookup("short-lived", "llm")) === null, "the entry to expire", 3_000);
    });

    it("stores only if absent, and keeps namespaces apart, clearing one alone", async () => {
      const client = replica.unbatched;
      await client.aclear({ allNamespaces: true });
      assert.equal(await client.aupdateIfAbsent("p", "llm", PARIS, { namespace: "a" }), true);
      assert.equal(await client.aupdateIfAbsent("p", "llm", [{ text: "Lyon" }], { namespace: "a" }), false);
      await client.aupdate("p", "llm", [{ text: "Rome" }], { namespace: "b" });
      await client.aclear({ namespace: "a" });
      assert.equal(await client.alookup("p", "llm", { namespace: "a" }), null);
      assert.deepEqual(await client.alookup("p", "llm", { namespace: "b" }), [{ text: "Rome" }]);
    });

    it("answers a batch of lookups in order, hits and misses", async () => {
      const client = replica.unbatched;
      await client.aclear();
      for (let i = 0; i < 50; i += 2) await client.aupdate(`p${i}`, "llm", [{ text: `g${i}` }]);
      const found = await client.alookupMany(Array.from({ length: 50 }, (_, i) => [`p${i}`, "llm"] as const));
      assert.deepEqual(
        found,
        Array.from({ length: 50 }, (_, i) => (i % 2 === 0 ? [{ text: `g${i}` }] : null)),
      );
    });
  });
}

describe("a replica's metrics on the Redis store", function () {
  this.timeout(60_000);
  let server: ServerProcess;

  before(async () => {
    const { single } = await redisServers();
    server = await startServerProcess(["--store", single, "--metrics-port", "0"]);
  });
  after(() => server.stop());

  it("shows Redis's entries and bytes at each scrape, with no Stats call needed", async () => {
    const client = new CacheClient({ address: server.address });
    try {
      for (let i = 0; i < 3; i++) await client.aupdate(`metered-${i}`, "llm", PARIS, { namespace: "metrics" });
    } finally {
      await client.close();
    }
    const metrics = new MetricsScraper(server);
    // Redis's DBSIZE counts every key there, other tests' too: at least these three.
    assert.ok((await metrics.value("llmcache_entries")) >= 3);
    assert.ok((await metrics.value("llmcache_bytes")) > 0);
  });
});

describe("two replicas on one Redis Cluster", function () {
  this.timeout(60_000);
  let a: Replica;
  let b: Replica;

  before(async () => {
    const { cluster } = await redisServers();
    [a, b] = await Promise.all([replicaOn(cluster), replicaOn(cluster)]);
    await a.client.aclear({ allNamespaces: true });
  });
  after(() => stopAll([a, b]));

  it("finds through one what was stored through the other, and both see a clear", async () => {
    await a.client.aupdate("shared", "llm", PARIS);
    assert.deepEqual(await b.client.alookup("shared", "llm"), PARIS);
    await b.client.aclear();
    assert.equal(await a.client.alookup("shared", "llm"), null);
  });

  it("counts lookups of every replica in each replica's statistics", async () => {
    const before = (await a.client.astats()).total.hits;
    await a.client.aupdate("counted", "llm", PARIS);
    for (let i = 0; i < 3; i++) assert.deepEqual(await b.client.alookup("counted", "llm"), PARIS);
    // B adds its counts to Redis every second.
    await waitFor(async () => (await a.client.astats()).total.hits >= before + 3, "A to see B's three hits", 5_000);
  });

  it("makes a lookup through B wait for the lease A's caller holds, and answers it with A's fill", async () => {
    const first = await a.unbatched.alookup("single flight", "llm", { lease: { leaseMs: 30_000 } });
    const lease = grantedLease(first);
    const waiting = watch(b.unbatched.alookup("single flight", "llm", { lease: { leaseMs: 30_000, waitMs: 20_000 } }));
    await new Promise((resolve) => setTimeout(resolve, 200));
    assert.equal(waiting.settled, false, "B's lookup waits while the lease is held");
    await a.unbatched.aupdate("single flight", "llm", PARIS, { leaseToken: lease.token });
    assert.deepEqual(await waiting.promise, { generations: PARIS, lease: null });
  });

  it("gives the next lease to a waiter on B when A's caller releases it", async () => {
    const lease = grantedLease(await a.unbatched.alookup("released", "llm", { lease: { leaseMs: 30_000 } }));
    const waiting = watch(b.unbatched.alookup("released", "llm", { lease: { leaseMs: 30_000, waitMs: 20_000 } }));
    await new Promise((resolve) => setTimeout(resolve, 100));
    assert.equal(await a.unbatched.areleaseLease("released", "llm", lease.token), true);
    const next = grantedLease(await waiting.promise);
    assert.notEqual(next.token, lease.token);
  });

  it("refuses a fill with a stale token once another replica stored the pair", async () => {
    const lease = grantedLease(await a.unbatched.alookup("stale", "llm", { lease: { leaseMs: 30_000 } }));
    await b.unbatched.aupdate("stale", "llm", [{ text: "from B" }]);
    assert.equal(await a.unbatched.aupdateIfAbsent("stale", "llm", PARIS, { leaseToken: lease.token }), false);
    assert.deepEqual(await a.unbatched.alookup("stale", "llm"), [{ text: "from B" }]);
  });
});

describe("a server whose Redis goes away", function () {
  this.timeout(60_000);
  let redis: Awaited<ReturnType<typeof startRedis>>;
  let replica: Replica | undefined;

  before(async () => {
    redis = await startRedis();
    replica = await replicaOn(redis.url);
  });
  after(async () => {
    await stopAll([replica]);
    await redis.stop().catch(() => {});
  });

  it("turns NOT_SERVING, fails calls UNAVAILABLE naming Redis, and serves again once Redis is back", async () => {
    const { client, unbatched, server } = replica!;
    await client.aupdate("before", "llm", PARIS);
    assert.equal(await healthOf(server.address, ""), "SERVING");
    redis.kill();
    await waitFor(async () => (await healthOf(server.address, "")) === "NOT_SERVING", "health to turn NOT_SERVING", 5_000);
    for (const call of [() => unbatched.alookup("before", "llm"), () => client.aupdate("during", "llm", PARIS)]) {
      await assert.rejects(call(), (error: unknown) => {
        assert.ok(error instanceof CacheError, String(error));
        assert.equal(error.code, "UNAVAILABLE", error.message);
        assert.match(error.message, /Redis at redis:\/\/127\.0\.0\.1:\d+/);
        return true;
      });
    }
    await redis.restart();
    await waitFor(async () => (await healthOf(server.address, "")) === "SERVING", "health to turn SERVING again", 10_000);
    await client.aupdate("after", "llm", PARIS);
    assert.deepEqual(await unbatched.alookup("after", "llm"), PARIS);
  });
});

describe("llmcache serve --store with settings a Redis store cannot honour", function () {
  this.timeout(30_000);
  const refused: [string[], RegExp][] = [
    [["--maxsize", "10"], /--maxsize does not apply to a Redis store: bound memory on Redis with maxmemory/],
    [["--max-bytes", "1MiB"], /--max-bytes does not apply to a Redis store/],
    [["--policy", "lru"], /--policy does not apply to a Redis store: Redis evicts by its maxmemory-policy/],
    [["--namespace-limit", "a:maxsize=3"], /--namespace-limit a does not apply to a Redis store/],
    [["--max-namespaces", "5"], /--max-namespaces does not apply to a Redis store/],
    [["--snapshot", "/tmp/llmcache-never.snapshot"], /--snapshot does not apply to a Redis store: Redis keeps its own persistence/],
  ];
  for (const [args, message] of refused) {
    it(`refuses ${args.join(" ")} at start, exit 2, in one line`, async () => {
      const { single } = await redisServers();
      const run = await runCli(["serve", "--port", "0", "--store", single, ...args]);
      assert.equal(run.code, 2, run.stderr);
      assert.match(run.stderr, message);
      assert.equal(run.stderr.trim().split("\n").length, 1, run.stderr);
    });
  }

  it("refuses a store it cannot parse, naming the setting", async () => {
    const run = await runCli(["serve", "--port", "0"], { LLMCACHE_STORE: "mysql://127.0.0.1" });
    assert.equal(run.code, 2);
    assert.match(run.stderr, /invalid LLMCACHE_STORE "mysql:\/\/127\.0\.0\.1": expected memory, redis:\/\/HOST:PORT/);
  });

  it("fails to start, exit 1, when Redis cannot be reached", async () => {
    const redis = await startRedis();
    await redis.stop();
    const run = await runCli(["serve", "--port", "0", "--store", redis.url, "--log-level", "silent"], {}, 20_000);
    assert.equal(run.code, 1, run.stderr);
    assert.match(run.stderr, /cannot connect to Redis at redis:\/\/127\.0\.0\.1:\d+: .*ECONNREFUSED/);
  });

  it("waits its 10 s for a Redis Cluster none of whose nodes answers, then fails to start, exit 1", async () => {
    // node-redis tries each root node once: the start failed at once, where a
    // single Redis is waited for (replicas may start before their Redis).
    const ports = await Promise.all([freePort(), freePort(), freePort()]);
    const store = `redis-cluster://${ports.map((port) => `127.0.0.1:${port}`).join(",")}`;
    const started = performance.now();
    const run = await runCli(["serve", "--port", "0", "--store", store, "--log-level", "silent"], {}, 30_000);
    const elapsed = performance.now() - started;
    assert.equal(run.code, 1, run.stderr);
    assert.match(run.stderr, /cannot connect to Redis at redis-cluster:\/\/127\.0\.0\.1:\d+,.*ECONNREFUSED/);
    assert.ok(elapsed >= 9_000, `gave up after ${Math.round(elapsed)} ms, not 10 s`);
  });

  describe("fails to start at once, exit 2, when Redis refuses what the store's address asks", () => {
    const refusals: [string, (single: string) => string, RegExp][] = [
      ["a database index out of range", (single) => `${single}/99`, /refused the connection: ERR DB index is out of range/],
      ["redis-cluster:// at a Redis without Cluster support", (single) => single.replace("redis://", "redis-cluster://"), /refused the connection: ERR This instance has cluster support disabled/],
    ];
    const assertRefusedAtOnce = async (store: string, message: RegExp) => {
      const started = performance.now();
      const run = await runCli(["serve", "--port", "0", "--store", store], {}, 20_000);
      assert.equal(run.code, 2, run.stderr);
      // Before, node-redis retried until the start's 10 s were up.
      assert.ok(performance.now() - started < 5_000, `gave up after ${Math.round(performance.now() - started)} ms`);
      const lines = run.stderr.trim().split("\n");
      assert.equal(lines.length, 1, run.stderr);
      assert.match(lines[0]!, /^llmcache: invalid --store "redis(-cluster)?:\/\/[^"]+": Redis at \S+ refused the connection: /);
      assert.match(lines[0]!, message);
    };
    for (const [name, store, message] of refusals) {
      it(name, async () => {
        const { single } = await redisServers();
        await assertRefusedAtOnce(store(single), message);
      });
    }

    it("a wrong password", async () => {
      const redis = await startRedis();
      const settings = createClient({ url: redis.url });
      try {
        await settings.connect();
        await settings.configSet("requirepass", "right");
        await assertRefusedAtOnce(redis.url.replace("redis://", "redis://:wrong@"), /WRONGPASS/);
        await assertRefusedAtOnce(redis.url, /NOAUTH/);
      } finally {
        await settings.configSet("requirepass", ""); // the helper stops Redis without one
        await settings.close();
        await redis.stop();
      }
    });
  });

  it("warns at start when Redis's memory is unbounded or never evicts, and not once it is bounded and evicts", async () => {
    const redis = await startRedis();
    const settings = createClient({ url: redis.url });
    await settings.connect();
    const startLog = async () => {
      const server = await startServerProcess(["--store", redis.url]);
      await server.stop();
      return server.stderr();
    };
    try {
      assert.match(await startLog(), /Redis's memory is not bounded for a cache: a primary has no maxmemory/);
      await settings.configSet({ maxmemory: "64mb", "maxmemory-policy": "noeviction" });
      assert.match(await startLog(), /maxmemory-policy is noeviction: once full, Redis refuses every write/);
      await settings.configSet("maxmemory-policy", "allkeys-lru");
      assert.doesNotMatch(await startLog(), /not bounded/);
    } finally {
      await settings.close();
      await redis.stop();
    }
  });

  it("takes a namespace's default TTL, which it honours through Redis's expiry", async () => {
    const { single } = await redisServers();
    const server: ServerProcess = await startServerProcess(["--store", single, "--namespace-limit", "brief:default-ttl=150ms"]);
    const client = new CacheClient({ address: server.address, namespace: "brief" });
    try {
      await client.aupdate("p", "llm", PARIS);
      assert.deepEqual(await client.alookup("p", "llm"), PARIS);
      await waitFor(async () => (await client.alookup("p", "llm")) === null, "the entry to expire", 3_000);
    } finally {
      await client.close();
      await server.stop();
    }
  });
});
