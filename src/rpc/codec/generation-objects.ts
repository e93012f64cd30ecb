import { fromJson, toJson, type MessageInitShape } from "@bufbuild/protobuf";
import { ListValueSchema, ValueSchema } from "@bufbuild/protobuf/wkt";
import type * as wire from "../../../gen/llmcache/v1/cache_pb.js";
import {
  defaultListFields,
  INVALID_TOOL_CALL_FIELDS,
  KNOWN_MESSAGE_FIELDS,
  otherFields,
  TOOL_CALL_CHUNK_FIELDS,
  TOOL_CALL_FIELDS,
  USAGE_FIELDS,
  type ChatMessage,
} from "../../chat-message.js";
import type { Generation } from "../../generation.js";
import { setMember, type JsonObject, type JsonValue } from "../../json.js";

type WireGenerationInit = MessageInitShape<typeof wire.GenerationSchema>;
type WireChatMessageInit = MessageInitShape<typeof wire.ChatMessageSchema>;

/**
 * A generation as protobuf-es builds it for the wire, and back. The input
 * must be checked and in the form a lookup gives back (copyGenerations), so
 * a remote cache returns exactly what an in-process one would.
 */
export function toWireGeneration({ text, generationInfo, message }: Generation): WireGenerationInit {
  return { text, generationInfo, message: message && toWireMessage(message) };
}

export function fromWireGeneration({ text, generationInfo, message }: wire.Generation): Generation {
  const generation: Generation = { text };
  if (generationInfo) generation.generationInfo = generationInfo;
  if (message) generation.message = fromWireMessage(message);
  return generation;
}

function toWireMessage(message: ChatMessage): WireChatMessageInit {
  const usage = message.usage_metadata;
  return {
    type: message.type,
    content:
      typeof message.content === "string"
        ? { case: "text", value: message.content }
        : { case: "blocks", value: fromJson(ListValueSchema, message.content) },
    additionalKwargs: message.additional_kwargs,
    responseMetadata: message.response_metadata,
    toolCalls: message.tool_calls?.map((call) => ({
      name: call.name,
      args: call.args,
      id: call.id,
      type: call.type,
      extra: otherFields(call, TOOL_CALL_FIELDS),
    })),
    invalidToolCalls: message.invalid_tool_calls?.map((call) => ({
      name: call.name,
      args: call.args,
      id: call.id,
      error: call.error,
      type: call.type,
      extra: otherFields(call, INVALID_TOOL_CALL_FIELDS),
    })),
    toolCallChunks: message.tool_call_chunks?.map((chunk) => ({
      name: chunk.name,
      args: chunk.args,
      id: chunk.id,
      index: chunk.index === undefined ? undefined : BigInt(chunk.index),
      type: chunk.type,
      extra: otherFields(chunk, TOOL_CALL_CHUNK_FIELDS),
    })),
    usageMetadata: usage && {
      inputTokens: BigInt(usage.input_tokens),
      outputTokens: BigInt(usage.output_tokens),
      totalTokens: BigInt(usage.total_tokens),
      inputTokenDetails: usage.input_token_details,
      outputTokenDetails: usage.output_token_details,
      extra: otherFields(usage, USAGE_FIELDS),
    },
    id: message.id,
    name: message.name,
    toolCallId: message.tool_call_id,
    role: message.role,
    status: message.status,
    artifact: message.artifact === undefined ? undefined : fromJson(ValueSchema, message.artifact),
    extra: otherFields(message, KNOWN_MESSAGE_FIELDS),
  };
}

function fromWireMessage(wireMessage: wire.ChatMessage): ChatMessage {
  const { content } = wireMessage;
  const message: ChatMessage = {
    type: wireMessage.type,
    content: content.case === "blocks" ? (toJson(ListValueSchema, content.value) as ChatMessage["content"]) : (content.value ?? ""),
  };
  withOtherFields(message, wireMessage.extra, KNOWN_MESSAGE_FIELDS);
  if (wireMessage.additionalKwargs) message.additional_kwargs = wireMessage.additionalKwargs;
  if (wireMessage.responseMetadata) message.response_metadata = wireMessage.responseMetadata;
  const lists = {
    tool_calls: wireMessage.toolCalls.map(({ name, args, id, type, extra }) =>
      withOtherFields(withoutUndefined({ name, args: args ?? {}, id, type }), extra, TOOL_CALL_FIELDS),
    ),
    invalid_tool_calls: wireMessage.invalidToolCalls.map(({ name, args, id, error, type, extra }) =>
      withOtherFields(withoutUndefined({ name, args, id, error, type }), extra, INVALID_TOOL_CALL_FIELDS),
    ),
    tool_call_chunks: wireMessage.toolCallChunks.map(({ name, args, id, index, type, extra }) =>
      withOtherFields(withoutUndefined({ name, args, id, index: index === undefined ? undefined : Number(index), type }), extra, TOOL_CALL_CHUNK_FIELDS),
    ),
  };
  const defaults = defaultListFields(message.type);
  for (const key of ["tool_calls", "invalid_tool_calls", "tool_call_chunks"] as const) {
    if (lists[key].length > 0 || defaults.includes(key)) (message[key] as unknown[]) = lists[key];
  }
  const usage = wireMessage.usageMetadata;
  if (usage) {
    const counts = withoutUndefined({
      input_tokens: Number(usage.inputTokens),
      output_tokens: Number(usage.outputTokens),
      total_tokens: Number(usage.totalTokens),
      input_token_details: usage.inputTokenDetails,
      output_token_details: usage.outputTokenDetails,
    });
    message.usage_metadata = withOtherFields(counts, usage.extra, USAGE_FIELDS);
  }
  const { id, name, toolCallId, role, status, artifact } = wireMessage;
  Object.assign(message, withoutUndefined({ id, name, tool_call_id: toolCallId, role, status }));
  if (artifact) message.artifact = toJson(ValueSchema, artifact) as JsonValue;
  return message;
}

/** `target` with the members of a wire `extra` that are not fields of its own (a sender may put anything there). */
function withOtherFields<T extends object>(target: T, extra: JsonObject | undefined, known: ReadonlySet<string>): T {
  for (const [key, value] of Object.entries(extra ?? {})) {
    if (!known.has(key)) setMember(target as Record<string, unknown>, key, value);
  }
  return target;
}

function withoutUndefined<T extends object>(value: T): T {
  for (const key of Object.keys(value) as (keyof T)[]) {
    if (value[key] === undefined) delete value[key];
  }
  return value;
}
