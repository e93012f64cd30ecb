import type { WireType } from "@bufbuild/protobuf/wire";
import { UpdateRequestSchema, UpdateResponseSchema } from "../../../gen/llmcache/v1/cache_pb.js";
import type { Generation } from "../../generation.js";
import { DecodeError, decoding } from "../codec.js";
import type { KeyBytes } from "../key-bytes.js";
import { boolField, concatFields, stringField, varintField } from "./fields.js";
import { generationField, storedGenerations, type GenerationSpan, type StoredGenerations } from "./generations.js";
import type { RequestChecks, WireKey } from "./request-checks.js";
import type { WireReader } from "./wire-reader.js";
import { expectWireType, flagMessage, lengthDelimited, readBool, readerOf, readKeyBytes, wireFields, type WireField } from "./wire.js";

const REQUEST = wireFields(UpdateRequestSchema);
const RESPONSE = wireFields(UpdateResponseSchema);

// UpdateRequest: the client writes it...

export interface UpdateFields {
  namespace: string;
  /** undefined: the default TTL; Infinity: never expires. */
  ttlMs: number | undefined;
  noStore: boolean;
  onlyIfAbsent: boolean;
  leaseToken?: string | undefined;
}

/** `generations` must be checked already (copyGenerations). */
export function encodeUpdateRequest(prompt: string, llmString: string, generations: readonly Generation[], fields: UpdateFields): Buffer {
  const parts = [stringField(REQUEST.prompt, prompt), stringField(REQUEST.llmString, llmString)];
  for (const generation of generations) parts.push(generationField(REQUEST.generations, generation));
  const finite = fields.ttlMs !== undefined && fields.ttlMs !== Infinity;
  parts.push(
    stringField(REQUEST.namespace, fields.namespace),
    finite ? varintField(REQUEST.ttlMs, fields.ttlMs!) : undefined,
    boolField(REQUEST.neverExpires, fields.ttlMs === Infinity),
    boolField(REQUEST.noStore, fields.noStore),
    boolField(REQUEST.onlyIfAbsent, fields.onlyIfAbsent),
    fields.leaseToken === undefined ? undefined : stringField(REQUEST.leaseToken, fields.leaseToken),
  );
  return concatFields(parts);
}

// ...and the server reads it, keeping the generations as bytes.

export interface WireUpdate extends WireKey {
  /**
   * The update's generations, as the bytes of LookupResponse.generations
   * (field key, length and message, for each): a hit is answered by
   * copying them into the reply.
   */
  generations: StoredGenerations;
  /** undefined: the default TTL; Infinity: never expires. */
  ttlMs: number | undefined;
  noStore: boolean;
  onlyIfAbsent: boolean;
  /** The lease this update fills, if any (ASCII: its bytes are its characters). */
  leaseToken: string | undefined;
}

/**
 * Reads an UpdateRequest. Its generations may be a view of `bytes` in which
 * their keys were rewritten (see storedGenerations): the bytes must be the
 * caller's own, read once, as grpc-js hands each message to the server.
 */
export function readUpdateRequest(bytes: Buffer, checks: RequestChecks): WireUpdate {
  return decoding(UpdateRequestSchema.typeName, () => readUpdate(bytes, 0, bytes.length, checks));
}

/** Reads an UpdateRequest from bytes[start, end), in a batch or a stream too, as readUpdateRequest does. */
export function readUpdate(bytes: Buffer, start: number, end: number, checks: RequestChecks): WireUpdate {
  const reader = readerOf(bytes, start, end);
  let namespace = "" as KeyBytes;
  let prompt = "" as KeyBytes;
  let llmString = "" as KeyBytes;
  let ttlMs = 0;
  let neverExpires = false;
  let noStore = false;
  let onlyIfAbsent = false;
  let leaseToken: KeyBytes | undefined;
  const generations: GenerationSpan[] = [];
  while (reader.pos < end) {
    const fieldStart = reader.pos;
    const [field, wireType] = reader.tag();
    if (field === REQUEST.prompt.number) prompt = readKeyBytes(bytes, reader, wireType, REQUEST.prompt);
    else if (field === REQUEST.llmString.number) llmString = readKeyBytes(bytes, reader, wireType, REQUEST.llmString);
    else if (field === REQUEST.namespace.number) namespace = readKeyBytes(bytes, reader, wireType, REQUEST.namespace);
    else if (field === REQUEST.generations.number) {
      expectWireType(wireType, REQUEST.generations);
      generations.push([fieldStart, ...lengthDelimited(reader)]);
    } else if (field === REQUEST.ttlMs.number) ttlMs = readTtlMs(reader, wireType, REQUEST.ttlMs);
    else if (field === REQUEST.neverExpires.number) neverExpires = readBool(reader, wireType, REQUEST.neverExpires);
    else if (field === REQUEST.noStore.number) noStore = readBool(reader, wireType, REQUEST.noStore);
    else if (field === REQUEST.onlyIfAbsent.number) onlyIfAbsent = readBool(reader, wireType, REQUEST.onlyIfAbsent);
    else if (field === REQUEST.leaseToken.number) leaseToken = readKeyBytes(bytes, reader, wireType, REQUEST.leaseToken) || undefined;
    else reader.skip(wireType, field);
  }
  checks.key({ namespace, prompt, llmString });
  checks.generations(generations.length);
  return {
    namespace,
    prompt,
    llmString,
    generations: storedGenerations(bytes, generations, REQUEST.generations),
    ttlMs: neverExpires ? Infinity : ttlMs > 0 ? ttlMs : undefined,
    noStore,
    onlyIfAbsent,
    leaseToken,
  };
}

/** The largest ttl_ms that milliseconds on the server's clock can hold exactly. */
const MAX_TTL_MS = BigInt(Number.MAX_SAFE_INTEGER);

function readTtlMs(reader: WireReader, wireType: WireType, field: WireField): number {
  expectWireType(wireType, field);
  const ttlMs = reader.uint64();
  if (ttlMs > MAX_TTL_MS) {
    throw new DecodeError(`${field.name} is ${ttlMs}, over the largest allowed, ${MAX_TTL_MS} (set never_expires for an entry that never expires)`);
  }
  return Number(ttlMs);
}

// UpdateResponse: the server writes it...

const STORED = flagMessage(RESPONSE.stored);
export const writeUpdateResponse = STORED.write;
export const updateResponseSize = STORED.size;
export const writeUpdateBody = STORED.writeAt;

// ...and the client reads it: whether the update stored its generations.

export function decodeUpdateResponse(bytes: Buffer): boolean {
  return decoding(UpdateResponseSchema.typeName, () => readUpdateResponse(bytes, 0, bytes.length));
}

export function readUpdateResponse(bytes: Buffer, start: number, end: number): boolean {
  return STORED.read(bytes, start, end);
}
