/**
 * The few pieces of the protobuf binary format that llmcache writes by hand,
 * where it splices stored bytes into a reply or frames many operations at
 * once. Everything else is encoded by protobuf-es.
 */

export const WIRE_VARINT = 0;
export const WIRE_LENGTH_DELIMITED = 2;

/** The key of a field: its number and wire type, as one varint. */
export function tag(fieldNumber: number, wireType: number): number {
  return (fieldNumber << 3) | wireType;
}

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
export function fieldSize(tagValue: number, bodySize: number): number {
  return varintSize(tagValue) + varintSize(bodySize) + bodySize;
}

/** Writes a length-delimited field's key and length; the body follows at the returned position. */
export function writeFieldHeader(buffer: Uint8Array, position: number, tagValue: number, bodySize: number): number {
  return writeVarint(buffer, writeVarint(buffer, position, tagValue), bodySize);
}
