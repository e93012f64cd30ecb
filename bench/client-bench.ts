import assert from "node:assert/strict";
import { Redis } from "ioredis";
import { CacheClient } from "../src/index.js";
import { runLoad } from "./load.js";
import { progress, type Row } from "./results.js";
import { generationOf, KEYS, LLM_STRING, missPromptOf, promptOf, valueOf } from "./workload.js";

export type Operation = "lookup hit" | "lookup miss" | "update";

/** One way to reach a cache from this process, measured alike. */
export interface System {
  name: string;
  unit: string;
  unitsPerCall: number;
  /** The system its ratio divides by, when not the comparison's anchor. */
  anchor?: string;
  /** Stores the KEYS entries of this size, then checks one hit and one miss: a fast wrong answer is no result. */
  prepare(bytes: number): Promise<void>;
  call(operation: Operation, bytes: number, keyIndex: number): Promise<unknown>;
  close(): Promise<void>;
  /** The pid of the server it calls, whose CPU is measured with the client's. */
  serverPid?: number;
}

/** The system, with the server it calls named by its pid. */
export const served = (system: System, serverPid: number): System => ({ ...system, serverPid });

export const BATCH = 100;
const SIZES = [500, 8192];

export const sizeLabel = (bytes: number) => (bytes === 500 ? "500 B" : "8 KiB");

export async function clientBench(options: {
  llmcacheAddress: string;
  llmcachePid: number;
  redisPort: number;
  redisPid: number;
  seconds: number;
  warmupSeconds: number;
  step: number;
  total: number;
}): Promise<Row[]> {
  const systems = [
    served(redisSystem("ioredis", new Redis(options.redisPort, "127.0.0.1")), options.redisPid),
    served(redisSystem("ioredis auto-pipelining", new Redis(options.redisPort, "127.0.0.1", { enableAutoPipelining: true })), options.redisPid),
    served(redisPipelineSystem(new Redis(options.redisPort, "127.0.0.1")), options.redisPid),
    served(llmcacheSystem("llmcache unary", new CacheClient({ address: options.llmcacheAddress, batching: false })), options.llmcachePid),
    served(llmcacheSystem("llmcache auto-batched", new CacheClient({ address: options.llmcacheAddress })), options.llmcachePid),
    served(llmcacheBatchSystem(new CacheClient({ address: options.llmcacheAddress })), options.llmcachePid),
  ];
  return compareSystems({ ...options, section: "client", anchor: "ioredis", systems, operations: ["lookup hit", "lookup miss", "update"], callers: [1, 64] });
}

/** How many progress steps clientBench takes. */
export const CLIENT_STEPS = 6 * 3 * SIZES.length * 2;

/**
 * Runs every operation, size and number of callers against each system in
 * turn, each system prepared with the same entries first, and closes them.
 * A row's ratio is to `anchor` (or the system's own anchor) in the same scenario.
 */
export async function compareSystems(options: {
  section: string;
  anchor: string;
  systems: System[];
  operations: readonly Operation[];
  callers: readonly number[];
  sizes?: readonly number[];
  seconds: number;
  warmupSeconds: number;
  step: number;
  total: number;
}): Promise<Row[]> {
  const rows: Row[] = [];
  let step = options.step;
  for (const bytes of options.sizes ?? SIZES) {
    for (const system of options.systems) await system.prepare(bytes);
    for (const operation of options.operations) {
      for (const callers of options.callers) {
        const scenario = `${operation} · ${sizeLabel(bytes)} · ${callers} caller${callers > 1 ? "s" : ""}`;
        for (const system of options.systems) {
          progress(++step, options.total, `${options.section}: ${system.name} · ${scenario}`);
          const result = await runLoad((caller, iteration) => system.call(operation, bytes, (caller * 7919 + iteration) % KEYS), {
            callers,
            seconds: options.seconds,
            warmupSeconds: options.warmupSeconds,
            unitsPerCall: system.unitsPerCall,
            serverPid: system.serverPid,
          });
          rows.push({
            section: options.section,
            scenario,
            system: system.name,
            anchor: system.name === options.anchor ? undefined : (system.anchor ?? options.anchor),
            unit: system.unit,
            value: result.perSecond,
            p50: result.p50,
            p99: result.p99,
            p999: result.p999,
            cpu: result.cpu,
            note: system.unitsPerCall > 1 ? `${system.unitsPerCall} keys per call; latency is per call` : undefined,
          });
        }
      }
    }
  }
  for (const system of options.systems) await system.close();
  return rows;
}

const redisKey = (i: number) => `bench:${i}`;
const redisMissKey = (i: number) => `bench:missing:${i}`;

export function redisSystem(name: string, redis: Redis): System {
  return {
    name,
    unit: "ops/s",
    unitsPerCall: 1,
    async prepare(bytes) {
      const pipeline = redis.pipeline();
      for (let i = 0; i < KEYS; i++) pipeline.set(redisKey(i), valueOf(bytes, i));
      await pipeline.exec();
      assert.equal(await redis.get(redisKey(7)), valueOf(bytes, 7), `${name} returned the wrong value`);
      assert.equal(await redis.get("bench:missing"), null, `${name} found a key never stored`);
    },
    call(operation, bytes, i) {
      if (operation === "lookup hit") return redis.get(redisKey(i));
      if (operation === "lookup miss") return redis.get(redisMissKey(i));
      return redis.set(redisKey(i), valueOf(bytes, i));
    },
    async close() {
      redis.disconnect();
    },
  };
}

const batchIndexes = (first: number) => Array.from({ length: BATCH }, (_, k) => (first + k) % KEYS);

/** The system with calls of BATCH keys each, counted as keys. */
const batchOf = (system: System, changes: Partial<System>): System => ({ ...system, unit: "keys/s", unitsPerCall: BATCH, ...changes });

/** The same 100 GETs (or SETs) as llmcache's batch of 100 keys, in one ioredis pipeline: Redis's own batch. */
function redisPipelineSystem(redis: Redis): System {
  const system = redisSystem("ioredis pipeline", redis);
  return batchOf(system, {
    async prepare(bytes) {
      await system.prepare(bytes);
      const replies = await pipelined(redis, "lookup hit", bytes, 7);
      assert.equal(replies[0], valueOf(bytes, 7), "ioredis pipeline returned the wrong value");
      assert.equal(replies.length, BATCH);
    },
    call: (operation, bytes, first) => pipelined(redis, operation, bytes, first),
  });
}

async function pipelined(redis: Redis, operation: Operation, bytes: number, first: number): Promise<unknown[]> {
  const pipeline = redis.pipeline();
  for (const i of batchIndexes(first)) {
    if (operation === "lookup hit") pipeline.get(redisKey(i));
    else if (operation === "lookup miss") pipeline.get(redisMissKey(i));
    else pipeline.set(redisKey(i), valueOf(bytes, i));
  }
  const replies = (await pipeline.exec())!;
  return replies.map(([error, reply]) => {
    if (error) throw error;
    return reply;
  });
}

export function llmcacheSystem(name: string, client: CacheClient): System {
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

/** BatchLookup and BatchUpdate of 100 keys; its ratio is to the ioredis pipeline of the same 100 keys. */
function llmcacheBatchSystem(client: CacheClient): System {
  return batchOf(llmcacheSystem("llmcache batch", client), {
    anchor: "ioredis pipeline",
    call(operation, bytes, first) {
      if (operation === "update") {
        return client.aupdateMany(batchIndexes(first).map((i) => [promptOf(i), LLM_STRING, generationOf(bytes, i)] as const));
      }
      const prompt = operation === "lookup hit" ? promptOf : missPromptOf;
      return client.alookupMany(batchIndexes(first).map((i) => [prompt(i), LLM_STRING] as const));
    },
  });
}
