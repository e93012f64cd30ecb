import { spawnSync } from "node:child_process";
import { mkdirSync, writeFileSync } from "node:fs";
import { cpus } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { clientBench } from "./client-bench.js";
import { h2loadBench } from "./h2load-bench.js";
import { inProcessBench } from "./in-process-bench.js";
import { LANGCHAIN_STEPS, langchainBench } from "./langchain-bench.js";
import { PYTHON_STEPS, pythonBench } from "./python-bench.js";
import { memoryBench } from "./memory-bench.js";
import { MODEL_MS, SINGLE_FLIGHT_STEPS, singleFlightBench } from "./single-flight-bench.js";
import { startEmptyServer, startLlmcache, startRedis, type RunningProcess } from "./processes.js";
import { drawChart, formatTables } from "./report.js";
import { findRow, withRatios, type Report, type Row, type Target } from "./results.js";

// `npm run bench [-- --quick] [-- --out DIR]`: starts everything it compares
// on loopback, runs each in turn, prints a table, and writes results.json and
// chart.svg. Timings are reported, never asserted: a run's ratios are the
// result, and `--quick` exists so that CI can keep this script from rotting.
const { values } = parseArgs({ options: { quick: { type: "boolean", default: false }, out: { type: "string", default: "bench/results" } } });
const quick = values.quick!;
const settings = quick
  ? { seconds: 0.25, warmupSeconds: 0.1, inProcessSeconds: 0.2, h2loadRequests: 5_000, memoryEntries: 20_000, bursts: 2 }
  : { seconds: 2.5, warmupSeconds: 0.5, inProcessSeconds: 1.5, h2loadRequests: 200_000, memoryEntries: 1_000_000, bursts: 20 };

const CLIENT_STEPS = 60;
const TOTAL = CLIENT_STEPS + 2 + 12 + 2 + LANGCHAIN_STEPS + PYTHON_STEPS + SINGLE_FLIGHT_STEPS;

const started: RunningProcess[] = [];
try {
  const startedAt = new Date().toISOString();
  const redis = await startRedis().then(remember);
  const llmcache = await startLlmcache().then(remember);
  const empty = await startEmptyServer().then(remember);

  let rows: Row[] = [];
  rows.push(...(await clientBench({ llmcacheAddress: llmcache.address, redisPort: redis.port, ...settings })));
  rows.push(...(await h2loadBench({ llmcacheAddress: llmcache.address, emptyAddress: empty.address, requests: settings.h2loadRequests, step: CLIENT_STEPS, total: TOTAL })));
  rows.push(...(await inProcessBench({ seconds: settings.inProcessSeconds, step: CLIENT_STEPS + 2, total: TOTAL })));
  rows.push(...(await memoryBench({ redisPort: redis.port, entries: settings.memoryEntries, step: CLIENT_STEPS + 14, total: TOTAL })));
  rows.push(...(await langchainBench({ llmcacheAddress: llmcache.address, redisPort: redis.port, ...settings, step: CLIENT_STEPS + 16, total: TOTAL })));
  rows.push(...(await pythonBench({ llmcacheAddress: llmcache.address, redisPort: redis.port, seconds: settings.seconds, step: CLIENT_STEPS + 16 + LANGCHAIN_STEPS, total: TOTAL })));
  const singleFlightStep = CLIENT_STEPS + 16 + LANGCHAIN_STEPS + PYTHON_STEPS;
  rows.push(...(await singleFlightBench({ llmcacheAddress: llmcache.address, rounds: settings.bursts, step: singleFlightStep, total: TOTAL })));
  process.stderr.write("\n");
  rows = withRatios(rows);

  const report: Report = {
    startedAt,
    quick,
    machine: {
      cpus: cpus().length,
      node: process.version,
      redis: spawnSync("redis-server", ["--version"], { encoding: "utf8" }).stdout.trim(),
      h2load: spawnSync("h2load", ["--version"], { encoding: "utf8" }).stdout.trim(),
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
  const list: Target[] = [];
  const add = (name: string, ratio: number, goal: string, met: boolean, detail: string) => list.push({ name, ratio, goal, met, detail });

  const autoBatched = client("64 callers", "llmcache auto-batched").value / client("64 callers", "ioredis auto-pipelining").value;
  add("lookups/s, auto-batching client, 64 callers", autoBatched, "≥ 1.0× ioredis auto-pipelining", autoBatched >= 1, hit500("64 callers"));

  const p50 = client("1 caller", "llmcache auto-batched").p50! / client("1 caller", "ioredis").p50!;
  add("p50 latency, 1 caller", p50, "≤ 1.5× ioredis", p50 <= 1.5, `${hit500("1 caller")}, auto-batched client`);

  const h2load = rows.find((row) => row.section === "h2load" && row.system === "llmcache");
  if (h2load?.ratio !== undefined) add("unary Lookup under h2load", h2load.ratio, "≥ 0.9× empty handler", h2load.ratio >= 0.9, h2load.scenario);

  const batch = client("64 callers", "llmcache batch").value / client("64 callers", "ioredis").value;
  add("batched lookups, keys/s", batch, "≥ 1.0× ioredis GET/s", batch >= 1, `${hit500("64 callers")}, 100 keys per call`);

  const inProcess = findRow(rows, "in-process", "lookup hit · 500 B", "llmcache InMemoryCache").ratio!;
  add("in-process lookups/s", inProcess, "≥ 2.0× @langchain/core", inProcess >= 2, "lookup hit · 500 B, async API");

  const invoke = rows.find((row) => row.section === "langchain" && row.scenario.startsWith("model.invoke") && row.system === "llmcache LangChainCache")!;
  add("LangChain JS model.invoke with a cache hit, 64 callers", invoke.ratio!, "≥ 2.0× @langchain/community RedisCache", invoke.ratio! >= 2, invoke.scenario);
  const lookupOf = (system: string) => rows.find((row) => row.section === "langchain" && row.scenario.startsWith("cache.lookup") && row.system === system)!.value;
  const adapter = lookupOf("llmcache LangChainCache") / lookupOf("llmcache CacheClient (no adapter)");
  add("LangChainCache over a bare CacheClient", adapter, "≥ 0.9× (overhead ≤ 10%)", adapter >= 0.9, "cache.lookup, hit · 500 B · 64 callers");

  const python = rows.find((row) => row.section === "python" && row.ratio !== undefined)!;
  add("Python CacheClient.alookup, 64 tasks", python.ratio!, "≥ 1.0× redis-py asyncio GET + json.loads", python.ratio! >= 1, python.scenario);

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

  const memory = rows.find((row) => row.section === "memory" && row.system === "llmcache resident");
  if (memory?.ratio !== undefined) add("memory per entry", memory.ratio, "≤ 1.0× redis-server used_memory", memory.ratio <= 1, memory.scenario);
  return list;
}
