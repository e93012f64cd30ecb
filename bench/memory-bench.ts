import assert from "node:assert/strict";
import { create, toBinary } from "@bufbuild/protobuf";
import { Redis } from "ioredis";
import { LookupResponseSchema } from "../gen/llmcache/v1/cache_pb.js";
import { CacheClient, ENTRY_OVERHEAD_BYTES } from "../src/index.js";
import { collectGarbage, COLLECTABLE, residentBytes, startLlmcache, type RunningProcess } from "./processes.js";
import { progress, type Row } from "./results.js";
import { generationOf, langchainRedisValue, LLM_STRING, missPromptOf, promptOf } from "./workload.js";

const CHUNK = 1000;
/** What an entry's own bytes are on the server: its prompt, and its generation as stored (encoded, with its field header). */
const KEY_AND_VALUE_BYTES =
  Buffer.byteLength(promptOf(0)) + toBinary(LookupResponseSchema, create(LookupResponseSchema, { generations: [{ text: generationOf(500)[0]!.text }] })).length;

/**
 * Memory per entry for `entries` entries of a 200 B prompt, one 300 B
 * llm_string shared by all, and one 500 B generation: llmcache's resident
 * memory (after a full garbage collection, before and after loading) against
 * redis-server's used_memory for the same data stored as
 * LangChain's RedisCache stores it (a hash per key, named by a hash of
 * prompt + llm_string, with dumps(generation) under the field "0").
 */
export async function memoryBench(options: { redisPort: number; entries: number; step: number; total: number }): Promise<Row[]> {
  const scenario = `${options.entries.toLocaleString("en")} entries · 200 B prompt · shared 300 B llm_string · 500 B generation`;
  // Below a million entries the servers' fixed costs swamp the per-entry figure.
  const caveat = options.entries < 1_000_000 ? "; too few entries for a per-entry figure, see a full run" : "";
  progress(options.step + 1, options.total, `memory: llmcache, ${options.entries} entries`);
  const server = await startLlmcache([], COLLECTABLE);
  let llmcache: { resident: number; perEntry: number };
  try {
    llmcache = await fillLlmcache(server, options.entries);
  } finally {
    await server.stop();
  }
  progress(options.step + 2, options.total, `memory: redis-server, ${options.entries} entries`);
  const redis = await fillRedis(options.redisPort, options.entries);
  return [
    {
      section: "memory",
      scenario,
      system: "redis-server used_memory",
      unit: "B/entry",
      value: redis.usedPerEntry,
      note: `used_memory_rss grew ${redis.rssPerEntry.toFixed(0)} B/entry`,
    },
    {
      section: "memory",
      scenario,
      system: "llmcache resident",
      anchor: "redis-server used_memory",
      unit: "B/entry",
      value: llmcache.perEntry,
      note:
        `server resident after loading: ${(llmcache.resident / 2 ** 20).toFixed(0)} MiB; ` +
        `${Math.round(llmcache.perEntry - KEY_AND_VALUE_BYTES)} B per entry beyond its prompt and stored generations ` +
        `(ENTRY_OVERHEAD_BYTES is ${ENTRY_OVERHEAD_BYTES})${caveat}`,
    },
  ];
}

async function fillLlmcache(server: RunningProcess, entries: number): Promise<{ resident: number; perEntry: number }> {
  const client = new CacheClient({ address: server.address, timeoutMs: 60_000 });
  try {
    // Warm the server up with lookups that store nothing, so that the baseline
    // includes what any busy server holds (its young generation at full
    // size, grpc-js's buffers) and the difference is what the entries cost.
    for (let round = 0; round < 200; round++) {
      await client.alookupMany(Array.from({ length: 100 }, (_, k) => [missPromptOf(round * 100 + k), LLM_STRING] as const));
    }
    await collectGarbage(server);
    const before = residentBytes(server.child.pid!);
    for (let first = 0; first < entries; first += CHUNK) {
      const count = Math.min(CHUNK, entries - first);
      await client.aupdateMany(Array.from({ length: count }, (_, k) => [promptOf(first + k), LLM_STRING, generationOf(500, first + k)] as const));
    }
    assert.deepEqual(await client.alookup(promptOf(entries - 1), LLM_STRING), generationOf(500, entries - 1));
    await collectGarbage(server);
    const after = residentBytes(server.child.pid!);
    return { resident: after, perEntry: (after - before) / entries };
  } finally {
    await client.close();
  }
}

async function fillRedis(port: number, entries: number): Promise<{ usedPerEntry: number; rssPerEntry: number }> {
  const redis = new Redis(port, "127.0.0.1");
  try {
    await redis.flushall();
    const before = await memoryInfo(redis);
    for (let first = 0; first < entries; first += CHUNK) {
      const pipeline = redis.pipeline();
      for (let i = first; i < Math.min(first + CHUNK, entries); i++) {
        pipeline.hset(langchainRedisKey(i), "0", langchainRedisValue(500, i));
      }
      await pipeline.exec();
    }
    assert.equal(await redis.hget(langchainRedisKey(entries - 1), "0"), langchainRedisValue(500, entries - 1));
    const after = await memoryInfo(redis);
    await redis.flushall();
    return { usedPerEntry: (after.used - before.used) / entries, rssPerEntry: (after.rss - before.rss) / entries };
  } finally {
    redis.disconnect();
  }
}

/** LangChain's RedisCache names a key by the hex md5 of prompt + llm_string; any 32 hex digits take the same room. */
function langchainRedisKey(i: number): string {
  return i.toString(16).padStart(32, "0");
}

async function memoryInfo(redis: Redis): Promise<{ used: number; rss: number }> {
  const info = await redis.info("memory");
  const field = (name: string) => Number(new RegExp(`^${name}:(\\d+)`, "m").exec(info)![1]);
  return { used: field("used_memory"), rss: field("used_memory_rss") };
}
