import { checkString, copyJson, copyJsonObject, describe, isPlainObject, memberPathOf, setMember, type JsonObject, type JsonValue } from "./json.js";

/**
 * A LangChain message as plain data: the fields of AIMessage, HumanMessage,
 * SystemMessage, ToolMessage, FunctionMessage, ChatMessage and the chunk
 * variants, named as LangChain names them (Python's `model_dump()` gives this
 * shape). Fields not listed here are kept as they are.
 */
export interface ChatMessage {
  /** "ai", "human", "system", "tool", "function", "chat", "AIMessageChunk", ... */
  type: string;
  content: string | Array<string | JsonObject>;
  additional_kwargs?: JsonObject;
  response_metadata?: JsonObject;
  tool_calls?: ToolCall[];
  invalid_tool_calls?: InvalidToolCall[];
  tool_call_chunks?: ToolCallChunk[];
  usage_metadata?: UsageMetadata;
  id?: string;
  name?: string;
  tool_call_id?: string;
  role?: string;
  status?: string;
  artifact?: JsonValue;
  [field: string]: unknown;
}

// The tool calls and the usage have fields of their own on the wire; any
// other field they carry (LangChain's `extras`, a provider's cost) is kept
// as JSON.

export interface ToolCall {
  name: string;
  args: JsonObject;
  id?: string;
  type?: string;
  [field: string]: unknown;
}

export interface InvalidToolCall {
  name?: string;
  args?: string;
  id?: string;
  error?: string;
  type?: string;
  [field: string]: unknown;
}

export interface ToolCallChunk {
  name?: string;
  args?: string;
  id?: string;
  index?: number;
  type?: string;
  [field: string]: unknown;
}

export interface UsageMetadata {
  input_tokens: number;
  output_tokens: number;
  total_tokens: number;
  input_token_details?: JsonObject;
  output_token_details?: JsonObject;
  [field: string]: unknown;
}

// The fields of a tool call, an invalid one, a chunk and the usage that
// have a place of their own on the wire; the others travel in its `extra`.
const INVALID_TOOL_CALL_STRINGS = ["name", "args", "id", "error", "type"] as const;
const TOOL_CALL_CHUNK_STRINGS = ["name", "args", "id", "type"] as const;
export const TOOL_CALL_FIELDS: ReadonlySet<string> = new Set(["name", "args", "id", "type"]);
export const INVALID_TOOL_CALL_FIELDS: ReadonlySet<string> = new Set(INVALID_TOOL_CALL_STRINGS);
export const TOOL_CALL_CHUNK_FIELDS: ReadonlySet<string> = new Set([...TOOL_CALL_CHUNK_STRINGS, "index"]);
export const USAGE_FIELDS: ReadonlySet<string> = new Set(["input_tokens", "output_tokens", "total_tokens", "input_token_details", "output_token_details"]);

export type ToolCallListField = "tool_calls" | "invalid_tool_calls" | "tool_call_chunks";

/**
 * The tool-call lists LangChain always gives a message of this type, empty or
 * not. The wire cannot tell an empty list from a missing one, so these come
 * back as empty lists and the others are left out when empty.
 */
export function defaultListFields(type: string): readonly ToolCallListField[] {
  switch (type) {
    case "ai":
      return ["tool_calls", "invalid_tool_calls"];
    case "AIMessageChunk":
      return ["tool_calls", "invalid_tool_calls", "tool_call_chunks"];
    default:
      return [];
  }
}

/** The fields with a place of their own on the wire; the rest travel as `extra`. */
export const KNOWN_MESSAGE_FIELDS: ReadonlySet<string> = new Set([
  "type", "content", "additional_kwargs", "response_metadata", "tool_calls", "invalid_tool_calls",
  "tool_call_chunks", "usage_metadata", "id", "name", "tool_call_id", "role", "status", "artifact",
]);

/**
 * The fields of a checked message, tool call or usage that the wire has no
 * place of its own for (`known` are those it has), as its `extra`;
 * undefined when there are none.
 */
export function otherFields(value: object, known: ReadonlySet<string>): JsonObject | undefined {
  let other: JsonObject | undefined;
  for (const [key, field] of Object.entries(value)) {
    if (!known.has(key) && field !== undefined) setMember((other ??= {}), key, field as JsonValue);
  }
  return other;
}

const OPTIONAL_STRING_FIELDS = ["id", "name", "tool_call_id", "role", "status"] as const;

/**
 * Checks a message and returns a deep copy of it in the form a lookup gives
 * back, whether the cache is in this process or remote: a null optional field
 * is left out, as is an empty tool-call list that the type does not carry.
 */
export function copyChatMessage(value: unknown, path: string): ChatMessage {
  if (!isPlainObject(value)) {
    throw new TypeError(
      `${path} must be a plain object, got ${describe(value)}; ` +
        "pass a LangChain message's fields (with its type), not the message instance",
    );
  }
  const type = checkString(value.type, `${path}.type`);
  const { content } = value;
  if (typeof content !== "string" && !Array.isArray(content)) {
    throw new TypeError(`${path}.content must be a string or an array of content blocks, got ${describe(content)}`);
  }
  const copy: ChatMessage = { type, content: copyJson(content, `${path}.content`) as ChatMessage["content"] };
  copyOtherFields(value, KNOWN_MESSAGE_FIELDS, copy, path);
  Object.assign(copy, optionalStrings(value, path, OPTIONAL_STRING_FIELDS));
  for (const key of ["additional_kwargs", "response_metadata"] as const) {
    const field = value[key];
    if (field !== undefined && field !== null) copy[key] = copyJsonObject(field, `${path}.${key}`);
  }
  if (value.artifact !== undefined) copy.artifact = copyJson(value.artifact, `${path}.artifact`);
  if (value.usage_metadata !== undefined && value.usage_metadata !== null) {
    copy.usage_metadata = copyUsageMetadata(value.usage_metadata, `${path}.usage_metadata`);
  }
  copyToolCallList(value, copy, "tool_calls", path, copyToolCall);
  copyToolCallList(value, copy, "invalid_tool_calls", path, copyInvalidToolCall);
  copyToolCallList(value, copy, "tool_call_chunks", path, copyToolCallChunk);
  return copy;
}

function copyToolCallList<T>(
  source: Record<string, unknown>,
  target: ChatMessage,
  key: ToolCallListField,
  path: string,
  copyItem: (item: unknown, path: string) => T,
): void {
  const list = source[key];
  if (list !== undefined && list !== null && !Array.isArray(list)) {
    throw new TypeError(`${path}.${key} must be an array, got ${describe(list)}`);
  }
  const items = (list ?? []).map((item, i) => copyItem(item, `${path}.${key}[${i}]`));
  if (items.length > 0 || defaultListFields(target.type).includes(key)) setMember(target, key, items);
}

function copyToolCall(value: unknown, path: string): ToolCall {
  const call = objectAt(value, path);
  const copy: ToolCall = {
    name: checkString(call.name, `${path}.name`),
    args: copyJsonObject(call.args, `${path}.args`),
    ...optionalStrings(call, path, ["id", "type"]),
  };
  return copyOtherFields(call, TOOL_CALL_FIELDS, copy, path);
}

function copyInvalidToolCall(value: unknown, path: string): InvalidToolCall {
  const call = objectAt(value, path);
  return copyOtherFields(call, INVALID_TOOL_CALL_FIELDS, optionalStrings(call, path, INVALID_TOOL_CALL_STRINGS), path);
}

function copyToolCallChunk(value: unknown, path: string): ToolCallChunk {
  const chunk = objectAt(value, path);
  const copy: ToolCallChunk = optionalStrings(chunk, path, TOOL_CALL_CHUNK_STRINGS);
  if (chunk.index !== undefined && chunk.index !== null) copy.index = integerAt(chunk.index, `${path}.index`);
  return copyOtherFields(chunk, TOOL_CALL_CHUNK_FIELDS, copy, path);
}

function copyUsageMetadata(value: unknown, path: string): UsageMetadata {
  const usage = objectAt(value, path);
  const copy: UsageMetadata = {
    input_tokens: integerAt(usage.input_tokens, `${path}.input_tokens`),
    output_tokens: integerAt(usage.output_tokens, `${path}.output_tokens`),
    total_tokens: integerAt(usage.total_tokens, `${path}.total_tokens`),
  };
  for (const key of ["input_token_details", "output_token_details"] as const) {
    const details = usage[key];
    if (details !== undefined && details !== null) copy[key] = copyJsonObject(details, `${path}.${key}`);
  }
  return copyOtherFields(usage, USAGE_FIELDS, copy, path);
}

/**
 * Copies the fields of `source` that are not `known` (those the wire
 * carries as `extra`) onto `copy`, checked as JSON; undefined ones are
 * left out, as JSON leaves them.
 */
function copyOtherFields<T extends object>(source: Record<string, unknown>, known: ReadonlySet<string>, copy: T, path: string): T {
  for (const key of Object.keys(source)) {
    const field = source[key];
    if (known.has(key) || field === undefined) continue;
    const fieldPath = memberPathOf(path, key);
    setMember(copy as Record<string, unknown>, checkString(key, `the name of ${fieldPath}`), copyJson(field, fieldPath));
  }
  return copy;
}

function optionalStrings<K extends string>(
  source: Record<string, unknown>,
  path: string,
  keys: readonly K[],
): Partial<Record<K, string>> {
  const copy: Partial<Record<K, string>> = {};
  for (const key of keys) {
    const field = source[key];
    if (field !== undefined && field !== null) copy[key] = checkString(field, `${path}.${key}`);
  }
  return copy;
}

function objectAt(value: unknown, path: string): Record<string, unknown> {
  if (!isPlainObject(value)) throw new TypeError(`${path} must be an object, got ${describe(value)}`);
  return value;
}

function integerAt(value: unknown, path: string): number {
  if (!Number.isSafeInteger(value)) throw new TypeError(`${path} must be an integer, got ${describe(value)}`);
  return value as number;
}
