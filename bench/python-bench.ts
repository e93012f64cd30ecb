import { execFile } from "node:child_process";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { progress, type Row } from "./results.js";

const PYTHON = fileURLToPath(new URL("../../.venv/bin/python", import.meta.url));
const SCRIPT = fileURLToPath(new URL("../../bench/python/alookup_bench.py", import.meta.url));
const ANCHOR = "redis-py asyncio GET + json.loads";

/**
 * The Python client against redis-py on the same redis-server, 64 asyncio
 * tasks looking up a 500 B answer (bench/python/alookup_bench.py, run in the
 * venv that scripts/python-env.sh makes).
 */
export async function pythonBench(options: { llmcacheAddress: string; redisPort: number; seconds: number; step: number; total: number }): Promise<Row[]> {
  progress(options.step + 1, options.total, "python: CacheClient.alookup and redis-py, 64 tasks");
  const { stdout } = await promisify(execFile)(PYTHON, [SCRIPT, options.llmcacheAddress, String(options.redisPort), String(options.seconds * 2)], {
    timeout: 120_000,
  });
  const rates = JSON.parse(stdout) as Record<string, number>;
  return Object.entries(rates).map(([system, value]) => ({
    section: "python",
    scenario: "lookup hit · 500 B · 64 asyncio tasks",
    system,
    anchor: system === ANCHOR ? undefined : ANCHOR,
    unit: "lookups/s",
    value,
  }));
}

export const PYTHON_STEPS = 1;
