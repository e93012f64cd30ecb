import { fieldSize, varintSize, writeFieldHeader, writeVarint, type WireField } from "./wire.js";

/**
 * The client's requests are written by hand, as a list of fields:
 * protobuf-es's general encoder costs several microseconds a message in
 * reflection and allocation, which at a hundred thousand lookups a second
 * is most of the client's time. The bytes are exactly protobuf-es's (fields
 * in number order, fields at their default left out), which the tests check.
 */

/** A field to write: its key, and its body as bytes, as a string to write as UTF-8, or as a varint. */
export interface Field {
  tag: number;
  size: number;
  bytes?: Uint8Array;
  text?: string;
  varint?: number;
}

export function stringField(field: WireField, text: string): Field | undefined {
  if (text.length === 0) return undefined; // proto3 leaves out a field at its default
  return { tag: field.tag, size: utf8Length(text), text };
}

export function messageField(field: WireField, bytes: Uint8Array): Field {
  return { tag: field.tag, size: bytes.length, bytes };
}

export function varintField(field: WireField, value: number): Field | undefined {
  return value === 0 ? undefined : { tag: field.tag, size: varintSize(value), varint: value };
}

export function boolField(field: WireField, value: boolean): Field | undefined {
  return value ? { tag: field.tag, size: 1, varint: 1 } : undefined;
}

/** The message made of these fields, in this order; undefined ones are left out. */
export function concatFields(fields: readonly (Field | undefined)[]): Buffer {
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
