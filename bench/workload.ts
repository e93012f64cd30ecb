import type { Generation } from "../src/index.js";

/** What the benchmark stores: LLM-shaped keys and values of a given size. */
export const LLM_STRING = `model='gpt-5.4-mini' temperature=0.0 max_tokens=1024 ${"stop=None ".repeat(26)}`.slice(0, 300);
export const KEYS = 1000;

/** A prompt of about 200 bytes, different for every i. */
export function promptOf(i: number): string {
  return `Summarise the following support ticket #${i} in one sentence for the on-call engineer. `.padEnd(200, ".");
}

export function missPromptOf(i: number): string {
  return `never stored #${i} `.padEnd(200, "~");
}

/** A generation whose text has `bytes` bytes. */
export function generationOf(bytes: number, i = 0): Generation[] {
  return [{ text: `answer ${i}: `.padEnd(bytes, "lorem ipsum ") }];
}

/** The same text as a plain value, for Redis GET/SET. */
export function valueOf(bytes: number, i = 0): string {
  return generationOf(bytes, i)[0]!.text;
}

/** As LangChain's RedisCache stores a Generation: dumps() of it under the field "0". */
export function langchainRedisValue(bytes: number, i = 0): string {
  return JSON.stringify({
    lc: 1,
    type: "constructor",
    id: ["langchain", "schema", "output", "Generation"],
    kwargs: { text: valueOf(bytes, i), type: "Generation" },
  });
}
