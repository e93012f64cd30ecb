import { copyChatMessage, type ChatMessage } from "./chat-message.js";
import { checkString, copyJsonObject, describe, isPlainObject, memberPathOf, type JsonObject } from "./json.js";
import { checkGenerationNesting } from "./nesting.js";

/**
 * One output of a model, as LangChain JS writes it: a Generation, or a
 * ChatGeneration when `message` is set.
 */
export interface Generation {
  text: string;
  /** Provider details such as finish_reason, as JSON. */
  generationInfo?: JsonObject;
  message?: ChatMessage;
}

const GENERATION_FIELDS: ReadonlySet<string> = new Set(["text", "generationInfo", "message"]);

/** Refuses a key that is not a pair of strings (empty strings are valid keys). */
export function checkKey(prompt: unknown, llmString: unknown): void {
  checkString(prompt, "prompt");
  checkString(llmString, "llm_string");
}

/**
 * Checks that a value is a list of generations and returns a deep copy that
 * shares nothing with it, in the form a lookup gives back (see
 * copyChatMessage), so neither side can change the other's later.
 */
export function copyGenerations(value: unknown, path = "generations"): Generation[] {
  if (!Array.isArray(value)) throw new TypeError(`${path} must be an array, got ${describe(value)}`);
  return value.map((generation, i) => copyGeneration(generation, `${path}[${i}]`));
}

function copyGeneration(value: unknown, path: string): Generation {
  if (!isPlainObject(value)) throw new TypeError(`${path} must be an object, got ${describe(value)}`);
  for (const key of Object.keys(value)) {
    if (!GENERATION_FIELDS.has(key) && value[key] !== undefined) {
      throw new TypeError(`${memberPathOf(path, key)} is not a field of a generation (text, generationInfo, message)`);
    }
  }
  const { text, generationInfo, message } = value;
  const copy: Generation = { text: checkString(text, `${path}.text`) };
  if (generationInfo !== undefined && generationInfo !== null) {
    copy.generationInfo = copyJsonObject(generationInfo, `${path}.generationInfo`);
  }
  if (message !== undefined && message !== null) copy.message = copyChatMessage(message, `${path}.message`);
  checkGenerationNesting(copy, path);
  return copy;
}
