import { fromBinary } from "@bufbuild/protobuf";
import { WireType } from "@bufbuild/protobuf/wire";
import { isUtf8 } from "node:buffer";
import {
  BatchLookupRequestSchema,
  BatchUpdateRequestSchema,
  GenerationSchema,
  LookupRequestSchema,
  LookupResponseSchema,
  StreamOperationSchema,
  StreamRequestSchema,
  UpdateRequestSchema,
} from "../../gen/llmcache/v1/cache_pb.js";
import { DecodeError, decodeProblem } from "../rpc/codec.js";
import { expectWireType, lengthDelimited, readerOf } from "../rpc/wire-reader.js";
import { fieldSize, tag, WIRE_LENGTH_DELIMITED, writeFieldHeader } from "../rpc/wire-writer.js";

/**
 * A key as the server holds it: the UTF-8 bytes of prompt and llm_string,
 * each read as a latin1 string (one character per byte). Equal bytes make
 * equal strings, and nothing is decoded on the way.
 */
export interface WireKey {
  prompt: string;
  llmString: string;
}

export interface WireUpdate extends WireKey {
  /**
   * The update's generations, as the bytes of LookupResponse.generations
   * (field key, length and message, for each), read as latin1: a hit is
   * answered by copying them into the reply.
   */
  generations: string;
}

export type WireOperation =
  | { id: number; kind: "lookup"; key: WireKey }
  | { id: number; kind: "update"; update: WireUpdate }
  | { id: number; kind: "invalid"; problem: DecodeError };

const LOOKUP = LookupRequestSchema.field;
const UPDATE = UpdateRequestSchema.field;
const OPERATION = StreamOperationSchema.field;
const STORED_GENERATION_TAG = tag(LookupResponseSchema.field.generations.number, WIRE_LENGTH_DELIMITED);

/**
 * Readers for the requests the server answers without protobuf-es objects:
 * each reads the fields it needs straight from the bytes and keeps the
 * generations as bytes. Everything protobuf-es would refuse is refused with
 * a DecodeError naming the message and the problem; generations are checked
 * by decoding them with protobuf-es, so what is stored decodes for every
 * client. Unknown fields are skipped, as protobuf requires.
 */
export function readLookupRequest(bytes: Buffer): WireKey {
  return reading(LookupRequestSchema.typeName, () => readKey(bytes, 0, bytes.length, false) as WireKey);
}

export function readUpdateRequest(bytes: Buffer): WireUpdate {
  return reading(UpdateRequestSchema.typeName, () => readKey(bytes, 0, bytes.length, true) as WireUpdate);
}

export function readBatchLookupRequest(bytes: Buffer): WireKey[] {
  return reading(BatchLookupRequestSchema.typeName, () =>
    readRepeated(bytes, BatchLookupRequestSchema.field.lookups.number, "lookups", (start, end) => readKey(bytes, start, end, false)),
  );
}

export function readBatchUpdateRequest(bytes: Buffer): WireUpdate[] {
  return reading(BatchUpdateRequestSchema.typeName, () =>
    readRepeated(bytes, BatchUpdateRequestSchema.field.updates.number, "updates", (start, end) => readKey(bytes, start, end, true) as WireUpdate),
  );
}

/**
 * Reads a stream message. A malformed operation becomes an "invalid"
 * operation that carries its problem, so that it can be answered on its own;
 * only a malformed envelope, where ids cannot be trusted, throws.
 */
export function readStreamRequest(bytes: Buffer): WireOperation[] {
  return reading(StreamRequestSchema.typeName, () =>
    readRepeated(bytes, StreamRequestSchema.field.operations.number, "operations", (start, end) => readOperation(bytes, start, end)),
  );
}

function readOperation(bytes: Buffer, start: number, end: number): WireOperation {
  const reader = readerOf(bytes, start, end);
  let id = 0;
  let body: { kind: "lookup" | "update"; start: number; end: number } | undefined;
  while (reader.pos < end) {
    const [field, wireType] = reader.tag();
    if (field === OPERATION.id.number) {
      expectWireType(wireType, WireType.Varint, "id");
      id = reader.uint32();
    } else if (field === OPERATION.lookup.number || field === OPERATION.update.number) {
      const kind = field === OPERATION.lookup.number ? "lookup" : "update";
      expectWireType(wireType, WireType.LengthDelimited, kind);
      const [bodyStart, bodyEnd] = lengthDelimited(reader);
      body = { kind, start: bodyStart, end: bodyEnd }; // a oneof: the last one wins
    } else {
      reader.skip(wireType, field);
    }
  }
  if (!body) {
    return { id, kind: "invalid", problem: new DecodeError(`operation ${id} has neither a lookup nor an update`) };
  }
  const typeName = body.kind === "lookup" ? LookupRequestSchema.typeName : UpdateRequestSchema.typeName;
  try {
    const request = reading(typeName, () => readKey(bytes, body.start, body.end, body.kind === "update"));
    return body.kind === "lookup" ? { id, kind: "lookup", key: request } : { id, kind: "update", update: request as WireUpdate };
  } catch (error) {
    if (error instanceof DecodeError) return { id, kind: "invalid", problem: error };
    throw error;
  }
}

/** Reads a LookupRequest, or with `withGenerations` an UpdateRequest, from bytes[start, end). */
function readKey(bytes: Buffer, start: number, end: number, withGenerations: boolean): WireKey | WireUpdate {
  const reader = readerOf(bytes, start, end);
  let prompt = "";
  let llmString = "";
  const generations: [number, number][] = [];
  while (reader.pos < end) {
    const [field, wireType] = reader.tag();
    // LookupRequest and UpdateRequest number prompt and llm_string alike.
    if (field === LOOKUP.prompt.number) {
      expectWireType(wireType, WireType.LengthDelimited, "prompt");
      prompt = utf8AsLatin1(bytes, lengthDelimited(reader), "prompt");
    } else if (field === LOOKUP.llmString.number) {
      expectWireType(wireType, WireType.LengthDelimited, "llm_string");
      llmString = utf8AsLatin1(bytes, lengthDelimited(reader), "llm_string");
    } else if (withGenerations && field === UPDATE.generations.number) {
      expectWireType(wireType, WireType.LengthDelimited, "generations");
      generations.push(lengthDelimited(reader));
    } else {
      reader.skip(wireType, field);
    }
  }
  if (!withGenerations) return { prompt, llmString };
  return { prompt, llmString, generations: storedGenerations(bytes, generations) };
}

/**
 * Checks each generation and copies them all into one string laid out as
 * LookupResponse.generations. The copy matters: requests arrive in slices of
 * a shared 8 KiB buffer, which a stored slice would keep alive.
 */
function storedGenerations(bytes: Buffer, spans: [number, number][]): string {
  let size = 0;
  spans.forEach(([start, end], i) => {
    try {
      fromBinary(GenerationSchema, bytes.subarray(start, end));
    } catch (error) {
      throw new DecodeError(`generations[${i}]: ${decodeProblem(error)}`);
    }
    size += fieldSize(STORED_GENERATION_TAG, end - start);
  });
  const stored = Buffer.allocUnsafe(size);
  let position = 0;
  for (const [start, end] of spans) {
    position = writeFieldHeader(stored, position, STORED_GENERATION_TAG, end - start);
    position += bytes.copy(stored, position, start, end);
  }
  return stored.toString("latin1", 0, size);
}

function readRepeated<T>(bytes: Buffer, fieldNumber: number, name: string, readItem: (start: number, end: number) => T): T[] {
  const reader = readerOf(bytes, 0, bytes.length);
  const items: T[] = [];
  while (reader.pos < bytes.length) {
    const [field, wireType] = reader.tag();
    if (field !== fieldNumber) {
      reader.skip(wireType, field);
      continue;
    }
    expectWireType(wireType, WireType.LengthDelimited, name);
    const [start, end] = lengthDelimited(reader);
    try {
      items.push(readItem(start, end));
    } catch (error) {
      if (error instanceof DecodeError) throw new DecodeError(`${name}[${items.length}]: ${error.message}`);
      throw error;
    }
  }
  return items;
}

/** Runs a reader, turning its every failure into a DecodeError that names the message. */
function reading<T>(typeName: string, read: () => T): T {
  try {
    return read();
  } catch (error) {
    throw new DecodeError(`cannot decode ${typeName}: ${error instanceof DecodeError ? error.message : decodeProblem(error)}`, {
      cause: error,
    });
  }
}

function utf8AsLatin1(bytes: Buffer, [start, end]: [number, number], name: string): string {
  if (!isUtf8(bytes.subarray(start, end))) throw new DecodeError(`${name} is not valid UTF-8`);
  return bytes.toString("latin1", start, end);
}
