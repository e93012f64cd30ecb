import { CacheClient, type Generation } from "../src/index.js";
import { residentBytes } from "../test/helpers/memory.js";
import { startServerProcess } from "../test/helpers/server-process.js";
import { progress, type Row } from "./results.js";
import { LLM_STRING } from "./workload.js";

const MiB = 2 ** 20;
const BUDGET_MIB = 64;
const SAMPLE_MS = 100;
const IN_FLIGHT = 4;
const BUDGET = "--max-bytes budget";

type Entry = [prompt: string, llmString: string, generations: Generation[], namespace: string];

interface Shape {
  name: string;
  entry(i: number): Entry;
  /** Entries a call carries: whole BatchUpdates when they share a namespace, else auto-batched updates. */
  perCall: number;
  large?: boolean;
}

const text400 = [{ text: "x".repeat(400) }];
const SHAPES: Shape[] = [
  { name: "an llm_string each", entry: (i) => ["prompt".padEnd(200, "."), `model-${i}`.padEnd(100, "."), text400, ""], perCall: 1_000 },
  { name: "a prompt each", entry: (i) => [`prompt ${i}`.padEnd(200, "."), LLM_STRING, text400, ""], perCall: 1_000 },
  { name: "a namespace each", entry: (i) => [`p${i}`, "llm", [{ text: "v" }], `ns-${i}`], perCall: 1_000 },
  { name: "tiny values", entry: (i) => [`p${i}`, "llm", [{ text: "" }], ""], perCall: 1_000 },
  { name: "64 KiB values", entry: (i) => [`prompt ${i}`, LLM_STRING, [{ text: `${i} `.padEnd(64 * 1024, "x") }], ""], perCall: 16, large: true },
];

/**
 * Resident memory of a server under churn, started as a user would start it
 * from the README without reading its advice on heap flags: `--max-bytes
 * 64MiB`, Node's default flags, no NODE_OPTIONS. For each shape of entry a
 * fresh server takes at least `entries` distinct entries (`largeEntries` of
 * 64 KiB values) and three budgets' worth, evicting all along, while its
 * VmRSS is sampled every 100 ms. The
 * anchor is the budget itself: a ratio of 3 is a peak three times it.
 */
export async function churnBench(options: { entries: number; largeEntries: number; step: number; total: number }): Promise<Row[]> {
  const rows: Row[] = [];
  let step = options.step;
  for (const shape of SHAPES) {
    const entries = shape.large ? options.largeEntries : options.entries;
    const scenario = `churn · ${shape.name} · ${BUDGET_MIB} MiB budget`;
    progress(++step, options.total, `churn: ${shape.name}, ${entries.toLocaleString("en")} entries`);
    const server = await startServerProcess(["--max-bytes", `${BUDGET_MIB}MiB`, "--max-namespaces", "100000000", "--log-level", "warn"], { NODE_OPTIONS: undefined });
    const client = new CacheClient({ address: server.address, timeoutMs: 60_000 });
    const pid = server.child.pid!;
    const baseline = residentBytes(pid);
    let peak = baseline;
    const sampler = setInterval(() => (peak = Math.max(peak, residentBytes(pid))), SAMPLE_MS);
    try {
      const started = performance.now();
      const sent = await churn(client, shape, entries);
      const seconds = (performance.now() - started) / 1000;
      peak = Math.max(peak, residentBytes(pid));
      clearInterval(sampler);
      const { total } = await client.astats();
      rows.push(
        { section: "memory under churn", scenario, system: BUDGET, unit: "MiB", value: BUDGET_MIB },
        {
          section: "memory under churn",
          scenario,
          system: "llmcache peak resident",
          anchor: BUDGET,
          unit: "MiB",
          value: peak / MiB,
          note:
            `${shape.name}: peak − budget ${((peak - BUDGET_MIB * MiB) / MiB).toFixed(0)} MiB; resident ${(baseline / MiB).toFixed(0)} MiB at start, ` +
            `${(residentBytes(pid) / MiB).toFixed(0)} MiB at the end, holding ${total.entries.toLocaleString("en")} entries ` +
            `(${(total.bytes / MiB).toFixed(1)} MiB accounted, ${total.evictions.bytes.toLocaleString("en")} evicted); ` +
            `${sent.toLocaleString("en")} entries sent, ${Math.round(sent / seconds).toLocaleString("en")} updates/s${warnings(server.stderr())}`,
        },
      );
    } finally {
      clearInterval(sampler);
      await client.close();
      await server.stop();
    }
  }
  return rows;
}

/** How many progress steps churnBench takes. */
export const CHURN_STEPS = SHAPES.length;

/**
 * Sends the shape's entries, a few calls in flight, in rounds: at least
 * `count`, and on until the server has evicted at least twice what it holds
 * (three budgets' worth written). Returns how many it sent.
 */
async function churn(client: CacheClient, shape: Shape, count: number): Promise<number> {
  const round = Math.max(shape.perCall * IN_FLIGHT, Math.ceil(count / 20));
  let next = 0;
  const send = async (end: number) => {
    while (next < end) {
      const first = next;
      next = Math.min(end, next + shape.perCall);
      const batch = Array.from({ length: next - first }, (_, k) => shape.entry(first + k));
      if (batch.every(([, , , namespace]) => namespace === batch[0]![3])) {
        await client.aupdateMany(batch.map(([prompt, llmString, generations]) => [prompt, llmString, generations] as const), { namespace: batch[0]![3] });
      } else {
        await Promise.all(batch.map(([prompt, llmString, generations, namespace]) => client.aupdate(prompt, llmString, generations, { namespace })));
      }
    }
  };
  for (;;) {
    const end = next + round;
    await Promise.all(Array.from({ length: IN_FLIGHT }, () => send(end)));
    const { total } = await client.astats();
    if (next >= count && total.evictions.bytes > 0 && next >= 3 * total.entries) return next;
  }
}

/** The server's warnings, such as its advice on the heap limit, in a note. */
function warnings(stderr: string): string {
  const messages = [...stderr.matchAll(/"msg":"([^"]*)"/g)].map((match) => match[1]!);
  return messages.length > 0 ? `; the server warned: ${[...new Set(messages)].join(" | ")}` : "";
}
