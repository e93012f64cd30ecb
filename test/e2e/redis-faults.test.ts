import assert from "node:assert/strict";
import { setTimeout as sleep } from "node:timers/promises";
import { CacheClient, CacheError } from "../../src/index.js";
import { healthOf } from "../helpers/raw-grpc.js";
import { freePort, startRedis, startRedisCluster, type PrivateCluster, type PrivateRedis } from "../helpers/redis-servers.js";
import { startServerProcess, type ServerProcess } from "../helpers/server-process.js";
import { waitFor } from "../helpers/single-flight.js";

const CALLERS = 16;

/** What callers saw: successes by phase, and every failure by its code. */
class Outcomes {
  phase = "before";
  readonly succeeded = new Map<string, number>();
  readonly failed = new Map<string, number>();
  readonly unclean: string[] = [];

  success(): void {
    this.succeeded.set(this.phase, (this.succeeded.get(this.phase) ?? 0) + 1);
  }

  /** A failure must be UNAVAILABLE and name Redis: anything else is a failure of the tier, not of Redis. */
  failure(error: unknown): void {
    const code = error instanceof CacheError ? error.code : String(error);
    this.failed.set(code, (this.failed.get(code) ?? 0) + 1);
    if (!(error instanceof CacheError && error.code === "UNAVAILABLE" && /Redis at redis(-cluster)?:\/\/\S+ cannot be reached|CLUSTERDOWN|TRYAGAIN|MASTERDOWN/.test(error.message))) {
      if (this.unclean.length < 5) this.unclean.push(error instanceof Error ? `${error.name}: ${error.message}` : String(error));
    }
  }

  in(phase: string): number {
    return this.succeeded.get(phase) ?? 0;
  }
}

/**
 * `CALLERS` loops, each storing entries of its own and reading each back,
 * until stop() is called. Every acknowledged update is kept in `acknowledged`.
 */
function underLoad(client: CacheClient, outcomes: Outcomes) {
  let running = true;
  const acknowledged: string[] = [];
  const loops = Array.from({ length: CALLERS }, async (_, caller) => {
    for (let n = 0; running; n++) {
      const prompt = `caller-${caller}-${n}`;
      try {
        await client.aupdate(prompt, "llm", [{ text: prompt }]);
        acknowledged.push(prompt);
        const found = await client.alookup(prompt, "llm");
        // Redis may lose the entry between the two (a failover, a restart): a miss is allowed, a wrong value never.
        if (found !== null) assert.deepEqual(found, [{ text: prompt }]);
        outcomes.success();
      } catch (error) {
        if (error instanceof assert.AssertionError) throw error;
        outcomes.failure(error);
        await sleep(5);
      }
    }
  });
  return {
    acknowledged,
    async stop() {
      running = false;
      await Promise.all(loops);
    },
  };
}

/** A replica on `store` and a client of its own, whose deadline is short so that a hung Redis shows soon. */
interface Replica {
  server: ServerProcess;
  client: CacheClient;
  stop(): Promise<void>;
}

async function replicaOn(store: string, args: string[] = [], timeoutMs = 2_000): Promise<Replica> {
  const server = await startServerProcess(["--store", store, ...args]);
  const client = new CacheClient({ address: server.address, timeoutMs });
  return {
    server,
    client,
    async stop() {
      await client.close();
      await server.stop();
    },
  };
}

/**
 * Stores an entry through the replica and reads it back, then hangs Redis:
 * health must turn NOT_SERVING and the lookup fail, answered from nowhere,
 * near cache or not; once Redis goes on, the replica serves the entry again.
 */
async function lookupAcrossHang(redis: PrivateRedis, { server, client }: Replica, prompt: string): Promise<void> {
  const stored = [{ text: prompt }];
  await client.aupdate(prompt, "llm", stored);
  assert.deepEqual(await client.alookup(prompt, "llm"), stored);
  redis.pause();
  try {
    // No command has a timeout of its own (see redis-connection.ts): the probe's PING finds the hang.
    await waitFor(async () => (await healthOf(server.address, "")) === "NOT_SERVING", "health to turn NOT_SERVING", 6_000);
    await assert.rejects(client.alookup(prompt, "llm"), (error: unknown) => error instanceof CacheError && /DEADLINE_EXCEEDED|UNAVAILABLE/.test(error.code));
  } finally {
    redis.resume();
  }
  await waitFor(async () => (await healthOf(server.address, "")) === "SERVING", "health to turn SERVING again", 5_000);
  assert.deepEqual(await client.alookup(prompt, "llm"), stored);
  assert.equal(server.child.exitCode, null, "the replica is still running");
}

describe("a replica on Redis under load while Redis fails", function () {
  this.timeout(90_000);

  describe("Redis stopped and started again", () => {
    let redis: PrivateRedis;
    let replica: Replica;

    before(async () => {
      redis = await startRedis();
      replica = await replicaOn(redis.url);
    });
    after(async () => {
      await replica.stop();
      await redis.stop();
    });

    it("turns NOT_SERVING, fails calls UNAVAILABLE naming Redis, and resumes by itself when Redis is back", async () => {
      const outcomes = new Outcomes();
      const load = underLoad(replica.client, outcomes);
      try {
        await waitFor(() => outcomes.in("before") >= 200, "calls to succeed before the outage", 10_000);
        outcomes.phase = "down";
        await redis.stop();
        await waitFor(async () => (await healthOf(replica.server.address, "")) === "NOT_SERVING", "health to turn NOT_SERVING", 5_000);
        await sleep(500);
        await redis.restart();
        const restarted = performance.now();
        await waitFor(async () => (await healthOf(replica.server.address, "")) === "SERVING", "health to turn SERVING again", 10_000);
        outcomes.phase = "after";
        await waitFor(() => outcomes.in("after") >= 200, "calls to succeed again", 10_000);
        assert.ok(performance.now() - restarted < 10_000);
      } finally {
        await load.stop();
      }
      assert.ok((outcomes.failed.get("UNAVAILABLE") ?? 0) > 0, "some calls failed while Redis was down");
      assert.deepEqual(outcomes.unclean, [], `failures other than UNAVAILABLE naming Redis: ${JSON.stringify(Object.fromEntries(outcomes.failed))}`);
      assert.equal(replica.server.child.exitCode, null, "the replica is still running");
    });
  });

  describe("Redis hung (SIGSTOP), then going on", () => {
    let redis: PrivateRedis;

    before(async () => {
      redis = await startRedis();
    });
    after(async () => {
      redis.resume();
      await redis.stop();
    });

    it("turns NOT_SERVING while Redis answers nothing, and serves again once it does", async () => {
      const replica = await replicaOn(redis.url, [], 1_000);
      try {
        await lookupAcrossHang(redis, replica, "hung");
      } finally {
        await replica.stop();
      }
    });

    it("answers nothing from its near cache while Redis answers nothing: changes may be held back", async () => {
      const replica = await replicaOn(redis.url, ["--near-cache", "16MiB"], 1_000);
      try {
        await lookupAcrossHang(redis, replica, "hung-near");
      } finally {
        await replica.stop();
      }
    });
  });

  describe("a Cluster primary killed", () => {
    let cluster: PrivateCluster;
    let replica: Replica;

    before(async () => {
      cluster = await startRedisCluster(1_000);
      replica = await replicaOn(cluster.url);
    });
    after(async () => {
      await replica.stop();
      await cluster.stop();
    });

    it("fails over, and the replica resumes by itself; acknowledged updates lost are counted", async () => {
      const outcomes = new Outcomes();
      const load = underLoad(replica.client, outcomes);
      let acknowledged: string[];
      try {
        await waitFor(() => outcomes.in("before") >= 300, "calls to succeed before the failure", 10_000);
        const [victim] = await cluster.primaryPorts();
        outcomes.phase = "failing over";
        cluster.kill(victim!);
        const killed = performance.now();
        await waitFor(async () => !(await cluster.primaryPorts()).includes(victim!) && (await cluster.healthy()), "a replica to take over", 20_000);
        await waitFor(async () => (await healthOf(replica.server.address, "")) === "SERVING", "the llmcache replica to serve again", 10_000);
        outcomes.phase = "after";
        await waitFor(() => outcomes.in("after") >= 300, "calls to succeed on every primary again", 10_000);
        console.log(`      failover: the llmcache replica served again ${((performance.now() - killed) / 1000).toFixed(1)} s after the primary was killed`);
      } finally {
        await load.stop();
        acknowledged = load.acknowledged;
      }
      assert.deepEqual(outcomes.unclean, [], `failures other than UNAVAILABLE naming Redis: ${JSON.stringify(Object.fromEntries(outcomes.failed))}`);

      // Redis replicates asynchronously: updates acknowledged just before the kill may not have reached the replica that took over.
      let lost = 0;
      for (let i = 0; i < acknowledged.length; i += 500) {
        const found = await replica.client.alookupMany(acknowledged.slice(i, i + 500).map((prompt) => [prompt, "llm"] as const));
        lost += found.filter((entry) => entry === null).length;
      }
      console.log(`      acknowledged updates lost in the failover: ${lost} of ${acknowledged.length}`);
      assert.ok(lost < acknowledged.length / 3, `${lost} of ${acknowledged.length} acknowledged updates lost`);
    });
  });

  describe("a Cluster primary promoted at an address where no one answers", () => {
    let cluster: PrivateCluster;
    let replica: Replica;

    before(async () => {
      cluster = await startRedisCluster(1_000);
      replica = await replicaOn(cluster.url, [], 5_000);
    });
    after(async () => {
      await replica.stop();
      await cluster.stop();
    });

    /** Each prompt's lookup through the replica: the entry, or the failure, and how long it took. */
    async function lookUp(prompts: string[]) {
      return Promise.all(
        prompts.map(async (prompt) => {
          const started = performance.now();
          try {
            const found = await replica.client.alookup(prompt, "llm");
            return { prompt, found, ms: performance.now() - started };
          } catch (error) {
            return { prompt, error, ms: performance.now() - started };
          }
        }),
      );
    }

    // A node whose cluster-announce-port is wrong is in every slot map once
    // it is a primary. node-redis used to wait for ever for its first
    // connection: lookups of its keys waited out their deadlines, and the
    // slot map was never asked for again, even once the port was right.
    it("fails only that primary's keys, UNAVAILABLE and at once, and serves them again once its address is right", async () => {
      const prompts = Array.from({ length: 60 }, (_, i) => `announced-${i}`);
      for (const prompt of prompts) await replica.client.aupdate(prompt, "llm", [{ text: prompt }]);
      const [primary] = await cluster.primaryPorts();
      const promoted = await cluster.replicaOf(primary!);
      const nowhere = await freePort();
      await cluster.send(promoted, "CONFIG", "SET", "cluster-announce-port", String(nowhere));
      await waitFor(async () => (await cluster.send(primary!, "CLUSTER", "NODES")).includes(`:${nowhere}@`), "the wrong port to reach the other nodes", 10_000);
      await cluster.send(promoted, "CLUSTER", "FAILOVER");
      await waitFor(async () => (await cluster.send(promoted, "ROLE")).startsWith("master"), "the replica to take over", 10_000);

      let during = await lookUp(prompts);
      await waitFor(
        async () => (during = await lookUp(prompts)).some((result) => "error" in result),
        "lookups of the promoted primary's keys to fail",
        15_000,
      );
      const failed = during.filter((result) => "error" in result);
      const problems = during.filter((result) =>
        "error" in result
          ? !(result.error instanceof CacheError && result.error.code === "UNAVAILABLE" && result.error.message.includes(`no Redis answers at 127.0.0.1:${nowhere}`))
          : JSON.stringify(result.found) !== JSON.stringify([{ text: result.prompt }]),
      );
      assert.deepEqual(problems, [], "each lookup finds its entry or fails UNAVAILABLE naming the address");
      assert.ok(failed.length < prompts.length, "the other primaries' keys are served");
      const slowest = Math.max(...during.map((result) => result.ms));
      assert.ok(slowest < 2_000, `a lookup took ${slowest.toFixed(0)} ms, against a deadline of 5 s`);

      await cluster.send(promoted, "CONFIG", "SET", "cluster-announce-port", String(promoted));
      await waitFor(
        async () => (await lookUp(prompts)).every((result) => JSON.stringify("found" in result ? result.found : null) === JSON.stringify([{ text: result.prompt }])),
        "every entry to be served again",
        15_000,
      );
    });
  });
});
