import { copyGenerations, type Generation } from "../generation.js";
import { isPlainObject } from "../json.js";
import { UsageError } from "./settings.js";

const FLAG = "--generations";

/**
 * The list of generations given as JSON to `update --generations`. Python's
 * LangChain writes `generation_info` where the library says `generationInfo`:
 * the command line takes either, and translates. A value that is not a list
 * of generations is a UsageError naming the flag and the place in the list.
 */
export function parseGenerationsFlag(text: string): Generation[] {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    throw new UsageError(`${FLAG} is not valid JSON: ${error instanceof Error ? error.message : error}`);
  }
  const snakeCased = new Set<number>();
  if (Array.isArray(value)) {
    value = value.map((generation: unknown, i) => {
      if (!isPlainObject(generation) || !Object.hasOwn(generation, "generation_info")) return generation;
      if (Object.hasOwn(generation, "generationInfo")) throw new UsageError(`${FLAG}[${i}] has both generation_info and generationInfo: give one`);
      snakeCased.add(i);
      const { generation_info: generationInfo, ...rest } = generation;
      return { ...rest, generationInfo };
    });
  }
  try {
    return copyGenerations(value, FLAG);
  } catch (error) {
    if (!(error instanceof Error)) throw error;
    // Name the field as the caller wrote it.
    const place = /^--generations\[(\d+)\]\.generationInfo\b/.exec(error.message);
    const message = place && snakeCased.has(Number(place[1])) ? error.message.replace(".generationInfo", ".generation_info") : error.message;
    throw new UsageError(message, { cause: error });
  }
}
