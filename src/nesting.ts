import {
  INVALID_TOOL_CALL_FIELDS,
  KNOWN_MESSAGE_FIELDS,
  TOOL_CALL_CHUNK_FIELDS,
  TOOL_CALL_FIELDS,
  otherFields,
  USAGE_FIELDS,
  type ChatMessage,
} from "./chat-message.js";
import type { Generation } from "./generation.js";
import type { JsonObject, JsonValue } from "./json.js";

/**
 * How many protobuf message levels a Generation may hold below itself.
 * Python's protobuf (upb), Java's and C++'s refuse to parse a message
 * nested more than 101 levels deep, counting the outermost, and a stored
 * Generation travels deepest in a StreamResponse: StreamResponse,
 * StreamResult, LookupResponse, Generation. 101 - 4 = 97. An entry deeper
 * than this would be stored and then be unreadable by such clients.
 */
export const MAX_GENERATION_NESTING = 97;

/**
 * Refuses a generation whose JSON values (generation info, message kwargs,
 * metadata, extra fields, tool-call arguments, token details, content
 * blocks, artifact) nest deeper as protobuf than MAX_GENERATION_NESTING,
 * with a TypeError naming the deepest place, its depth and the limit.
 * In google.protobuf.Struct a JSON object costs three message levels (the
 * Struct, its map entry, the Value) and a list two (ListValue, Value).
 */
export function checkGenerationNesting(generation: Generation, path: string): void {
  const places: [string, number][] = [];
  if (generation.generationInfo) places.push(["generationInfo", structLevels(generation.generationInfo)]);
  if (generation.message) {
    for (const [place, levels] of messagePlaces(generation.message)) places.push([`message.${place}`, 1 + levels]);
  }
  for (const [place, levels] of places) {
    if (levels > MAX_GENERATION_NESTING) throw new TypeError(nestingProblem(`${path}.${place}`, levels));
  }
}

/** What is wrong with a place of a generation that nests `levels` levels, over the limit: the server says the same of the bytes. */
export function nestingProblem(place: string, levels: number): string {
  return (
    `${place} nests ${levels} protobuf message levels below its generation, over the limit of ${MAX_GENERATION_NESTING} ` +
    "(protobuf runtimes such as Python's refuse messages nested more than 101 levels deep)"
  );
}

/** Each place of a message that holds JSON, with the levels it takes below the ChatMessage. */
function messagePlaces(message: ChatMessage): [string, number][] {
  const places: [string, number][] = [];
  if (Array.isArray(message.content)) places.push(["content", listLevels(message.content)]);
  for (const key of ["additional_kwargs", "response_metadata"] as const) {
    const value = message[key];
    if (value) places.push([key, structLevels(value)]);
  }
  const extra = otherFields(message, KNOWN_MESSAGE_FIELDS);
  if (extra) places.push(["extra fields", structLevels(extra)]);
  message.tool_calls?.forEach((call, i) => places.push([`tool_calls[${i}].args`, 1 + structLevels(call.args)]));
  for (const key of ["input_token_details", "output_token_details"] as const) {
    const details = message.usage_metadata?.[key];
    if (details) places.push([`usage_metadata.${key}`, 1 + structLevels(details)]);
  }
  // The other fields of a tool call or of the usage: a Struct one level below the message.
  const lists = [
    ["tool_calls", message.tool_calls, TOOL_CALL_FIELDS],
    ["invalid_tool_calls", message.invalid_tool_calls, INVALID_TOOL_CALL_FIELDS],
    ["tool_call_chunks", message.tool_call_chunks, TOOL_CALL_CHUNK_FIELDS],
  ] as const;
  for (const [key, items, known] of lists) {
    items?.forEach((item, i) => {
      const other = otherFields(item, known);
      if (other) places.push([`${key}[${i}].extra fields`, 1 + structLevels(other)]);
    });
  }
  const usageExtra = message.usage_metadata && otherFields(message.usage_metadata, USAGE_FIELDS);
  if (usageExtra) places.push(["usage_metadata.extra fields", 1 + structLevels(usageExtra)]);
  if (message.artifact !== undefined) places.push(["artifact", valueLevels(message.artifact)]);
  return places;
}

function valueLevels(value: JsonValue): number {
  if (Array.isArray(value)) return 1 + listLevels(value);
  if (typeof value === "object" && value !== null) return 1 + structLevels(value);
  return 1;
}

function structLevels(object: JsonObject): number {
  let deepest = 0;
  for (const key of Object.keys(object)) deepest = Math.max(deepest, 1 + valueLevels(object[key]!));
  return 1 + deepest;
}

function listLevels(list: readonly JsonValue[]): number {
  let deepest = 0;
  for (const item of list) deepest = Math.max(deepest, valueLevels(item));
  return 1 + deepest;
}
