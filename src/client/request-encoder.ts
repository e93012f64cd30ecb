import { create, toBinary } from "@bufbuild/protobuf";
import {
  BatchLookupRequestSchema,
  BatchUpdateRequestSchema,
  GenerationSchema,
  LookupRequestSchema,
  ReleaseLeaseRequestSchema,
  UpdateRequestSchema,
} from "../../gen/llmcache/v1/cache_pb.js";
import type { Generation } from "../generation.js";
import { toWireGeneration } from "../rpc/generation-codec.js";
import { fieldSize, tag, varintSize, WIRE_LENGTH_DELIMITED, WIRE_VARINT, writeFieldHeader, writeVarint } from "../rpc/wire-writer.js";

/**
 * The client's requests, written by hand: protobuf-es's general encoder
 * costs several microseconds a message in reflection and allocation, which
 * at a hundred thousand lookups a second is most of the client's time. The
 * bytes are exactly protobuf-es's (fields in number order, empty strings
 * left out), which the tests check.
 */

const LOOKUP = LookupRequestSchema.field;
const UPDATE = UpdateRequestSchema.field;
const PROMPT_TAG = tag(LOOKUP.prompt.number, WIRE_LENGTH_DELIMITED);
const LLM_STRING_TAG = tag(LOOKUP.llmString.number, WIRE_LENGTH_DELIMITED);
const LOOKUP_NAMESPACE_TAG = tag(LOOKUP.namespace.number, WIRE_LENGTH_DELIMITED);
const BYPASS_TAG = tag(LOOKUP.bypass.number, WIRE_VARINT);
const LEASE_MS_TAG = tag(LOOKUP.leaseMs.number, WIRE_VARINT);
const WAIT_MS_TAG = tag(LOOKUP.waitMs.number, WIRE_VARINT);
const GENERATIONS_TAG = tag(UPDATE.generations.number, WIRE_LENGTH_DELIMITED);
const UPDATE_NAMESPACE_TAG = tag(UPDATE.namespace.number, WIRE_LENGTH_DELIMITED);
const TTL_MS_TAG = tag(UPDATE.ttlMs.number, WIRE_VARINT);
const NEVER_EXPIRES_TAG = tag(UPDATE.neverExpires.number, WIRE_VARINT);
const NO_STORE_TAG = tag(UPDATE.noStore.number, WIRE_VARINT);
const ONLY_IF_ABSENT_TAG = tag(UPDATE.onlyIfAbsent.number, WIRE_VARINT);
const LEASE_TOKEN_TAG = tag(UPDATE.leaseToken.number, WIRE_LENGTH_DELIMITED);
const RELEASE = ReleaseLeaseRequestSchema.field;
const TEXT_TAG = tag(GenerationSchema.field.text.number, WIRE_LENGTH_DELIMITED);
const LOOKUPS_TAG = tag(BatchLookupRequestSchema.field.lookups.number, WIRE_LENGTH_DELIMITED);
const UPDATES_TAG = tag(BatchUpdateRequestSchema.field.updates.number, WIRE_LENGTH_DELIMITED);

export interface LookupFields {
  namespace: string;
  bypass: boolean;
  lease?: { leaseMs: number; waitMs: number } | undefined;
}

export interface UpdateFields {
  namespace: string;
  /** undefined: the default TTL; Infinity: never expires. */
  ttlMs: number | undefined;
  noStore: boolean;
  onlyIfAbsent: boolean;
  leaseToken?: string | undefined;
}

export function encodeLookupRequest(prompt: string, llmString: string, { namespace, bypass, lease }: LookupFields): Buffer {
  return concatFields([
    stringField(PROMPT_TAG, prompt),
    stringField(LLM_STRING_TAG, llmString),
    stringField(LOOKUP_NAMESPACE_TAG, namespace),
    boolField(BYPASS_TAG, bypass),
    lease && varintField(LEASE_MS_TAG, lease.leaseMs),
    lease && varintField(WAIT_MS_TAG, lease.waitMs),
  ]);
}

export function encodeReleaseLeaseRequest(prompt: string, llmString: string, namespace: string, token: string): Buffer {
  return concatFields([
    stringField(tag(RELEASE.prompt.number, WIRE_LENGTH_DELIMITED), prompt),
    stringField(tag(RELEASE.llmString.number, WIRE_LENGTH_DELIMITED), llmString),
    stringField(tag(RELEASE.namespace.number, WIRE_LENGTH_DELIMITED), namespace),
    stringField(tag(RELEASE.leaseToken.number, WIRE_LENGTH_DELIMITED), token),
  ]);
}

/** `generations` must be checked already (copyGenerations). */
export function encodeUpdateRequest(prompt: string, llmString: string, generations: readonly Generation[], fields: UpdateFields): Buffer {
  const parts = [stringField(PROMPT_TAG, prompt), stringField(LLM_STRING_TAG, llmString)];
  for (const generation of generations) parts.push(messageField(GENERATIONS_TAG, encodeGeneration(generation)));
  const finite = fields.ttlMs !== undefined && fields.ttlMs !== Infinity;
  parts.push(
    stringField(UPDATE_NAMESPACE_TAG, fields.namespace),
    finite ? varintField(TTL_MS_TAG, fields.ttlMs!) : undefined,
    boolField(NEVER_EXPIRES_TAG, fields.ttlMs === Infinity),
    boolField(NO_STORE_TAG, fields.noStore),
    boolField(ONLY_IF_ABSENT_TAG, fields.onlyIfAbsent),
    fields.leaseToken === undefined ? undefined : stringField(LEASE_TOKEN_TAG, fields.leaseToken),
  );
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

/** A field to write: its key, and its body as bytes, as a string to write as UTF-8, or as a varint. */
interface Field {
  tag: number;
  size: number;
  bytes?: Uint8Array;
  text?: string;
  varint?: number;
}

function stringField(fieldTag: number, text: string): Field | undefined {
  if (text.length === 0) return undefined; // proto3 leaves out a field at its default
  return { tag: fieldTag, size: utf8Length(text), text };
}

function messageField(fieldTag: number, bytes: Uint8Array): Field {
  return { tag: fieldTag, size: bytes.length, bytes };
}

function varintField(fieldTag: number, value: number): Field | undefined {
  return value === 0 ? undefined : { tag: fieldTag, size: varintSize(value), varint: value };
}

function boolField(fieldTag: number, value: boolean): Field | undefined {
  return value ? { tag: fieldTag, size: 1, varint: 1 } : undefined;
}

function concatFields(fields: readonly (Field | undefined)[]): Buffer {
  let size = 0;
  for (const field of fields) {
    if (field) size += field.varint === undefined ? fieldSize(field.tag, field.size) : varintSize(field.tag) + field.size;
  }
  const buffer = Buffer.allocUnsafe(size);
  let position = 0;
  for (const field of fields) {
    if (!field) continue;
    if (field.varint !== undefined) {
      position = writeVarint(buffer, writeVarint(buffer, position, field.tag), field.varint);
      continue;
    }
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
