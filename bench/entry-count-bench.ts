import assert from "node:assert/strict";
import { CacheClient, type Generation } from "../src/index.js";
import { runLoad, type LoadResult } from "./load.js";
import { residentBytes, startLlmcache, type RunningProcess } from "./processes.js";
import { progress, type Row } from "./results.js";
import { LLM_STRING } from "./workload.js";

const CALLERS = 64;
const FILL_BATCH = 2_000;
const FILLS_IN_FLIGHT = 4;
const ROUNDS = 3;
const VALUE_BYTES = 64;

const promptOf = (i: number) => `entry-count sweep, prompt #${i} `.padEnd(64, ".");
const generationOf = (i: number): Generation[] => [{ text: `answer ${i} `.padEnd(VALUE_BYTES, "x") }];
const countLabel = (count: number) => (count >= 1_000_000 ? `${count / 1_000_000}M` : `${count / 1_000}k`) + " entries";

/**
 * Whether lookups slow down as the store grows: 64 callers of the
 * auto-batching client looking up entries picked at random among all the
 * server holds (64 B prompt, shared llm_string, 64 B answer), with the
 * server holding counts[0] entries (the anchor) and then each larger count.
 * Two servers: one kept at counts[0], one filled (through BatchUpdate) to
 * each larger count in turn; at each count they are measured in alternating
 * rounds, so that what else the machine does weighs on both alike. A row's
 * figures are the medians of its rounds.
 */
export async function entryCountBench(options: { counts: number[]; seconds: number; warmupSeconds: number; step: number; total: number }): Promise<Row[]> {
  const [smallCount, ...largerCounts] = options.counts as [number, ...number[]];
  const scenario = `lookup hit · ${VALUE_BYTES} B · ${CALLERS} callers, auto-batched · random keys`;
  const servers: RunningProcess[] = [];
  const clients: CacheClient[] = [];
  const rows: Row[] = [];
  let step = options.step;
  try {
    const open = async () => {
      const server = await startLlmcache();
      servers.push(server);
      const client = new CacheClient({ address: server.address, timeoutMs: 60_000 });
      clients.push(client);
      return { server, client, held: 0 };
    };
    const small = await open();
    const large = await open();
    await fill(small.client, 0, smallCount);
    small.held = smallCount;
    // Both servers' and this process's lookup paths warmed up, not measured: the first round would otherwise pay for the JIT.
    await lookups(small.client, smallCount, options);
    const smallRuns: LoadResult[] = [];
    for (const count of largerCounts) {
      progress(++step, options.total, `entry count: filling a server to ${countLabel(count)}`);
      const started = performance.now();
      await fill(large.client, large.held, count);
      const fillSeconds = (performance.now() - started) / 1000;
      const filledPerSecond = (count - large.held) / fillSeconds;
      large.held = count;
      progress(++step, options.total, `entry count: ${countLabel(smallCount)} and ${countLabel(count)}, ${ROUNDS} alternating rounds`);
      await lookups(large.client, count, { seconds: options.warmupSeconds, warmupSeconds: 0 });
      const runs: LoadResult[] = [];
      for (let round = 0; round < ROUNDS; round++) {
        smallRuns.push(await lookups(small.client, smallCount, options));
        runs.push(await lookups(large.client, count, options));
      }
      const { total } = await large.client.astats();
      assert.equal(total.entries, count, "the server holds every entry");
      rows.push({
        ...medianRow(scenario, countLabel(count), runs),
        anchor: countLabel(smallCount),
        note:
          `rounds ${runs.map((run) => Math.round(run.perSecond)).join(", ")}/s, p99 ${runs.map((run) => run.p99).join(", ")} µs; ` +
          `filled at ${Math.round(filledPerSecond).toLocaleString("en")} entries/s; server resident ${(residentBytes(large.server.child.pid!) / 2 ** 20).toFixed(0)} MiB`,
      });
    }
    rows.unshift({
      ...medianRow(scenario, countLabel(smallCount), smallRuns),
      note: `rounds ${smallRuns.map((run) => Math.round(run.perSecond)).join(", ")}/s, p99 ${smallRuns.map((run) => run.p99).join(", ")} µs`,
    });
  } finally {
    for (const client of clients) await client.close();
    for (const server of servers) await server.stop();
  }
  const anchor = rows[0]!;
  return rows.map((row) => (row === anchor ? row : { ...row, note: `p99 ${(row.p99! / anchor.p99!).toFixed(2)}× ${anchor.system}'s; ${row.note}` }));
}

/** How many progress steps entryCountBench takes. */
export const entryCountSteps = (counts: number[]) => 2 * (counts.length - 1);

/** Stores entries [from, to) through BatchUpdate, a few calls in flight. */
async function fill(client: CacheClient, from: number, to: number): Promise<void> {
  let next = from;
  const worker = async () => {
    while (next < to) {
      const first = next;
      next = Math.min(to, next + FILL_BATCH);
      await client.aupdateMany(Array.from({ length: next - first }, (_, k) => [promptOf(first + k), LLM_STRING, generationOf(first + k)] as const));
    }
  };
  await Promise.all(Array.from({ length: FILLS_IN_FLIGHT }, worker));
  // A fast wrong answer is no result: the last entry is there, and right.
  assert.deepEqual(await client.alookup(promptOf(to - 1), LLM_STRING), generationOf(to - 1));
}

function lookups(client: CacheClient, count: number, options: { seconds: number; warmupSeconds: number }): Promise<LoadResult> {
  return runLoad(
    async () => {
      const found = await client.alookup(promptOf(Math.floor(Math.random() * count)), LLM_STRING);
      if (found === null) throw new Error("a lookup of a stored entry missed");
    },
    { callers: CALLERS, seconds: options.seconds, warmupSeconds: options.warmupSeconds },
  );
}

function medianRow(scenario: string, system: string, runs: LoadResult[]): Row {
  const median = (values: number[]) => values.sort((a, b) => a - b)[Math.floor(values.length / 2)]!;
  return {
    section: "entry count",
    scenario,
    system,
    unit: "lookups/s",
    value: median(runs.map((run) => run.perSecond)),
    p50: median(runs.map((run) => run.p50)),
    p99: median(runs.map((run) => run.p99)),
    p999: median(runs.map((run) => run.p999)),
  };
}
