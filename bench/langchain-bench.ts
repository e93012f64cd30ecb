import assert from "node:assert/strict";
import { RedisCache } from "@langchain/community/caches/ioredis";
import { InMemoryCache as LangChainInMemoryCache, type BaseCache as LangChainBaseCache } from "@langchain/core/caches";
import type { Generation } from "@langchain/core/outputs";
import { FakeListChatModel } from "@langchain/core/utils/testing";
import { Redis } from "ioredis";
import { CacheClient } from "../src/index.js";
import { LangChainCache } from "../src/langchain/index.js";
import { runLoad, type LoadResult } from "./load.js";
import { progress, type Row } from "./results.js";
import { LLM_STRING, promptOf, valueOf } from "./workload.js";

const CALLERS = 64;
const PROMPTS = 200;
const BYTES = 500;

/** What a LangChain JS application sees: a chat model whose cache is the system measured. */
interface LangChainSystem {
  name: string;
  cache: LangChainBaseCache;
  close(): Promise<void>;
}

/**
 * LangChain JS's cache path, 64 concurrent callers, all hits on 500 B
 * answers: `model.invoke` through each cache (what an application gets),
 * and each cache's `lookup` alone (what the cache itself costs), against
 * @langchain/community's ioredis RedisCache on the same redis-server. A
 * bare CacheClient's lookups are the floor the adapter adds to, and
 * @langchain/core's in-process InMemoryCache the ceiling of invoke's own
 * path. Each path is warmed up before any is measured: the first one
 * measured would otherwise pay for the JIT.
 */
export async function langchainBench(options: {
  llmcacheAddress: string;
  redisPort: number;
  seconds: number;
  warmupSeconds: number;
  step: number;
  total: number;
}): Promise<Row[]> {
  const redis = new Redis(options.redisPort, "127.0.0.1");
  const client = new CacheClient({ address: options.llmcacheAddress });
  const systems: LangChainSystem[] = [
    { name: "@langchain/community RedisCache", cache: new RedisCache(redis), close: async () => redis.disconnect() },
    { name: "llmcache LangChainCache", cache: new LangChainCache(client, { namespace: "bench-langchain" }), close: () => client.close() },
    // No network and no copy: what LangChain's own invoke path allows at best.
    { name: "@langchain/core InMemoryCache (in process)", cache: new LangChainInMemoryCache(), close: async () => {} },
  ];
  const rows: Row[] = [];
  let step = options.step;
  let adapter: { cache: LangChainCache; anchor: string | undefined } | undefined;
  const load = (call: (caller: number, iteration: number) => Promise<unknown>) =>
    runLoad(call, { callers: CALLERS, seconds: options.seconds, warmupSeconds: options.warmupSeconds });
  const row = (scenario: string, system: string, anchor: string | undefined, result: Awaited<ReturnType<typeof runLoad>>): Row => ({
    section: "langchain",
    scenario,
    system,
    anchor,
    unit: "lookups/s",
    value: result.perSecond,
    p50: result.p50,
    p99: result.p99,
    p999: result.p999,
  });

  const warm = (call: () => Promise<unknown>) => runLoad(call, { callers: CALLERS, seconds: options.warmupSeconds * 2, warmupSeconds: 0 });
  await client.aupdate("direct", LLM_STRING, [{ text: valueOf(BYTES) }], { namespace: "bench-langchain" });
  await warm(() => client.alookup("direct", LLM_STRING, { namespace: "bench-langchain" }));
  for (const system of systems) {
    const answers = Array.from({ length: PROMPTS }, (_, i) => valueOf(BYTES, i));
    const model = new FakeListChatModel({ responses: answers, cache: system.cache });
    for (let i = 0; i < PROMPTS; i++) await model.invoke(promptOf(i));
    // A fast wrong answer is no result: the second round must be hits, the fake's answers not consumed again.
    assert.equal((await model.invoke(promptOf(7))).content, answers[7], `${system.name} did not answer from the cache`);
    const anchor = system === systems[0] ? undefined : systems[0]!.name;
    await system.cache.update("direct", LLM_STRING, [{ text: valueOf(BYTES) }] as Generation[]);
    await warm(() => model.invoke(promptOf(3)));
    await warm(() => system.cache.lookup("direct", LLM_STRING));

    progress(++step, options.total, `langchain: ${system.name} · model.invoke`);
    rows.push(row(`model.invoke, cache hit · ${BYTES} B · ${CALLERS} callers`, system.name, anchor, await load((caller, i) => model.invoke(promptOf((caller * 31 + i) % PROMPTS)))));

    if (system.cache instanceof LangChainCache) {
      // Its lookup alone is measured below, alternating with a bare CacheClient's.
      adapter = { cache: system.cache, anchor };
      continue;
    }
    progress(++step, options.total, `langchain: ${system.name} · cache.lookup`);
    rows.push(row(`cache.lookup, hit · ${BYTES} B · ${CALLERS} callers`, system.name, anchor, await load(() => system.cache.lookup("direct", LLM_STRING))));
  }

  // The adapter's cost is the gap between these two, smaller than how much
  // one round differs from the next here (72k-94k lookups/s within one
  // run): they are measured in alternating rounds, each given as its median
  // round, so that a phase of the machine (or of this process's garbage)
  // falls on both alike. Measured one after the other, the adapter came out
  // at 0.77-0.86× the bare client in four runs; alternating, 0.77-0.99× in
  // six, with both spending 10-14 µs of client CPU a lookup.
  progress(++step, options.total, "langchain: LangChainCache and CacheClient · lookup, alternating");
  const adapterRounds: LoadResult[] = [];
  const bareRounds: LoadResult[] = [];
  const measureAdapter = async () => adapterRounds.push(await load(() => adapter!.cache.lookup("direct", LLM_STRING)));
  const measureBare = async () => bareRounds.push(await load(() => client.alookup("direct", LLM_STRING, { namespace: "bench-langchain" })));
  for (let round = 0; round < ALTERNATING_ROUNDS; round++) {
    // Which goes first turns each round: the second of a pair may pay for the first's garbage.
    const [first, second] = round % 2 === 0 ? [measureAdapter, measureBare] : [measureBare, measureAdapter];
    await first();
    await second();
  }
  const scenario = `cache.lookup, hit · ${BYTES} B · ${CALLERS} callers`;
  rows.push(row(scenario, "llmcache LangChainCache", adapter!.anchor, medianRound(adapterRounds)));
  rows.push(row(scenario, "llmcache CacheClient (no adapter)", systems[0]!.name, medianRound(bareRounds)));
  for (const system of systems) await system.close();
  return rows;
}

const ALTERNATING_ROUNDS = 4;

/** The round with the median throughput. */
function medianRound(rounds: LoadResult[]): LoadResult {
  return [...rounds].sort((a, b) => a.perSecond - b.perSecond)[rounds.length >> 1]!;
}

/** How many progress steps langchainBench takes. */
export const LANGCHAIN_STEPS = 6;
