import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { RedisCache } from "@langchain/community/caches/ioredis";
import { Redis } from "ioredis";
import { CacheClient, type Generation } from "../src/index.js";
import { compareSystems, llmcacheSystem, served, type System } from "./client-bench.js";
import type { Row } from "./results.js";
import { generationOf, KEYS, LLM_STRING, promptOf, valueOf } from "./workload.js";

const CALLERS = 64;
const ANCHOR = "ioredis cache (sha256 key, JSON)";

/**
 * What a cache of LangChain generations must do, done with plain ioredis:
 * a key made from prompt and llm_string (sha256 of their length-prefixed
 * concatenation, so that no two pairs share a key), the generations as JSON,
 * stringified on update and parsed on lookup. Against it, with 64 callers:
 * raw GET/SET of the text alone (the floor the client section anchors to),
 * the same cache with auto-pipelining, @langchain/community's ioredis
 * RedisCache (which also looks for a second generation on every hit) and
 * llmcache's auto-batching client, each returning Generation[].
 */
export async function cacheWorkBench(options: {
  llmcacheAddress: string;
  llmcachePid: number;
  redisPort: number;
  redisPid: number;
  seconds: number;
  warmupSeconds: number;
  /** Value sizes; by default 500 B and 8 KiB. */
  sizes?: number[];
  step: number;
  total: number;
}): Promise<Row[]> {
  const redis = () => new Redis(options.redisPort, "127.0.0.1");
  const systems: System[] = [
    served(redisCacheSystem(ANCHOR, redis()), options.redisPid),
    served(redisCacheSystem("ioredis auto-pipelining cache (sha256 key, JSON)", new Redis(options.redisPort, "127.0.0.1", { enableAutoPipelining: true })), options.redisPid),
    served(rawRedisSystem(redis()), options.redisPid),
    served(langchainRedisCacheSystem(redis()), options.redisPid),
    served(llmcacheSystem("llmcache auto-batched", new CacheClient({ address: options.llmcacheAddress })), options.llmcachePid),
  ];
  return compareSystems({ ...options, section: "cache work", anchor: ANCHOR, systems, operations: ["lookup hit", "update"], callers: [CALLERS] });
}

/** How many progress steps cacheWorkBench takes for this many sizes. */
export const cacheWorkSteps = (sizes: number) => 5 * 2 * sizes;

/** The key such a cache needs: one per (prompt, llm_string) pair, of a fixed length whatever their size. */
export function cacheKey(prompt: string, llmString: string): string {
  return `llmcache:${createHash("sha256").update(`${prompt.length}:${prompt}${llmString}`).digest("base64url")}`;
}

function redisCacheSystem(name: string, redis: Redis): System {
  const lookup = async (prompt: string): Promise<Generation[] | null> => {
    const stored = await redis.get(cacheKey(prompt, LLM_STRING));
    return stored === null ? null : (JSON.parse(stored) as Generation[]);
  };
  const update = (prompt: string, generations: Generation[]) => redis.set(cacheKey(prompt, LLM_STRING), JSON.stringify(generations));
  return {
    name,
    unit: "ops/s",
    unitsPerCall: 1,
    async prepare(bytes) {
      await Promise.all(Array.from({ length: KEYS }, (_, i) => update(promptOf(i), generationOf(bytes, i))));
      assert.deepEqual(await lookup(promptOf(7)), generationOf(bytes, 7), `${name} returned the wrong value`);
      assert.equal(await lookup(`${promptOf(7)} never stored`), null, `${name} found a key never stored`);
    },
    call: (operation, bytes, i) => (operation === "update" ? update(promptOf(i), generationOf(bytes, i)) : lookup(promptOf(i))),
    async close() {
      redis.disconnect();
    },
  };
}

/** GET and SET of the text alone under a short key: the floor, no key to make and nothing to encode. */
function rawRedisSystem(redis: Redis): System {
  const key = (i: number) => `bench:raw:${i}`;
  return {
    name: "ioredis GET/SET (no key, no JSON)",
    unit: "ops/s",
    unitsPerCall: 1,
    async prepare(bytes) {
      await Promise.all(Array.from({ length: KEYS }, (_, i) => redis.set(key(i), valueOf(bytes, i))));
      assert.equal(await redis.get(key(7)), valueOf(bytes, 7));
    },
    call: (operation, bytes, i) => (operation === "update" ? redis.set(key(i), valueOf(bytes, i)) : redis.get(key(i))),
    async close() {
      redis.disconnect();
    },
  };
}

function langchainRedisCacheSystem(redis: Redis): System {
  const cache = new RedisCache(redis);
  return {
    name: "@langchain/community RedisCache",
    unit: "ops/s",
    unitsPerCall: 1,
    async prepare(bytes) {
      await Promise.all(Array.from({ length: KEYS }, (_, i) => cache.update(promptOf(i), LLM_STRING, generationOf(bytes, i))));
      const found = await cache.lookup(promptOf(7), LLM_STRING);
      assert.equal(found?.length, 1);
      assert.equal(found[0]!.text, valueOf(bytes, 7), "RedisCache returned the wrong value");
      assert.equal(await cache.lookup(`${promptOf(7)} never stored`, LLM_STRING), null);
    },
    call: (operation, bytes, i) => (operation === "update" ? cache.update(promptOf(i), LLM_STRING, generationOf(bytes, i)) : cache.lookup(promptOf(i), LLM_STRING)),
    async close() {
      redis.disconnect();
    },
  };
}
