import { BinaryReader, WireType } from "@bufbuild/protobuf/wire";
import { DecodeError } from "./codec.js";

/**
 * Helpers for the messages llmcache reads by hand, field by field, where
 * protobuf-es would build objects it does not need. protobuf-es's
 * BinaryReader does the varints and skips unknown fields.
 */

/** A reader over bytes[start, end); reading past `end` is a premature EOF. */
export function readerOf(bytes: Uint8Array, start: number, end: number): BinaryReader {
  const reader = new BinaryReader(bytes.subarray(0, end));
  reader.pos = start;
  return reader;
}

/** Reads a length-delimited field's length and steps over its body; returns the body's [start, end). */
export function lengthDelimited(reader: BinaryReader): [number, number] {
  const length = reader.uint32();
  const start = reader.pos;
  const end = start + length;
  if (end > reader.len) throw new DecodeError("premature EOF");
  reader.pos = end;
  return [start, end];
}

const WIRE_TYPE_NAMES = ["varint", "64-bit", "length-delimited", "start-group", "end-group", "32-bit"];

export function expectWireType(actual: WireType, expected: WireType, field: string): void {
  if (actual !== expected) {
    throw new DecodeError(`${field} has wire type ${WIRE_TYPE_NAMES[actual]}, expected ${WIRE_TYPE_NAMES[expected]}`);
  }
}
