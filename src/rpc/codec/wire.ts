import { ScalarType, type DescField } from "@bufbuild/protobuf";
import { WireType } from "@bufbuild/protobuf/wire";
import { isUtf8 } from "node:buffer";
import { DecodeError, decodeProblem } from "../codec.js";
import type { KeyBytes } from "../key-bytes.js";
import { LimitExceededError } from "../limit-exceeded-error.js";
import { WireReader } from "./wire-reader.js";

/**
 * The pieces of the protobuf binary format that the codecs share: field
 * keys, varints, and reading a message field by field with a WireReader
 * (which does the varints and skips unknown fields). Field
 * numbers and wire types come from the protobuf-es descriptors, never from
 * numbers written here.
 */

/** A field as the codecs write and read it. */
export interface WireField {
  number: number;
  wireType: WireType;
  /** The field's key: its number and wire type, as one varint. */
  tag: number;
  /** Its name in the .proto, for messages: "llm_string". */
  name: string;
}

const messages = new WeakMap<object, Record<string, WireField>>();

/** Each field of a message (oneof members included), by its protobuf-es name, from the message's descriptor. */
export function wireFields<Name extends string>(schema: { readonly field: Record<Name, DescField> }): Record<Name, WireField> {
  let fields = messages.get(schema);
  if (!fields) {
    fields = {};
    for (const [localName, field] of Object.entries<DescField>(schema.field)) {
      const wireType = wireTypeOf(field);
      fields[localName] = { number: field.number, wireType, tag: tag(field.number, wireType), name: field.name };
    }
    messages.set(schema, fields);
  }
  return fields as Record<Name, WireField>;
}

/** The wire type a field is written with (a repeated number is written packed). */
export function wireTypeOf(field: DescField): WireType {
  switch (field.fieldKind) {
    case "scalar":
      return scalarWireType(field.scalar);
    case "enum":
      return WireType.Varint;
    case "message":
      return field.delimitedEncoding ? WireType.StartGroup : WireType.LengthDelimited;
    case "list":
      if (field.listKind === "message") return field.delimitedEncoding ? WireType.StartGroup : WireType.LengthDelimited;
      return WireType.LengthDelimited;
    case "map":
      return WireType.LengthDelimited;
  }
}

export function scalarWireType(scalar: ScalarType): WireType {
  switch (scalar) {
    case ScalarType.STRING:
    case ScalarType.BYTES:
      return WireType.LengthDelimited;
    case ScalarType.DOUBLE:
    case ScalarType.FIXED64:
    case ScalarType.SFIXED64:
      return WireType.Bit64;
    case ScalarType.FLOAT:
    case ScalarType.FIXED32:
    case ScalarType.SFIXED32:
      return WireType.Bit32;
    default:
      return WireType.Varint;
  }
}

export function tag(fieldNumber: number, wireType: WireType): number {
  return (fieldNumber << 3) | wireType;
}

// Writing.

/** How many bytes a varint of this non-negative safe integer takes. */
export function varintSize(value: number): number {
  let size = 1;
  while (value >= 0x80) {
    value = Math.floor(value / 0x80);
    size++;
  }
  return size;
}

/** Writes a non-negative safe integer as a varint; returns the position after it. */
export function writeVarint(buffer: Uint8Array, position: number, value: number): number {
  while (value >= 0x80) {
    buffer[position++] = (value % 0x80) | 0x80;
    value = Math.floor(value / 0x80);
  }
  buffer[position++] = value;
  return position;
}

/** The size of a length-delimited field whose body has this size. */
export function fieldSize(fieldTag: number, bodySize: number): number {
  return varintSize(fieldTag) + varintSize(bodySize) + bodySize;
}

/** Writes a length-delimited field's key and length; the body follows at the returned position. */
export function writeFieldHeader(buffer: Uint8Array, position: number, fieldTag: number, bodySize: number): number {
  return writeVarint(buffer, writeVarint(buffer, position, fieldTag), bodySize);
}

/**
 * A reply of one bool field (UpdateResponse.stored, ReleaseLeaseResponse.released):
 * true is the field's two bytes, false the empty message. Written alone, or
 * at a position in a stream's result.
 */
export function flagMessage(field: WireField) {
  const set = Buffer.from([field.tag, 1]);
  return {
    write: (value: boolean): Buffer => (value ? set : Buffer.alloc(0)),
    size: (value: boolean): number => (value ? set.length : 0),
    writeAt: (buffer: Buffer, position: number, value: boolean): number => (value ? position + set.copy(buffer, position) : position),
    /**
     * The flag in the message bytes[start, end), as protobuf-es reads it:
     * the last occurrence wins and other fields are skipped. The replies
     * the server writes (nothing, or the flag set) are known at a glance:
     * a client reads one per update, and protobuf-es's general decoder
     * cost it more than the rest of reading the reply.
     */
    read: (bytes: Uint8Array, start: number, end: number): boolean => {
      if (end === start) return false;
      if (end - start === set.length && bytes[start] === set[0] && bytes[start + 1] === set[1]) return true;
      const reader = readerOf(bytes, start, end);
      let value = false;
      while (reader.pos < end) {
        const [number, wireType] = reader.tag();
        if (number === field.number) value = readBool(reader, wireType, field);
        else reader.skip(wireType, number);
      }
      return value;
    },
  };
}

// Reading.

/** A reader over bytes[start, end); reading past `end` is a premature EOF. */
export function readerOf(bytes: Uint8Array, start: number, end: number): WireReader {
  return new WireReader(bytes, start, end);
}

/** Reads a length-delimited field's length and steps over its body; returns the body's [start, end). */
export function lengthDelimited(reader: WireReader): [number, number] {
  const length = reader.uint32();
  const start = reader.pos;
  const end = start + length;
  if (end > reader.len) throw new DecodeError("premature EOF");
  reader.pos = end;
  return [start, end];
}

const WIRE_TYPE_NAMES = ["varint", "64-bit", "length-delimited", "start-group", "end-group", "32-bit"];

export function expectWireType(actual: WireType, field: WireField): void {
  if (actual !== field.wireType) throw wrongWireType(field.name, actual, field.wireType);
}

export function wrongWireType(name: string, actual: WireType, expected: WireType): DecodeError {
  return new DecodeError(`${name} has wire type ${WIRE_TYPE_NAMES[actual]}, expected ${WIRE_TYPE_NAMES[expected]}`);
}

/** A string field as the server holds keys and names: its UTF-8 bytes, checked, one character per byte. */
export function readKeyBytes(bytes: Buffer, reader: WireReader, wireType: WireType, field: WireField): KeyBytes {
  expectWireType(wireType, field);
  const [start, end] = lengthDelimited(reader);
  if (!isUtf8(bytes.subarray(start, end))) throw new DecodeError(`${field.name} is not valid UTF-8`);
  return bytes.toString("latin1", start, end) as KeyBytes;
}

export function readBool(reader: WireReader, wireType: WireType, field: WireField): boolean {
  expectWireType(wireType, field);
  return reader.bool();
}

/**
 * Reads each occurrence of a repeated message field of the message in
 * bytes[start, end), skipping other fields. A failure names the item:
 * "updates[3]: prompt is not valid UTF-8".
 */
export function readRepeated<T>(bytes: Buffer, field: WireField, readItem: (start: number, end: number) => T, start = 0, end = bytes.length): T[] {
  const reader = readerOf(bytes, start, end);
  const items: T[] = [];
  while (reader.pos < end) {
    const [number, wireType] = reader.tag();
    if (number !== field.number) {
      reader.skip(wireType, number);
      continue;
    }
    expectWireType(wireType, field);
    const [itemStart, itemEnd] = lengthDelimited(reader);
    try {
      items.push(readItem(itemStart, itemEnd));
    } catch (error) {
      const where = `${field.name}[${items.length}]`;
      if (error instanceof LimitExceededError) throw new LimitExceededError(where, error);
      throw new DecodeError(`${where}: ${error instanceof DecodeError ? error.message : decodeProblem(error)}`, { cause: error });
    }
  }
  return items;
}
