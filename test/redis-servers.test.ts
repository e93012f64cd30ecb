import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { createClient, createCluster } from "@redis/client";
import { redisServers, startRedis, type PrivateRedis } from "./helpers/redis-servers.js";

/** redis-cluster://h:p,h:p,... as the nodes' redis:// URLs. */
function clusterNodes(url: string): string[] {
  const match = /^redis-cluster:\/\/(.+)$/.exec(url);
  assert.ok(match, `not a redis-cluster:// URL: ${url}`);
  return match[1]!.split(",").map((node) => `redis://${node}`);
}

// No reconnecting: a server that is down must fail connect(), not retry forever.
const newClient = (url: string) => createClient({ url, socket: { reconnectStrategy: false } });

/** Connects, runs fn, and always disconnects, so that a failed assertion leaves no socket keeping mocha alive. */
async function withClient<T>(url: string, fn: (client: ReturnType<typeof newClient>) => Promise<T>): Promise<T> {
  const client = newClient(url);
  client.on("error", () => {});
  await client.connect();
  try {
    return await fn(client);
  } finally {
    client.destroy();
  }
}

/** The id Redis makes up each time it starts. */
function runId(info: string): string {
  const match = /^run_id:(\w+)/m.exec(info);
  assert.ok(match, `no run_id in ${info}`);
  return match[1]!;
}

/**
 * SIGKILL is delivered, not awaited: for a moment the dying server may still
 * accept a connection (and answer, or reset it), so wait for a refusal.
 */
async function refusesWithin(url: string, ms: number): Promise<void> {
  const deadline = Date.now() + ms;
  for (;;) {
    const outcome = await withClient(url, (client) => client.ping()).catch((error: Error) => `${error.message}`);
    if (/ECONNREFUSED/.test(outcome)) return;
    assert.ok(Date.now() < deadline, `${url} still not refusing ${ms} ms after kill(); last: ${outcome}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

describe("the Redis servers for tests", function () {
  this.timeout(60_000);

  let single: string;
  let cluster: string;

  before(async () => {
    ({ single, cluster } = await redisServers());
  });

  it("give the same URLs on every call", async () => {
    assert.deepEqual(await redisServers(), { single, cluster });
  });

  it("a plain Redis that answers PING", async () => {
    assert.match(single, /^redis:\/\/127\.0\.0\.1:\d+$/);
    assert.equal(await withClient(single, (client) => client.ping()), "PONG");
  });

  it("a cluster of six nodes, each of which says cluster_state:ok, three of them primaries", async () => {
    const nodes = clusterNodes(cluster);
    assert.equal(nodes.length, 6);
    let primaries = 0;
    for (const node of nodes) {
      const info = await withClient(node, (client) => client.clusterInfo());
      assert.match(info, /^cluster_state:ok\r?$/m, `${node}: ${info}`);
      const role = await withClient(node, (client) => client.role());
      assert.ok(role, `${node}: no ROLE reply`);
      if (role.role === "master") primaries += 1;
    }
    assert.equal(primaries, 3);
  });

  it("a cluster where keys set through a cluster client can be read back, whichever slot they hash to", async () => {
    const [first] = clusterNodes(cluster);
    const client = createCluster({ rootNodes: [{ url: first! }] });
    client.on("error", () => {});
    await client.connect();
    try {
      // Enough keys that, with near certainty, every primary holds some.
      const prefix = `redis-servers-test:${randomUUID()}:`;
      const keys = Array.from({ length: 30 }, (_, i) => `${prefix}${i}`);
      for (const key of keys) await client.set(key, `value of ${key}`, { expiration: { type: "EX", value: 60 } });
      for (const key of keys) assert.equal(await client.get(key), `value of ${key}`);
      assert.equal(client.masters.length, 3);
    } finally {
      client.destroy();
    }
  });

  describe("startRedis", () => {
    let redis: PrivateRedis;

    before(async () => {
      redis = await startRedis();
    });

    after(async () => {
      await redis?.stop();
    });

    it("a Redis of its own, on another port than the shared one", async () => {
      assert.equal(redis.url, `redis://127.0.0.1:${redis.port}`);
      assert.notEqual(redis.url, single);
      assert.equal(await withClient(redis.url, (client) => client.ping()), "PONG");
    });

    it("after kill() refuses connections, and after restart() answers PING on the same port, empty", async () => {
      const url = `redis://127.0.0.1:${redis.port}`;
      const before = await withClient(url, async (client) => {
        await client.set("survives-a-kill", "no");
        return runId(await client.info("server"));
      });
      redis.kill();
      await refusesWithin(url, 2_000);
      await redis.restart();
      await withClient(url, async (client) => {
        assert.equal(await client.ping(), "PONG");
        assert.notEqual(runId(await client.info("server")), before, "a new process");
        assert.equal(await client.get("survives-a-kill"), null);
      });
    });

    it("after stop() refuses connections, and after restart() answers PING again", async () => {
      await redis.stop();
      await assert.rejects(withClient(redis.url, (client) => client.ping()), /ECONNREFUSED/);
      await redis.restart();
      assert.equal(await withClient(redis.url, (client) => client.ping()), "PONG");
    });
  });
});
