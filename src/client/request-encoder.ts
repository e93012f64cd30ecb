import { create, toBinary } from "@bufbuild/protobuf";
import {
  BatchLookupRequestSchema,
  BatchUpdateRequestSchema,
  GenerationSchema,
  LookupRequestSchema,
  UpdateRequestSchema,
} from "../../gen/llmcache/v1/cache_pb.js";
import type { Generation } from "../generation.js";
import { toWireGeneration } from "../rpc/generation-codec.js";
import { fieldSize, tag, WIRE_LENGTH_DELIMITED, writeFieldHeader } from "../rpc/wire-writer.js";

/**
 * The client's requests, written by hand: protobuf-es's general encoder
 * costs several microseconds a message in reflection and allocation, which
 * at a hundred thousand lookups a second is most of the client's time. The
 * bytes are exactly protobuf-es's (fields in number order, empty strings
 * left out), which the tests check.
 */

const PROMPT_TAG = tag(LookupRequestSchema.field.prompt.number, WIRE_LENGTH_DELIMITED);
const LLM_STRING_TAG = tag(LookupRequestSchema.field.llmString.number, WIRE_LENGTH_DELIMITED);
const GENERATIONS_TAG = tag(UpdateRequestSchema.field.generations.number, WIRE_LENGTH_DELIMITED);
const TEXT_TAG = tag(GenerationSchema.field.text.number, WIRE_LENGTH_DELIMITED);
const LOOKUPS_TAG = tag(BatchLookupRequestSchema.field.lookups.number, WIRE_LENGTH_DELIMITED);
const UPDATES_TAG = tag(BatchUpdateRequestSchema.field.updates.number, WIRE_LENGTH_DELIMITED);

export function encodeLookupRequest(prompt: string, llmString: string): Buffer {
  const parts = [stringField(PROMPT_TAG, prompt), stringField(LLM_STRING_TAG, llmString)];
  return concatFields(parts);
}

/** `generations` must be checked already (copyGenerations). */
export function encodeUpdateRequest(prompt: string, llmString: string, generations: readonly Generation[]): Buffer {
  const parts = [stringField(PROMPT_TAG, prompt), stringField(LLM_STRING_TAG, llmString)];
  for (const generation of generations) parts.push(messageField(GENERATIONS_TAG, encodeGeneration(generation)));
  return concatFields(parts);
}

export function encodeBatchLookupRequest(lookups: readonly Buffer[]): Buffer {
  return concatFields(lookups.map((lookup) => messageField(LOOKUPS_TAG, lookup)));
}

export function encodeBatchUpdateRequest(updates: readonly Buffer[]): Buffer {
  return concatFields(updates.map((update) => messageField(UPDATES_TAG, update)));
}

function encodeGeneration(generation: Generation): Uint8Array {
  // Most generations are text alone: write those directly.
  if (generation.generationInfo === undefined && generation.message === undefined) {
    return concatFields([stringField(TEXT_TAG, generation.text)]);
  }
  return toBinary(GenerationSchema, create(GenerationSchema, toWireGeneration(generation)));
}

/** A field to write: its key, and its body as bytes or as a string to write as UTF-8. */
interface Field {
  tag: number;
  size: number;
  bytes?: Uint8Array;
  text?: string;
}

function stringField(fieldTag: number, text: string): Field | undefined {
  if (text.length === 0) return undefined; // proto3 leaves out a field at its default
  return { tag: fieldTag, size: utf8Length(text), text };
}

function messageField(fieldTag: number, bytes: Uint8Array): Field {
  return { tag: fieldTag, size: bytes.length, bytes };
}

function concatFields(fields: readonly (Field | undefined)[]): Buffer {
  let size = 0;
  for (const field of fields) if (field) size += fieldSize(field.tag, field.size);
  const buffer = Buffer.allocUnsafe(size);
  let position = 0;
  for (const field of fields) {
    if (!field) continue;
    position = writeFieldHeader(buffer, position, field.tag, field.size);
    if (field.text !== undefined) position += buffer.write(field.text, position, field.size, "utf8");
    else buffer.set(field.bytes!, position), (position += field.size);
  }
  return buffer;
}

// The same llm_string comes with call after call; its length is kept for the last one seen.
let lastString = "";
let lastLength = 0;

function utf8Length(text: string): number {
  if (text === lastString) return lastLength;
  const length = Buffer.byteLength(text, "utf8");
  if (text.length >= 64) {
    lastString = text;
    lastLength = length;
  }
  return length;
}
