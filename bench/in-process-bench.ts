import assert from "node:assert/strict";
import { InMemoryCache as LangChainInMemoryCache } from "@langchain/core/caches";
import { InMemoryCache } from "../src/index.js";
import { progress, type Row } from "./results.js";
import { generationOf, KEYS, LLM_STRING, missPromptOf, promptOf } from "./workload.js";

type Operation = "lookup hit" | "lookup miss" | "update";

/**
 * The in-process caches, each through its async API (LangChain JS has no
 * other), on the same keys and values. Throughput only: timing each call
 * would cost more than the call.
 */
export async function inProcessBench(options: { seconds: number; step: number; total: number }): Promise<Row[]> {
  const rows: Row[] = [];
  let step = options.step;
  for (const bytes of [500, 8192]) {
    const ours = new InMemoryCache();
    const theirs = new LangChainInMemoryCache();
    for (let i = 0; i < KEYS; i++) {
      ours.update(promptOf(i), LLM_STRING, generationOf(bytes, i));
      await theirs.update(promptOf(i), LLM_STRING, generationOf(bytes, i));
    }
    assert.deepEqual(await ours.alookup(promptOf(7), LLM_STRING), generationOf(bytes, 7));
    assert.deepEqual(await theirs.lookup(promptOf(7), LLM_STRING), generationOf(bytes, 7));
    assert.equal(await ours.alookup(missPromptOf(7), LLM_STRING), null);
    // Keys and values are built once, outside the timed loop.
    const values = Array.from({ length: KEYS }, (_, i) => generationOf(bytes, i));
    const hits = Array.from({ length: KEYS }, (_, i) => promptOf(i));
    const misses = Array.from({ length: KEYS }, (_, i) => missPromptOf(i));
    const systems: [string, (operation: Operation, i: number) => Promise<unknown>][] = [
      ["@langchain/core InMemoryCache", (operation, i) =>
        operation === "update" ? theirs.update(hits[i]!, LLM_STRING, values[i]!) : theirs.lookup((operation === "lookup hit" ? hits : misses)[i]!, LLM_STRING)],
      ["llmcache InMemoryCache", (operation, i) =>
        operation === "update" ? ours.aupdate(hits[i]!, LLM_STRING, values[i]!) : ours.alookup((operation === "lookup hit" ? hits : misses)[i]!, LLM_STRING)],
    ];
    for (const operation of ["lookup hit", "lookup miss", "update"] as const) {
      const scenario = `${operation} · ${bytes === 500 ? "500 B" : "8 KiB"}`;
      for (const [system, run] of systems) {
        progress(++step, options.total, `in-process: ${system} · ${scenario}`);
        rows.push({
          section: "in-process",
          scenario,
          system,
          anchor: system.startsWith("@langchain") ? undefined : "@langchain/core InMemoryCache",
          unit: "ops/s",
          value: await opsPerSecond((i) => run(operation, i), options.seconds),
        });
      }
    }
  }
  return rows;
}

async function opsPerSecond(operation: (i: number) => Promise<unknown>, seconds: number): Promise<number> {
  for (let i = 0; i < 20_000; i++) await operation(i % KEYS); // warm-up: let the JIT settle
  let done = 0;
  const start = performance.now();
  const stopAt = start + seconds * 1000;
  while (performance.now() < stopAt) {
    for (let k = 0; k < 1000; k++) await operation(done++ % KEYS);
  }
  return done / ((performance.now() - start) / 1000);
}
