import { create, toBinary } from "@bufbuild/protobuf";
import {
  BatchLookupResponseSchema,
  LeaseSchema,
  ReleaseLeaseResponseSchema,
  LookupResponseSchema,
  OperationErrorSchema,
  StreamResponseSchema,
  StreamResultSchema,
  UpdateResponseSchema,
} from "../../gen/llmcache/v1/cache_pb.js";
import type { Lease } from "../engine/leases.js";
import { fieldSize, tag, varintSize, WIRE_LENGTH_DELIMITED, WIRE_VARINT, writeFieldHeader, writeVarint } from "../rpc/wire-writer.js";

/** A stream operation's outcome, ready to be written. */
export type WireResult =
  | { id: number; kind: "lookup"; stored: string | undefined; lease?: EncodedLease }
  | { id: number; kind: "update"; stored: boolean }
  | { id: number; kind: "release"; released: boolean }
  | { id: number; kind: "error"; code: number; message: string; reason: string };

const HIT_TAG = tag(LookupResponseSchema.field.hit.number, WIRE_VARINT);
const LEASE_TAG = tag(LookupResponseSchema.field.lease.number, WIRE_LENGTH_DELIMITED);
const BATCH_RESULT_TAG = tag(BatchLookupResponseSchema.field.results.number, WIRE_LENGTH_DELIMITED);
const STREAM_RESULT_TAG = tag(StreamResponseSchema.field.results.number, WIRE_LENGTH_DELIMITED);
const RESULT = StreamResultSchema.field;
const RESULT_ID_TAG = tag(RESULT.id.number, WIRE_VARINT);
const RESULT_TAGS = {
  lookup: tag(RESULT.lookup.number, WIRE_LENGTH_DELIMITED),
  update: tag(RESULT.update.number, WIRE_LENGTH_DELIMITED),
  error: tag(RESULT.error.number, WIRE_LENGTH_DELIMITED),
  release: tag(RESULT.releaseLease.number, WIRE_LENGTH_DELIMITED),
};
const ERROR_CODE_TAG = tag(OperationErrorSchema.field.code.number, WIRE_VARINT);
const ERROR_MESSAGE_TAG = tag(OperationErrorSchema.field.message.number, WIRE_LENGTH_DELIMITED);
const ERROR_REASON_TAG = tag(OperationErrorSchema.field.reason.number, WIRE_LENGTH_DELIMITED);
const STORED_TAG = tag(UpdateResponseSchema.field.stored.number, WIRE_VARINT);
/** UpdateResponse with stored = true; stored = false is the empty message. */
const STORED = Buffer.from([STORED_TAG, 1]);
/** ReleaseLeaseResponse with released = true; false is the empty message. */
const RELEASED = Buffer.from([tag(ReleaseLeaseResponseSchema.field.released.number, WIRE_VARINT), 1]);

/** A granted lease as the bytes of a Lease message: leases are rare, so protobuf-es writes them. */
export type EncodedLease = Buffer & { readonly __encodedLease: true };

export function encodeLease({ token, leaseMs }: Lease): EncodedLease {
  return Buffer.from(toBinary(LeaseSchema, create(LeaseSchema, { token, leaseMs: BigInt(leaseMs) }))) as EncodedLease;
}

/**
 * Writers for the replies that carry stored generations. A hit is the hit
 * flag followed by the stored bytes as they are (they are already laid out
 * as LookupResponse.generations): nothing is decoded or encoded again.
 */
export function encodeLookupResponse(stored: string | undefined, lease?: EncodedLease): Buffer {
  const buffer = Buffer.allocUnsafe(lookupBodySize(stored, lease));
  writeLookupBody(buffer, 0, stored, lease);
  return buffer;
}

export function encodeReleaseLeaseResponse(released: boolean): Buffer {
  return released ? RELEASED : Buffer.alloc(0);
}

export function encodeUpdateResponse(stored: boolean): Buffer {
  return stored ? STORED : Buffer.alloc(0);
}

export function encodeBatchLookupResponse(results: readonly (string | undefined)[]): Buffer {
  const buffer = Buffer.allocUnsafe(batchLookupResponseSize(results));
  let position = 0;
  for (const stored of results) {
    position = writeFieldHeader(buffer, position, BATCH_RESULT_TAG, lookupBodySize(stored));
    position = writeLookupBody(buffer, position, stored);
  }
  return buffer;
}

/** The size of a LookupResponse for what the store holds (undefined: a miss). */
export function lookupResponseSize(stored: string | undefined): number {
  return lookupBodySize(stored);
}

export function batchLookupResponseSize(results: readonly (string | undefined)[]): number {
  let size = 0;
  for (const stored of results) size += fieldSize(BATCH_RESULT_TAG, lookupBodySize(stored));
  return size;
}

/**
 * The results of one stream message as StreamResponses of at most
 * `maxBytes` each (one result never larger is split across), in order: the
 * contract lets results come in more messages than the requests.
 */
export function encodeStreamResponses(results: readonly WireResult[], maxBytes: number): Buffer[] {
  const messages: Buffer[] = [];
  let start = 0;
  let size = 0;
  results.forEach((result, i) => {
    const resultSize = fieldSize(STREAM_RESULT_TAG, resultBodySize(result));
    if (i > start && size + resultSize > maxBytes) {
      messages.push(encodeStreamResponse(results.slice(start, i)));
      [start, size] = [i, 0];
    }
    size += resultSize;
  });
  messages.push(encodeStreamResponse(results.slice(start)));
  return messages;
}

export function encodeStreamResponse(results: readonly WireResult[]): Buffer {
  let size = 0;
  for (const result of results) size += fieldSize(STREAM_RESULT_TAG, resultBodySize(result));
  const buffer = Buffer.allocUnsafe(size);
  let position = 0;
  for (const result of results) {
    position = writeFieldHeader(buffer, position, STREAM_RESULT_TAG, resultBodySize(result));
    if (result.id !== 0) position = writeVarint(buffer, writeVarint(buffer, position, RESULT_ID_TAG), result.id);
    position = writeFieldHeader(buffer, position, RESULT_TAGS[result.kind], outcomeSize(result));
    if (result.kind === "lookup") position = writeLookupBody(buffer, position, result.stored, result.lease);
    else if (result.kind === "update" && result.stored) position += STORED.copy(buffer, position);
    else if (result.kind === "release" && result.released) position += RELEASED.copy(buffer, position);
    else if (result.kind === "error") position = writeErrorBody(buffer, position, result);
  }
  return buffer;
}

function lookupBodySize(stored: string | undefined, lease?: EncodedLease): number {
  if (lease) return fieldSize(LEASE_TAG, lease.length); // a miss granted a lease
  return stored === undefined ? 0 : varintSize(HIT_TAG) + 1 + stored.length;
}

function writeLookupBody(buffer: Buffer, position: number, stored: string | undefined, lease?: EncodedLease): number {
  if (lease) {
    position = writeFieldHeader(buffer, position, LEASE_TAG, lease.length);
    return position + lease.copy(buffer, position);
  }
  if (stored === undefined) return position; // a miss: every field at its default
  position = writeVarint(buffer, position, HIT_TAG);
  buffer[position++] = 1;
  return position + buffer.write(stored, position, "latin1");
}

function resultBodySize(result: WireResult): number {
  const idSize = result.id === 0 ? 0 : varintSize(RESULT_ID_TAG) + varintSize(result.id);
  return idSize + fieldSize(RESULT_TAGS[result.kind], outcomeSize(result));
}

function outcomeSize(result: WireResult): number {
  switch (result.kind) {
    case "lookup":
      return lookupBodySize(result.stored, result.lease);
    case "update":
      return result.stored ? STORED.length : 0;
    case "release":
      return result.released ? RELEASED.length : 0;
    case "error": {
      const reason = result.reason.length === 0 ? 0 : fieldSize(ERROR_REASON_TAG, Buffer.byteLength(result.reason));
      return varintSize(ERROR_CODE_TAG) + varintSize(result.code) + fieldSize(ERROR_MESSAGE_TAG, Buffer.byteLength(result.message)) + reason;
    }
  }
}

function writeErrorBody(buffer: Buffer, position: number, error: { code: number; message: string; reason: string }): number {
  position = writeVarint(buffer, writeVarint(buffer, position, ERROR_CODE_TAG), error.code);
  position = writeFieldHeader(buffer, position, ERROR_MESSAGE_TAG, Buffer.byteLength(error.message));
  position += buffer.write(error.message, position, "utf8");
  if (error.reason.length === 0) return position;
  position = writeFieldHeader(buffer, position, ERROR_REASON_TAG, Buffer.byteLength(error.reason));
  return position + buffer.write(error.reason, position, "utf8");
}
