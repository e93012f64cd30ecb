import { setTimeout as sleep } from "node:timers/promises";
import { FakeListChatModel } from "@langchain/core/utils/testing";
import * as hdr from "hdr-histogram-js";
import { CacheClient, type Generation } from "../src/index.js";
import { LangChainCache } from "../src/langchain/index.js";
import { progress, type Row } from "./results.js";
import { LLM_STRING } from "./workload.js";

export const CALLERS = 64;
export const MODEL_MS = 200;
const NAMESPACE = "bench-single-flight";

/** One way of answering a burst: each caller's path from its miss to its answer, given a model to call. */
interface BurstSystem {
  name: string;
  answer(prompt: string, model: () => Promise<Generation[]>): Promise<unknown>;
}

/**
 * The burst single flight exists for: 64 callers ask for the same cold key
 * at once, and the model takes 200 ms. Without single flight each caller
 * misses, calls the model and stores; with it, one calls the model and the
 * others wait for its fill. Each round uses a new key; the figures are the
 * model calls per burst and each caller's time from its request to its
 * answer, over all rounds.
 */
export async function singleFlightBench(options: { llmcacheAddress: string; rounds: number; step: number; total: number }): Promise<Row[]> {
  const client = new CacheClient({ address: options.llmcacheAddress });
  const lease = { leaseMs: 5_000, waitMs: 5_000 };
  const systems: BurstSystem[] = [
    {
      name: "no single flight (alookup, model, aupdate)",
      async answer(prompt, model) {
        const found = await client.alookup(prompt, LLM_STRING, { namespace: NAMESPACE });
        if (found) return found;
        const generations = await model();
        await client.aupdate(prompt, LLM_STRING, generations, { namespace: NAMESPACE });
        return generations;
      },
    },
    { name: "llmcache getOrCompute", answer: (prompt, model) => client.getOrCompute(prompt, LLM_STRING, model, { namespace: NAMESPACE, ...lease }) },
  ];
  const rows: Row[] = [];
  let step = options.step;
  const scenario = `burst · ${CALLERS} callers · 1 cold key · model ${MODEL_MS} ms`;
  for (const system of systems) {
    progress(++step, options.total, `single flight: ${system.name}`);
    const burst = await measureBursts(options.rounds, (round, model) => {
      const prompt = `burst ${system.name} ${round} ${Date.now()}`;
      return Array.from({ length: CALLERS }, () => system.answer(prompt, model));
    });
    rows.push(burstRow(scenario, system.name, systems[0]!.name === system.name ? undefined : systems[0]!.name, burst));
  }

  progress(++step, options.total, "single flight: LangChainCache singleFlight · model.invoke");
  const invoke = await measureBursts(options.rounds, (round, model) => {
    const cache = new LangChainCache(client, { namespace: NAMESPACE, singleFlight: lease });
    // A fake chat model whose every call goes through `model`, so that calls are counted and take MODEL_MS.
    const chat = new CountedChatModel(model, cache);
    const prompt = `invoke burst ${round} ${Date.now()}`;
    return Array.from({ length: CALLERS }, () => chat.invoke(prompt));
  });
  rows.push(burstRow(scenario, "LangChainCache singleFlight · model.invoke", systems[0]!.name, invoke));
  await client.close();
  return rows;
}

/** How many progress steps singleFlightBench takes. */
export const SINGLE_FLIGHT_STEPS = 3;

interface BurstResult {
  modelCallsPerBurst: number;
  p50: number;
  p99: number;
  max: number;
}

async function measureBursts(rounds: number, burst: (round: number, model: () => Promise<Generation[]>) => Promise<unknown>[]): Promise<BurstResult> {
  const histogram = hdr.build({ lowestDiscernibleValue: 1, highestTrackableValue: 60_000_000, numberOfSignificantValueDigits: 3 });
  let modelCalls = 0;
  let max = 0;
  const model = async (): Promise<Generation[]> => {
    modelCalls++;
    await sleep(MODEL_MS);
    return [{ text: "the model's answer" }];
  };
  // One burst first, not measured: the paths' first run pays for the JIT, as every other figure's warm-up does.
  await Promise.all(burst(-1, model));
  modelCalls = 0;
  for (let round = 0; round < rounds; round++) {
    const started = performance.now();
    const callers = burst(round, model).map((answered) =>
      answered.then(() => {
        const micros = Math.round((performance.now() - started) * 1000);
        histogram.recordValue(micros);
        max = Math.max(max, micros);
      }),
    );
    await Promise.all(callers);
  }
  const result = { modelCallsPerBurst: modelCalls / rounds, p50: histogram.getValueAtPercentile(50), p99: histogram.getValueAtPercentile(99), max };
  histogram.destroy();
  return result;
}

function burstRow(scenario: string, system: string, anchor: string | undefined, burst: BurstResult): Row {
  return {
    section: "single flight",
    scenario,
    system,
    anchor,
    unit: "model calls/burst",
    value: burst.modelCallsPerBurst,
    p50: burst.p50,
    p99: burst.p99,
    note: `slowest caller ${(burst.max / 1000).toFixed(1)} ms`,
  };
}

/** FakeListChatModel whose answers come from a counted, slow model function. */
class CountedChatModel extends FakeListChatModel {
  readonly #model: () => Promise<Generation[]>;

  constructor(model: () => Promise<Generation[]>, cache: LangChainCache) {
    super({ responses: ["the model's answer"], cache });
    this.#model = model;
  }

  override async _generate(messages: Parameters<FakeListChatModel["_generate"]>[0], options: Parameters<FakeListChatModel["_generate"]>[1]) {
    await this.#model();
    return super._generate(messages, options);
  }
}
