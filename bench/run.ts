import { spawnSync } from "node:child_process";
import { mkdirSync, writeFileSync } from "node:fs";
import { cpus } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { cacheWorkBench, cacheWorkSteps } from "./cache-work-bench.js";
import { CHURN_STEPS, churnBench } from "./churn-bench.js";
import { CLIENT_STEPS, clientBench } from "./client-bench.js";
import { entryCountBench, entryCountSteps } from "./entry-count-bench.js";
import { h2loadBench } from "./h2load-bench.js";
import { inProcessBench } from "./in-process-bench.js";
import { LANGCHAIN_STEPS, langchainBench } from "./langchain-bench.js";
import { PYTHON_STEPS, pythonBench } from "./python-bench.js";
import { memoryBench } from "./memory-bench.js";
import { REDIS_STORE_STEPS, redisStoreBench } from "./redis-store-bench.js";
import { MODEL_MS, SINGLE_FLIGHT_STEPS, singleFlightBench } from "./single-flight-bench.js";
import { startEmptyServer, startLlmcache, startRedis, type RunningProcess } from "./processes.js";
import { drawChart, formatTables } from "./report.js";
import { KEYS } from "./workload.js";
import { findRow, withRatios, type Report, type Row, type Target } from "./results.js";

// `npm run bench [-- --quick] [-- --out DIR] [-- --only NAME,...]`: starts
// everything it compares on loopback, runs each in turn, prints a table, and
// writes results.json and chart.svg. Timings are reported, never asserted: a
// run's ratios are the result, and `--quick` exists so that CI can keep this
// script from rotting. `--quick` leaves out the slow parts (entry-count,
// churn) unless `--only` names them, when they run at a smaller size.
const { values } = parseArgs({
  options: { quick: { type: "boolean", default: false }, out: { type: "string", default: "bench/results" }, only: { type: "string" } },
});
const quick = values.quick!;
const settings = quick
  ? { seconds: 0.25, warmupSeconds: 0.1, inProcessSeconds: 0.2, h2loadRequests: 5_000, memoryEntries: 20_000, bursts: 2, cacheWorkSizes: [500] }
  : { seconds: 2.5, warmupSeconds: 0.5, inProcessSeconds: 1.5, h2loadRequests: 200_000, memoryEntries: 1_000_000, bursts: 20, cacheWorkSizes: [500, 8192] };
const slow = quick
  ? { entryCounts: [10_000, 100_000, 300_000], churnEntries: 100_000, churnLargeEntries: 2_048 }
  : { entryCounts: [10_000, 1_000_000, 5_000_000], churnEntries: 2_000_000, churnLargeEntries: 32_768 };

interface Part {
  name: string;
  steps: number;
  /** Left out of --quick unless named by --only. */
  slow?: boolean;
  run(step: number, total: number): Promise<Row[]>;
}

const started: RunningProcess[] = [];
try {
  const startedAt = new Date().toISOString();
  const redis = await startRedis().then(remember);
  const llmcache = await startLlmcache().then(remember);
  const empty = await startEmptyServer().then(remember);
  const servers = { llmcacheAddress: llmcache.address, llmcachePid: llmcache.child.pid!, redisPort: redis.port, redisPid: redis.child.pid! };

  const parts: Part[] = [
    { name: "client", steps: CLIENT_STEPS, run: (step, total) => clientBench({ ...servers, ...settings, step, total }) },
    {
      name: "cache-work",
      steps: cacheWorkSteps(settings.cacheWorkSizes.length),
      run: (step, total) => cacheWorkBench({ ...servers, ...settings, sizes: settings.cacheWorkSizes, step, total }),
    },
    {
      name: "h2load",
      steps: 2,
      run: (step, total) => h2loadBench({ llmcacheAddress: llmcache.address, emptyAddress: empty.address, requests: settings.h2loadRequests, step, total }),
    },
    { name: "in-process", steps: 12, run: (step, total) => inProcessBench({ seconds: settings.inProcessSeconds, step, total }) },
    { name: "memory", steps: 2, run: (step, total) => memoryBench({ redisPort: redis.port, entries: settings.memoryEntries, step, total }) },
    { name: "langchain", steps: LANGCHAIN_STEPS, run: (step, total) => langchainBench({ ...servers, ...settings, step, total }) },
    { name: "python", steps: PYTHON_STEPS, run: (step, total) => pythonBench({ ...servers, seconds: settings.seconds, step, total }) },
    {
      name: "single-flight",
      steps: SINGLE_FLIGHT_STEPS,
      run: (step, total) => singleFlightBench({ llmcacheAddress: llmcache.address, rounds: settings.bursts, step, total }),
    },
    {
      name: "redis-store",
      steps: REDIS_STORE_STEPS,
      run: (step, total) => redisStoreBench({ redisPort: redis.port, redisPid: redis.child.pid!, seconds: settings.seconds, warmupSeconds: settings.warmupSeconds, step, total }),
    },
    {
      name: "entry-count",
      steps: entryCountSteps(slow.entryCounts),
      slow: true,
      run: (step, total) => entryCountBench({ counts: slow.entryCounts, seconds: settings.seconds, warmupSeconds: settings.warmupSeconds, step, total }),
    },
    {
      name: "churn",
      steps: CHURN_STEPS,
      slow: true,
      run: (step, total) => churnBench({ entries: slow.churnEntries, largeEntries: slow.churnLargeEntries, step, total }),
    },
  ];
  const only = values.only?.split(",").map((name) => name.trim());
  const unknown = only?.filter((name) => !parts.some((part) => part.name === name)) ?? [];
  if (unknown.length > 0) throw new Error(`--only: no part named ${unknown.join(", ")}; the parts are ${parts.map((part) => part.name).join(", ")}`);
  const chosen = parts.filter((part) => (only ? only.includes(part.name) : !(quick && part.slow)));
  const total = chosen.reduce((sum, part) => sum + part.steps, 0);

  let rows: Row[] = [];
  let step = 0;
  for (const part of chosen) {
    rows.push(...(await part.run(step, total)));
    step += part.steps;
  }
  process.stderr.write("\n");
  rows = withRatios(rows);

  const report: Report = {
    startedAt,
    quick,
    machine: {
      cpus: cpus().length,
      node: process.version,
      redis: spawnSync("redis-server", ["--version"], { encoding: "utf8" }).stdout.trim(),
      h2load: spawnSync("h2load", ["--version"], { encoding: "utf8" }).stdout?.trim() ?? "not installed",
    },
    rows,
    targets: targets(rows),
  };
  mkdirSync(values.out!, { recursive: true });
  writeFileSync(join(values.out!, "results.json"), `${JSON.stringify(report, null, 2)}\n`);
  writeFileSync(join(values.out!, "chart.svg"), drawChart(report));
  console.log(formatTables(report));
  console.log(`\nwrote ${join(values.out!, "results.json")} and ${join(values.out!, "chart.svg")}`);
} finally {
  for (const process of started) await process.stop();
}

function remember(running: RunningProcess): RunningProcess {
  started.push(running);
  return running;
}

function targets(rows: Row[]): Target[] {
  const hit500 = (callers: string) => `lookup hit · 500 B · ${callers}`;
  const client = (callers: string, system: string) => findRow(rows, "client", hit500(callers), system);
  const ran = (section: string) => rows.some((row) => row.section === section);
  const list: Target[] = [];
  const add = (name: string, ratio: number, goal: string, met: boolean, detail: string) => list.push({ name, ratio, goal, met, detail });

  if (ran("client")) {
    const autoBatched = client("64 callers", "llmcache auto-batched").value / client("64 callers", "ioredis auto-pipelining").value;
    add("lookups/s, auto-batching client, 64 callers", autoBatched, "≥ 1.0× ioredis auto-pipelining", autoBatched >= 1, hit500("64 callers"));

    const p50 = client("1 caller", "llmcache auto-batched").p50! / client("1 caller", "ioredis").p50!;
    add("p50 latency, 1 caller", p50, "≤ 1.5× ioredis", p50 <= 1.5, `${hit500("1 caller")}, auto-batched client`);
  }

  const h2load = rows.find((row) => row.section === "h2load" && row.system === "llmcache");
  if (h2load?.ratio !== undefined) add("unary Lookup under h2load", h2load.ratio, "≥ 0.9× empty handler", h2load.ratio >= 0.9, h2load.scenario);

  if (ran("client")) {
    const batch = client("64 callers", "llmcache batch").value / client("64 callers", "ioredis").value;
    add("batched lookups, keys/s", batch, "≥ 1.0× ioredis GET/s", batch >= 1, `${hit500("64 callers")}, 100 keys per call`);
    const pipelined = client("64 callers", "llmcache batch").value / client("64 callers", "ioredis pipeline").value;
    add("batched lookups, keys/s, against a pipeline", pipelined, "≥ 1.0× ioredis pipeline of 100 GETs", pipelined >= 1, `${hit500("64 callers")}, 100 keys per call`);
  }

  for (const bytes of ["500 B", "8 KiB"]) {
    const scenario = `lookup hit · ${bytes} · 64 callers`;
    if (rows.some((row) => row.section === "cache work" && row.scenario === scenario)) {
      const work = (system: string) => findRow(rows, "cache work", scenario, system).value;
      const ratio = work("llmcache auto-batched") / work("ioredis auto-pipelining cache (sha256 key, JSON)");
      add(`lookups/s against ioredis doing a cache's work, ${bytes}`, ratio, "≥ 1.0× ioredis auto-pipelining + key + JSON", ratio >= 1, scenario);
    }
  }

  if (ran("in-process")) {
    const inProcess = findRow(rows, "in-process", "lookup hit · 500 B", "llmcache InMemoryCache").ratio!;
    add("in-process lookups/s", inProcess, "≥ 2.0× @langchain/core", inProcess >= 2, "lookup hit · 500 B, async API");
  }

  if (ran("langchain")) {
    const invoke = rows.find((row) => row.section === "langchain" && row.scenario.startsWith("model.invoke") && row.system === "llmcache LangChainCache")!;
    add("LangChain JS model.invoke with a cache hit, 64 callers", invoke.ratio!, "≥ 2.0× @langchain/community RedisCache", invoke.ratio! >= 2, invoke.scenario);
    const lookupOf = (system: string) => rows.find((row) => row.section === "langchain" && row.scenario.startsWith("cache.lookup") && row.system === system)!.value;
    const adapter = lookupOf("llmcache LangChainCache") / lookupOf("llmcache CacheClient (no adapter)");
    add("LangChainCache over a bare CacheClient", adapter, "≥ 0.9× (overhead ≤ 10%)", adapter >= 0.9, "cache.lookup, hit · 500 B · 64 callers");
  }

  const python = rows.find((row) => row.section === "python" && row.ratio !== undefined);
  if (python) add("Python CacheClient.alookup, 64 tasks", python.ratio!, "≥ 1.0× redis-py asyncio GET + json.loads", python.ratio! >= 1, python.scenario);

  if (ran("single flight")) {
    const burstOf = (system: string) => rows.find((row) => row.section === "single flight" && row.system === system)!;
    const coalesced = burstOf("llmcache getOrCompute");
    const uncoalesced = burstOf("no single flight (alookup, model, aupdate)");
    add(
      "single flight: model calls in a burst of 64 on one cold key",
      coalesced.value / uncoalesced.value,
      "1 model call instead of 64",
      coalesced.value === 1,
      `${coalesced.value} with getOrCompute, ${uncoalesced.value} without, per burst`,
    );
    const slowest = Number(coalesced.note!.match(/slowest caller ([\d.]+) ms/)![1]);
    add(
      "single flight: slowest caller of the burst",
      slowest / (MODEL_MS + 5),
      `≤ model call + 5 ms (${MODEL_MS + 5} ms)`,
      slowest <= MODEL_MS + 5,
      `slowest caller ${slowest} ms, p99 ${(coalesced.p99! / 1000).toFixed(1)} ms`,
    );
  }

  const memory = rows.find((row) => row.section === "memory" && row.system === "llmcache resident");
  if (memory?.ratio !== undefined) add("memory per entry", memory.ratio, "≤ 1.0× redis-server used_memory", memory.ratio <= 1, memory.scenario);

  if (ran("redis store")) {
    const storeRow = (callers: string, system: string) => findRow(rows, "redis store", hit500(callers), system);
    const tier = storeRow("64 callers", "llmcache on Redis").value / storeRow("64 callers", "node-redis").value;
    add("lookups/s through a replica on Redis, 64 callers", tier, "≥ 0.5× node-redis GET on the same Redis", tier >= 0.5, `${hit500("64 callers")}, auto-batched client`);
    const near = storeRow("1 caller", "llmcache on Redis, near cache").p50! / storeRow("1 caller", "ioredis").p50!;
    add("p50 latency with the near cache, 1 caller", near, "≤ 1.0× ioredis GET", near <= 1, `${hit500("1 caller")}, hot set of ${KEYS} entries`);
    const clientNear = storeRow("1 caller", "llmcache on Redis, near cache + client near cache").p50! / storeRow("1 caller", "ioredis").p50!;
    add(
      "p50 latency with the client's near cache too, 1 caller",
      clientNear,
      "≤ 1.0× ioredis GET",
      clientNear <= 1,
      `${hit500("1 caller")}, hot set of ${KEYS} entries, CacheClient nearCache`,
    );
  }

  const largest = rows.filter((row) => row.section === "entry count").at(-1);
  if (largest?.ratio !== undefined) {
    const anchor = findRow(rows, "entry count", largest.scenario, largest.anchor!);
    add(`lookups/s with ${largest.system}`, largest.ratio, `≥ 0.8× ${anchor.system} (≤ 20% slower)`, largest.ratio >= 0.8, largest.scenario);
    const p99 = largest.p99! / anchor.p99!;
    add(`p99 latency with ${largest.system}`, p99, `≤ 1.2× ${anchor.system} (≤ 20% slower)`, p99 <= 1.2, `${largest.p99} µs against ${anchor.p99} µs`);
  }
  return list;
}
