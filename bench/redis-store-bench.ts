import assert from "node:assert/strict";
import { createClient } from "@redis/client";
import { Redis } from "ioredis";
import { CacheClient } from "../src/index.js";
import { llmcacheSystem, redisSystem, type System } from "./client-bench.js";
import { runLoad } from "./load.js";
import { cpuSeconds, startLlmcache, type RunningProcess } from "./processes.js";
import { progress, type Row } from "./results.js";
import { KEYS, valueOf } from "./workload.js";

const BYTES = 500;
const CALLERS = [1, 64] as const;
const SYSTEMS = 5;
export const REDIS_STORE_STEPS = SYSTEMS * CALLERS.length;

/**
 * What the tier costs: lookups (500 B hits) through one llmcache replica
 * on the Redis store, with and without its near cache (and with a client
 * that keeps the hits the replica grants it, CacheClient's nearCache), against the same
 * Redis read directly by node-redis (the library the replica uses) and by
 * ioredis. Each row also gives the CPU time the replica and Redis spent per
 * lookup, from /proc, which is what sizing a deployment needs.
 */
export async function redisStoreBench(options: {
  redisPort: number;
  redisPid: number;
  seconds: number;
  warmupSeconds: number;
  step: number;
  total: number;
}): Promise<Row[]> {
  const store = ["--store", `redis://127.0.0.1:${options.redisPort}`];
  const replicas: RunningProcess[] = [];
  try {
    const plain = await startLlmcache(store);
    replicas.push(plain);
    const near = await startLlmcache([...store, "--near-cache", "64MiB"]);
    replicas.push(near);
    const systems: { system: System; replica?: RunningProcess }[] = [
      { system: nodeRedisSystem(options.redisPort) },
      { system: redisSystem("ioredis", new Redis(options.redisPort, "127.0.0.1")) },
      { system: llmcacheSystem("llmcache on Redis", new CacheClient({ address: plain.address })), replica: plain },
      { system: llmcacheSystem("llmcache on Redis, near cache", new CacheClient({ address: near.address })), replica: near },
      {
        system: llmcacheSystem("llmcache on Redis, near cache + client near cache", new CacheClient({ address: near.address, nearCache: { maxBytes: 64 << 20 } })),
        replica: near,
      },
    ];
    const rows: Row[] = [];
    let step = options.step;
    for (const { system } of systems) await system.prepare(BYTES);
    for (const callers of CALLERS) {
      const scenario = `lookup hit · 500 B · ${callers} caller${callers > 1 ? "s" : ""}`;
      for (const { system, replica } of systems) {
        progress(++step, options.total, `redis store: ${system.name} · ${scenario}`);
        const call = (caller: number, iteration: number) => system.call("lookup hit", BYTES, (caller * 7919 + iteration) % KEYS);
        await runLoad(call, { callers, seconds: options.warmupSeconds, warmupSeconds: 0 });
        const before = { replica: replica ? cpuSeconds(replica.child.pid!) : 0, redis: cpuSeconds(options.redisPid) };
        const result = await runLoad(call, { callers, seconds: options.seconds, warmupSeconds: 0 });
        const perCall = (seconds: number) => (seconds * 1e6) / result.calls;
        const replicaUs = replica ? perCall(cpuSeconds(replica.child.pid!) - before.replica) : undefined;
        const redisUs = perCall(cpuSeconds(options.redisPid) - before.redis);
        rows.push({
          section: "redis store",
          scenario,
          system: system.name,
          anchor: system.name === "node-redis" ? undefined : "node-redis",
          unit: "ops/s",
          value: result.perSecond,
          p50: result.p50,
          p99: result.p99,
          p999: result.p999,
          note: `${callers} caller${callers > 1 ? "s" : ""}, CPU per lookup: ${replicaUs === undefined ? "" : `replica ${replicaUs.toFixed(1)} µs, `}Redis ${redisUs.toFixed(1)} µs`,
        });
      }
    }
    for (const { system } of systems) await system.close();
    return rows;
  } finally {
    for (const replica of replicas) await replica.stop();
  }
}

const redisKey = (i: number) => `bench:redis-store:${i}`;

function nodeRedisSystem(port: number): System {
  const client = createClient({ url: `redis://127.0.0.1:${port}` });
  let connected: Promise<unknown> | undefined;
  return {
    name: "node-redis",
    unit: "ops/s",
    unitsPerCall: 1,
    async prepare(bytes) {
      await (connected ??= client.connect());
      await Promise.all(Array.from({ length: KEYS }, (_, i) => client.set(redisKey(i), valueOf(bytes, i))));
      assert.equal(await client.get(redisKey(7)), valueOf(bytes, 7), "node-redis returned the wrong value");
    },
    call: (_operation, _bytes, i) => client.get(redisKey(i)),
    async close() {
      await client.close();
    },
  };
}
