import {
  AIMessage,
  AIMessageChunk,
  ChatMessage,
  ChatMessageChunk,
  FunctionMessage,
  FunctionMessageChunk,
  HumanMessage,
  HumanMessageChunk,
  RemoveMessage,
  SystemMessage,
  SystemMessageChunk,
  ToolMessage,
  ToolMessageChunk,
  type BaseMessage,
} from "@langchain/core/messages";
import type { ChatMessage as StoredMessage } from "../chat-message.js";

type MessageClass = (new (fields: never) => BaseMessage) & { isInstance(value: unknown): boolean };

/**
 * The message classes of LangChain JS by the type the wire carries, which
 * is LangChain Python's (`message.type`, and the class name for chunks), so
 * that what one language stores the other reads as the same kind of message.
 * Chunks come first: a chunk is also an instance of its message's class.
 */
const CLASSES: readonly [string, MessageClass][] = [
  ["AIMessageChunk", AIMessageChunk],
  ["HumanMessageChunk", HumanMessageChunk],
  ["SystemMessageChunk", SystemMessageChunk],
  ["ToolMessageChunk", ToolMessageChunk],
  ["ChatMessageChunk", ChatMessageChunk],
  ["FunctionMessageChunk", FunctionMessageChunk],
  ["ai", AIMessage],
  ["human", HumanMessage],
  ["system", SystemMessage],
  ["tool", ToolMessage],
  ["chat", ChatMessage],
  ["function", FunctionMessage],
  ["remove", RemoveMessage],
] as unknown as [string, MessageClass][];

const CLASS_OF_TYPE = new Map(CLASSES);

/** A LangChain JS message as the plain data llmcache stores: its fields, named as LangChain names them, and its type. */
export function toStoredMessage(message: BaseMessage): StoredMessage {
  const type = CLASSES.find(([, messageClass]) => messageClass.isInstance(message))?.[0];
  if (type === undefined) throw new TypeError(`cannot store a message of class ${message.constructor.name}: it is not one of LangChain's message classes`);
  const { data } = message.toDict();
  const stored: StoredMessage = { type, content: data.content as StoredMessage["content"] };
  for (const [key, value] of Object.entries(data)) {
    if (value !== undefined && key !== "content") stored[key] = value;
  }
  return stored;
}

/**
 * The LangChain JS message for stored data. A type no class of LangChain JS
 * has (a newer one, or a sender's own) comes back as a ChatMessage whose
 * role is that type, rather than failing the lookup.
 */
export function fromStoredMessage({ type, ...fields }: StoredMessage): BaseMessage {
  const messageClass = CLASS_OF_TYPE.get(type);
  if (messageClass) return new messageClass(fields as never);
  return new ChatMessage({ ...fields, role: (fields.role as string | undefined) ?? type } as never);
}
