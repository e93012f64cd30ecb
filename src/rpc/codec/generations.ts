import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { WireType } from "@bufbuild/protobuf/wire";
import { isUtf8 } from "node:buffer";
import { GenerationSchema, LookupResponseSchema } from "../../../gen/llmcache/v1/cache_pb.js";
import type { Generation } from "../../generation.js";
import { DecodeError, decodeProblem } from "../codec.js";
import { messageField, nestedField, stringField, type Field } from "./fields.js";
import { checkGeneration } from "./generation-check.js";
import { fromWireGeneration, toWireGeneration } from "./generation-objects.js";
import { fieldSize, lengthDelimited, readerOf, varintSize, wireFields, writeFieldHeader, writeVarint, type WireField } from "./wire.js";

/**
 * llmcache.v1.Generation, the value of every entry. The client writes and
 * reads generations as objects; the server keeps them as the bytes that
 * came, checked (checkGeneration), and answers a hit with those bytes.
 */

const GENERATION = wireFields(GenerationSchema);
/** The server holds an entry's generations laid out as this field, ready to be copied into a reply. */
const STORED = wireFields(LookupResponseSchema).generations;

/**
 * The client writes a generation as `field` of the message it goes in;
 * `generation` must be checked already (copyGenerations).
 */
export function generationField(field: WireField, generation: Generation): Field {
  // Most generations are text alone: their text goes straight into the request.
  if (generation.generationInfo === undefined && generation.message === undefined) {
    return nestedField(field, [stringField(GENERATION.text, generation.text)]);
  }
  return messageField(field, toBinary(GenerationSchema, create(GenerationSchema, toWireGeneration(generation))));
}

/**
 * An entry's generations as the server holds them: the bytes that came,
 * laid out as LookupResponse.generations, ready to be copied into a reply.
 */
export type StoredGenerations = Buffer;

/**
 * One generation of a request, as the server read it: where its field
 * starts (its key), and its message in [start, end).
 */
export type GenerationSpan = readonly [field: number, start: number, end: number];

/**
 * The server checks an update's generations (spans of `bytes`), and lays
 * them out as StoredGenerations: the store copies them into its segments,
 * and a waiter for the pair's lease is answered with them.
 *
 * Generations that came one after another, each under a key of the same
 * size as STORED's and a length written in the fewest bytes (as every
 * protobuf encoder writes them), are already laid out but for their keys:
 * those are rewritten in place, and the result is a view of `bytes`, which
 * is why the caller must own them. An 8 KiB update's own copy of its
 * generations was a tenth of the server's time for it. Any other layout is
 * copied into a Buffer of its own.
 */
export function storedGenerations(bytes: Buffer, spans: readonly GenerationSpan[], requestField: WireField): StoredGenerations {
  let size = 0;
  let laidOut = varintSize(requestField.tag) === varintSize(STORED.tag);
  spans.forEach(([field, start, end], i) => {
    checkGeneration(bytes, start, end, i);
    size += fieldSize(STORED.tag, end - start);
    laidOut &&= start - field === fieldSize(STORED.tag, end - start) - (end - start) && (i === 0 || spans[i - 1]![2] === field);
  });
  if (spans.length === 0) return Buffer.alloc(0);
  if (laidOut) {
    for (const [field] of spans) writeVarint(bytes, field, STORED.tag);
    return bytes.subarray(spans[0]![0], spans.at(-1)![2]);
  }
  const stored = Buffer.allocUnsafe(size);
  let position = 0;
  for (const [, start, end] of spans) {
    position = writeFieldHeader(stored, position, STORED.tag, end - start);
    position += bytes.copy(stored, position, start, end);
  }
  return stored;
}

/**
 * The client reads the generation in bytes[start, end). One that is text
 * alone is read directly; any other goes through protobuf-es.
 */
export function decodeGeneration(bytes: Buffer, start: number, end: number): Generation {
  const reader = readerOf(bytes, start, end);
  let text = "";
  while (reader.pos < end) {
    const [field, wireType] = reader.tag();
    if (field !== GENERATION.text.number || wireType !== WireType.LengthDelimited) return decodeGenerationFully(bytes, start, end);
    const [textStart, textEnd] = lengthDelimited(reader);
    if (!isUtf8(bytes.subarray(textStart, textEnd))) throw new DecodeError("generation: text is not valid UTF-8");
    text = bytes.toString("utf8", textStart, textEnd);
  }
  return { text };
}

function decodeGenerationFully(bytes: Buffer, start: number, end: number): Generation {
  try {
    return fromWireGeneration(fromBinary(GenerationSchema, bytes.subarray(start, end)));
  } catch (error) {
    throw new DecodeError(`generation: ${decodeProblem(error)}`);
  }
}
