import assert from "node:assert/strict";
import { Redis } from "ioredis";
import { CacheClient } from "../src/index.js";
import { runLoad } from "./load.js";
import { progress, type Row } from "./results.js";
import { generationOf, KEYS, LLM_STRING, missPromptOf, promptOf, valueOf } from "./workload.js";

type Operation = "lookup hit" | "lookup miss" | "update";

/** One way to reach a cache from this process, measured alike. */
interface System {
  name: string;
  unit: string;
  unitsPerCall: number;
  /** Stores the KEYS entries of this size, then checks one hit and one miss: a fast wrong answer is no result. */
  prepare(bytes: number): Promise<void>;
  call(operation: Operation, bytes: number, keyIndex: number): Promise<unknown>;
  close(): Promise<void>;
}

const BATCH = 100;

export async function clientBench(options: {
  llmcacheAddress: string;
  redisPort: number;
  seconds: number;
  warmupSeconds: number;
}): Promise<Row[]> {
  const systems = [
    redisSystem("ioredis", new Redis(options.redisPort, "127.0.0.1")),
    redisSystem("ioredis auto-pipelining", new Redis(options.redisPort, "127.0.0.1", { enableAutoPipelining: true })),
    llmcacheSystem("llmcache unary", new CacheClient({ address: options.llmcacheAddress, batching: false })),
    llmcacheSystem("llmcache auto-batched", new CacheClient({ address: options.llmcacheAddress })),
    llmcacheBatchSystem(new CacheClient({ address: options.llmcacheAddress })),
  ];
  const rows: Row[] = [];
  const plans: [Operation, number, number][] = [];
  for (const operation of ["lookup hit", "lookup miss", "update"] as const) {
    for (const bytes of [500, 8192]) for (const callers of [1, 64]) plans.push([operation, bytes, callers]);
  }
  let step = 0;
  const total = plans.length * systems.length;
  for (const bytes of [500, 8192]) {
    for (const system of systems) await system.prepare(bytes);
    for (const [operation, planBytes, callers] of plans) {
      if (planBytes !== bytes) continue;
      const scenario = `${operation} · ${bytes === 500 ? "500 B" : "8 KiB"} · ${callers} caller${callers > 1 ? "s" : ""}`;
      for (const system of systems) {
        progress(++step, total, `client: ${system.name} · ${scenario}`);
        const result = await runLoad((caller, iteration) => system.call(operation, bytes, (caller * 7919 + iteration) % KEYS), {
          callers,
          seconds: options.seconds,
          warmupSeconds: options.warmupSeconds,
          unitsPerCall: system.unitsPerCall,
        });
        rows.push({
          section: "client",
          scenario,
          system: system.name,
          anchor: system.name === "ioredis" ? undefined : "ioredis",
          unit: system.unit,
          value: result.perSecond,
          p50: result.p50,
          p99: result.p99,
          p999: result.p999,
          note: system.unitsPerCall > 1 ? `${system.unitsPerCall} keys per call; latency is per call` : undefined,
        });
      }
    }
  }
  for (const system of systems) await system.close();
  return rows;
}

function redisSystem(name: string, redis: Redis): System {
  const key = (i: number) => `bench:${i}`;
  return {
    name,
    unit: "ops/s",
    unitsPerCall: 1,
    async prepare(bytes) {
      const pipeline = redis.pipeline();
      for (let i = 0; i < KEYS; i++) pipeline.set(key(i), valueOf(bytes, i));
      await pipeline.exec();
      assert.equal(await redis.get(key(7)), valueOf(bytes, 7), `${name} returned the wrong value`);
      assert.equal(await redis.get("bench:missing"), null, `${name} found a key never stored`);
    },
    call(operation, bytes, i) {
      if (operation === "lookup hit") return redis.get(key(i));
      if (operation === "lookup miss") return redis.get(`bench:missing:${i}`);
      return redis.set(key(i), valueOf(bytes, i));
    },
    async close() {
      redis.disconnect();
    },
  };
}

function llmcacheSystem(name: string, client: CacheClient): System {
  return {
    name,
    unit: "ops/s",
    unitsPerCall: 1,
    async prepare(bytes) {
      // In batches of 100: one message must stay under the server's 4 MiB limit.
      for (let first = 0; first < KEYS; first += BATCH) {
        await client.aupdateMany(Array.from({ length: BATCH }, (_, k) => [promptOf(first + k), LLM_STRING, generationOf(bytes, first + k)] as const));
      }
      assert.deepEqual(await client.alookup(promptOf(7), LLM_STRING), generationOf(bytes, 7), `${name} returned the wrong value`);
      assert.equal(await client.alookup(missPromptOf(7), LLM_STRING), null, `${name} found a key never stored`);
    },
    call(operation, bytes, i) {
      if (operation === "lookup hit") return client.alookup(promptOf(i), LLM_STRING);
      if (operation === "lookup miss") return client.alookup(missPromptOf(i), LLM_STRING);
      return client.aupdate(promptOf(i), LLM_STRING, generationOf(bytes, i));
    },
    close: () => client.close(),
  };
}

function llmcacheBatchSystem(client: CacheClient): System {
  const indexes = (first: number) => Array.from({ length: BATCH }, (_, k) => (first + k) % KEYS);
  const system = llmcacheSystem("llmcache batch", client);
  return {
    ...system,
    unit: "keys/s",
    unitsPerCall: BATCH,
    call(operation, bytes, first) {
      if (operation === "update") {
        return client.aupdateMany(indexes(first).map((i) => [promptOf(i), LLM_STRING, generationOf(bytes, i)] as const));
      }
      const prompt = operation === "lookup hit" ? promptOf : missPromptOf;
      return client.alookupMany(indexes(first).map((i) => [prompt(i), LLM_STRING] as const));
    },
  };
}
