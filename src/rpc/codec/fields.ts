import { fieldSize, varintSize, writeFieldHeader, writeVarint, type WireField } from "./wire.js";

/**
 * The client's requests are written by hand, as a list of fields:
 * protobuf-es's general encoder costs several microseconds a message in
 * reflection and allocation, which at a hundred thousand lookups a second
 * is most of the client's time. The bytes are exactly protobuf-es's (fields
 * in number order, fields at their default left out), which the tests check.
 */

/**
 * A field to write: its key, and its body as bytes, as a string to write as
 * UTF-8, as a varint, or as the fields of a message written in place.
 */
export interface Field {
  tag: number;
  size: number;
  bytes?: Uint8Array;
  text?: string;
  varint?: number;
  fields?: readonly (Field | undefined)[];
}

export function stringField(field: WireField, text: string): Field | undefined {
  if (text.length === 0) return undefined; // proto3 leaves out a field at its default
  return { tag: field.tag, size: utf8Length(text), text };
}

export function messageField(field: WireField, bytes: Uint8Array): Field {
  return { tag: field.tag, size: bytes.length, bytes };
}

/** A message field whose fields are written straight into the enclosing message, with no buffer of its own. */
export function nestedField(field: WireField, fields: readonly (Field | undefined)[]): Field {
  return { tag: field.tag, size: fieldsSize(fields), fields };
}

export function varintField(field: WireField, value: number): Field | undefined {
  return value === 0 ? undefined : { tag: field.tag, size: varintSize(value), varint: value };
}

export function boolField(field: WireField, value: boolean): Field | undefined {
  return value ? { tag: field.tag, size: 1, varint: 1 } : undefined;
}

/** The message made of these fields, in this order; undefined ones are left out. */
export function concatFields(fields: readonly (Field | undefined)[]): Buffer {
  const buffer = Buffer.allocUnsafe(fieldsSize(fields));
  writeFields(buffer, 0, fields);
  return buffer;
}

function fieldsSize(fields: readonly (Field | undefined)[]): number {
  let size = 0;
  for (const field of fields) {
    if (field) size += field.varint === undefined ? fieldSize(field.tag, field.size) : varintSize(field.tag) + field.size;
  }
  return size;
}

function writeFields(buffer: Buffer, position: number, fields: readonly (Field | undefined)[]): number {
  for (const field of fields) {
    if (!field) continue;
    if (field.varint !== undefined) {
      position = writeVarint(buffer, writeVarint(buffer, position, field.tag), field.varint);
      continue;
    }
    position = writeFieldHeader(buffer, position, field.tag, field.size);
    if (field.text !== undefined) position += buffer.write(field.text, position, field.size, "utf8");
    else if (field.fields !== undefined) position = writeFields(buffer, position, field.fields);
    else buffer.set(field.bytes!, position), (position += field.size);
  }
  return position;
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
