import { fromBinary } from "@bufbuild/protobuf";
import {
  InvalidationSchema,
  LookupRequestSchema,
  OperationErrorSchema,
  ReleaseLeaseRequestSchema,
  StreamOperationSchema,
  StreamRequestSchema,
  StreamResponseSchema,
  StreamResultSchema,
  UpdateRequestSchema,
} from "../../../gen/llmcache/v1/cache_pb.js";
import type { Lease } from "../../call-options.js";
import type { Generation } from "../../generation.js";
import { DecodeError, decoding } from "../codec.js";
import { LimitExceededError } from "../limit-exceeded-error.js";
import type { StoredGenerations } from "./generations.js";
import {
  lookupResponseSize,
  readLookup,
  readLookupResponse,
  writeLookupBody,
  type EncodedLease,
  type LeaseHolder,
  type WireLookup,
  type WireNearGrant,
} from "./lookup.js";
import { readRelease, readReleaseLeaseResponse, releaseLeaseResponseSize, writeReleaseLeaseBody, type WireRelease } from "./release-lease.js";
import type { RequestChecks } from "./request-checks.js";
import { readUpdate, readUpdateResponse, updateResponseSize, writeUpdateBody, type WireUpdate } from "./update.js";
import {
  expectWireType,
  fieldSize,
  lengthDelimited,
  readerOf,
  readRepeated,
  varintSize,
  wireFields,
  writeFieldHeader,
  writeVarint,
  type WireField,
} from "./wire.js";

/**
 * The Stream method's messages: many operations, each with an id, framed
 * around the requests and replies of Lookup, Update and ReleaseLease
 * (lookup.ts, update.ts, release-lease.ts), which are written and read as
 * they are for those methods.
 */

const REQUEST = wireFields(StreamRequestSchema);
const OPERATION = wireFields(StreamOperationSchema);
const RESPONSE = wireFields(StreamResponseSchema);
const RESULT = wireFields(StreamResultSchema);
const ERROR = wireFields(OperationErrorSchema);
const INVALIDATION = wireFields(InvalidationSchema);

export type StreamOperationKind = "lookup" | "update" | "release" | "cancel" | "watch";

/** The member of StreamOperation's oneof for each kind, and of StreamResult's for each outcome. */
const OPERATION_KINDS: Record<StreamOperationKind, WireField> = {
  lookup: OPERATION.lookup,
  update: OPERATION.update,
  release: OPERATION.releaseLease,
  cancel: OPERATION.cancel,
  watch: OPERATION.watch,
};
const RESULT_KINDS: Record<WireResult["kind"], WireField> = {
  lookup: RESULT.lookup,
  update: RESULT.update,
  release: RESULT.releaseLease,
  error: RESULT.error,
  invalidation: RESULT.invalidation,
};

// StreamRequest: the client writes it around its operations' encoded requests...

export interface StreamOperation {
  id: number;
  kind: StreamOperationKind;
  /** The encoded LookupRequest, UpdateRequest or ReleaseLeaseRequest; empty for a cancel or a watch. */
  request: Uint8Array;
}

/** What an operation adds to a StreamRequest. */
export function streamOperationSize(operation: StreamOperation): number {
  return fieldSize(REQUEST.operations.tag, operationBodySize(operation));
}

function operationBodySize({ id, kind, request }: StreamOperation): number {
  return varintSize(OPERATION.id.tag) + varintSize(id) + fieldSize(OPERATION_KINDS[kind].tag, request.length);
}

/** A StreamRequest of these operations, whose sizes (streamOperationSize) add up to `size`. */
export function encodeStreamRequest(operations: readonly StreamOperation[], size: number): Buffer {
  const buffer = Buffer.allocUnsafe(size);
  let position = 0;
  for (const operation of operations) {
    position = writeFieldHeader(buffer, position, REQUEST.operations.tag, operationBodySize(operation));
    position = writeVarint(buffer, writeVarint(buffer, position, OPERATION.id.tag), operation.id);
    position = writeFieldHeader(buffer, position, OPERATION_KINDS[operation.kind].tag, operation.request.length);
    buffer.set(operation.request, position);
    position += operation.request.length;
  }
  return buffer;
}

// ...and the server reads it.

export type WireOperation =
  | { id: number; kind: "lookup"; lookup: WireLookup }
  | { id: number; kind: "update"; update: WireUpdate }
  | { id: number; kind: "release"; release: WireRelease }
  /** Stop the waiting lookup with this id. */
  | { id: number; kind: "cancel" }
  /** Tell the stream of changes from now on (see WatchChanges). */
  | { id: number; kind: "watch" }
  /** `of`: what it was meant to be, when that much could be read. */
  | { id: number; kind: "invalid"; of?: StreamOperationKind; problem: DecodeError | LimitExceededError };

/** The kinds of operation, by their field number in StreamOperation. */
const KINDS_BY_NUMBER = new Map(Object.entries(OPERATION_KINDS).map(([kind, field]) => [field.number, kind as StreamOperationKind]));

/**
 * A malformed operation becomes an "invalid" operation that carries its
 * problem, so that it can be answered on its own; only a malformed
 * envelope, where ids cannot be trusted, throws.
 */
export function readStreamRequest(bytes: Buffer, checks: RequestChecks): WireOperation[] {
  return decoding(StreamRequestSchema.typeName, () =>
    readRepeated(bytes, REQUEST.operations, (start, end) => readOperation(bytes, start, end, checks)),
  );
}

function readOperation(bytes: Buffer, start: number, end: number, checks: RequestChecks): WireOperation {
  const reader = readerOf(bytes, start, end);
  let id = 0;
  let body: { kind: StreamOperationKind; start: number; end: number } | undefined;
  while (reader.pos < end) {
    const [field, wireType] = reader.tag();
    const kind = KINDS_BY_NUMBER.get(field);
    if (field === OPERATION.id.number) {
      expectWireType(wireType, OPERATION.id);
      id = reader.uint32();
    } else if (kind) {
      expectWireType(wireType, OPERATION_KINDS[kind]);
      const [bodyStart, bodyEnd] = lengthDelimited(reader);
      body = { kind, start: bodyStart, end: bodyEnd }; // a oneof: the last one wins
    } else {
      reader.skip(wireType, field);
    }
  }
  if (!body) {
    return { id, kind: "invalid", problem: new DecodeError(`operation ${id} has no lookup, update, release_lease, cancel or watch`) };
  }
  try {
    switch (body.kind) {
      case "lookup":
        return { id, kind: "lookup", lookup: decoding(LookupRequestSchema.typeName, () => readLookup(bytes, body.start, body.end, checks)) };
      case "update":
        return { id, kind: "update", update: decoding(UpdateRequestSchema.typeName, () => readUpdate(bytes, body.start, body.end, checks)) };
      case "release":
        return { id, kind: "release", release: decoding(ReleaseLeaseRequestSchema.typeName, () => readRelease(bytes, body.start, body.end, checks)) };
      case "cancel":
        // CancelOperation has no fields: whatever it holds is unknown, and skipped.
        return { id, kind: "cancel" };
      case "watch":
        // WatchChanges has no fields either.
        return { id, kind: "watch" };
    }
  } catch (error) {
    if (error instanceof DecodeError || error instanceof LimitExceededError) return { id, kind: "invalid", of: body.kind, problem: error };
    throw error;
  }
}

// StreamResponse: the server writes it...

/** A stream operation's outcome, ready to be written. */
export type WireResult =
  | { id: number; kind: "lookup"; stored: StoredGenerations | undefined; lease?: EncodedLease; near?: WireNearGrant | undefined }
  | { id: number; kind: "update"; stored: boolean }
  | { id: number; kind: "release"; released: boolean }
  | { id: number; kind: "error"; code: number; message: string; reason: string }
  /** `keys` are ASCII (see WireNearGrant). */
  | { id: number; kind: "invalidation"; keys: readonly string[]; all: boolean };

/**
 * The results of one stream message as StreamResponses of at most
 * `maxBytes` each (one result never larger is split across), in order: the
 * contract lets results come in more messages than the requests.
 */
export function writeStreamResponses(results: readonly WireResult[], maxBytes: number): Buffer[] {
  const messages: Buffer[] = [];
  let start = 0;
  let size = 0;
  results.forEach((result, i) => {
    const resultSize = fieldSize(RESPONSE.results.tag, resultBodySize(result));
    if (i > start && size + resultSize > maxBytes) {
      messages.push(writeStreamResponse(results.slice(start, i)));
      [start, size] = [i, 0];
    }
    size += resultSize;
  });
  messages.push(writeStreamResponse(results.slice(start)));
  return messages;
}

export function writeStreamResponse(results: readonly WireResult[]): Buffer {
  let size = 0;
  for (const result of results) size += fieldSize(RESPONSE.results.tag, resultBodySize(result));
  const buffer = Buffer.allocUnsafe(size);
  let position = 0;
  for (const result of results) {
    position = writeFieldHeader(buffer, position, RESPONSE.results.tag, resultBodySize(result));
    if (result.id !== 0) position = writeVarint(buffer, writeVarint(buffer, position, RESULT.id.tag), result.id);
    position = writeFieldHeader(buffer, position, RESULT_KINDS[result.kind].tag, outcomeSize(result));
    if (result.kind === "lookup") position = writeLookupBody(buffer, position, result.stored, result.lease, result.near);
    else if (result.kind === "invalidation") position = writeInvalidationBody(buffer, position, result);
    else if (result.kind === "update") position = writeUpdateBody(buffer, position, result.stored);
    else if (result.kind === "release") position = writeReleaseLeaseBody(buffer, position, result.released);
    else position = writeErrorBody(buffer, position, result);
  }
  return buffer;
}

function resultBodySize(result: WireResult): number {
  const idSize = result.id === 0 ? 0 : varintSize(RESULT.id.tag) + varintSize(result.id);
  return idSize + fieldSize(RESULT_KINDS[result.kind].tag, outcomeSize(result));
}

function outcomeSize(result: WireResult): number {
  switch (result.kind) {
    case "lookup":
      return lookupResponseSize(result.stored, result.lease, result.near);
    case "invalidation":
      return invalidationSize(result);
    case "update":
      return updateResponseSize(result.stored);
    case "release":
      return releaseLeaseResponseSize(result.released);
    case "error": {
      const reason = result.reason.length === 0 ? 0 : fieldSize(ERROR.reason.tag, Buffer.byteLength(result.reason));
      return varintSize(ERROR.code.tag) + varintSize(result.code) + fieldSize(ERROR.message.tag, Buffer.byteLength(result.message)) + reason;
    }
  }
}

function invalidationSize({ keys, all }: { keys: readonly string[]; all: boolean }): number {
  let size = all ? varintSize(INVALIDATION.all.tag) + 1 : 0;
  for (const key of keys) size += fieldSize(INVALIDATION.keys.tag, key.length);
  return size;
}

function writeInvalidationBody(buffer: Buffer, position: number, { keys, all }: { keys: readonly string[]; all: boolean }): number {
  for (const key of keys) {
    position = writeFieldHeader(buffer, position, INVALIDATION.keys.tag, key.length);
    position += buffer.write(key, position, "latin1");
  }
  if (!all) return position;
  position = writeVarint(buffer, position, INVALIDATION.all.tag);
  buffer[position] = 1;
  return position + 1;
}

function writeErrorBody(buffer: Buffer, position: number, error: { code: number; message: string; reason: string }): number {
  position = writeVarint(buffer, writeVarint(buffer, position, ERROR.code.tag), error.code);
  position = writeFieldHeader(buffer, position, ERROR.message.tag, Buffer.byteLength(error.message));
  position += buffer.write(error.message, position, "utf8");
  if (error.reason.length === 0) return position;
  position = writeFieldHeader(buffer, position, ERROR.reason.tag, Buffer.byteLength(error.reason));
  return position + buffer.write(error.reason, position, "utf8");
}

// ...and the client reads it.

/** One result of a stream message, decoded as far as its caller needs. */
export type StreamOutcome =
  /** `near`: leave to keep the hit (see NearGrant), with the reply's bytes to keep. */
  | { id: number; kind: "lookup"; generations: Generation[] | null; lease: Lease | null; near: (WireNearGrant & { response: Buffer }) | null }
  | { id: number; kind: "update"; stored: boolean }
  | { id: number; kind: "release"; released: boolean }
  | { id: number; kind: "error"; code: number; message: string; reason: string }
  | { id: number; kind: "invalidation"; keys: string[]; all: boolean }
  | { id: number; kind: "none" };

export function decodeStreamResponse(bytes: Buffer): StreamOutcome[] {
  return decoding(StreamResponseSchema.typeName, () => readRepeated(bytes, RESPONSE.results, (start, end) => readResult(bytes, start, end)));
}

function readResult(bytes: Buffer, start: number, end: number): StreamOutcome {
  const reader = readerOf(bytes, start, end);
  let id = 0;
  let outcome: StreamOutcome = { id, kind: "none" };
  while (reader.pos < end) {
    const [field, wireType] = reader.tag();
    if (field === RESULT.id.number) {
      expectWireType(wireType, RESULT.id);
      id = reader.uint32();
    } else if (field === RESULT.lookup.number) {
      expectWireType(wireType, RESULT.lookup);
      const granted: LeaseHolder = { lease: null, near: null };
      const [lookupStart, lookupEnd] = lengthDelimited(reader);
      const generations = readLookupResponse(bytes, lookupStart, lookupEnd, granted);
      // A hit to keep keeps its reply's own bytes, not the message's buffer they sit in.
      const near = granted.near && { ...granted.near, response: Buffer.from(bytes.subarray(lookupStart, lookupEnd)) };
      outcome = { id, kind: "lookup", generations, lease: granted.lease, near: near ?? null };
    } else if (field === RESULT.update.number) {
      expectWireType(wireType, RESULT.update);
      outcome = { id, kind: "update", stored: readUpdateResponse(bytes, ...lengthDelimited(reader)) };
    } else if (field === RESULT.releaseLease.number) {
      expectWireType(wireType, RESULT.releaseLease);
      outcome = { id, kind: "release", released: readReleaseLeaseResponse(bytes, ...lengthDelimited(reader)) };
    } else if (field === RESULT.error.number) {
      expectWireType(wireType, RESULT.error);
      const [errorStart, errorEnd] = lengthDelimited(reader);
      const { code, message, reason } = fromBinary(OperationErrorSchema, bytes.subarray(errorStart, errorEnd));
      outcome = { id, kind: "error", code, message, reason };
    } else if (field === RESULT.invalidation.number) {
      expectWireType(wireType, RESULT.invalidation);
      const [invalidationStart, invalidationEnd] = lengthDelimited(reader);
      const { keys, all } = fromBinary(InvalidationSchema, bytes.subarray(invalidationStart, invalidationEnd));
      outcome = { id, kind: "invalidation", keys, all };
    } else {
      reader.skip(wireType, field);
    }
  }
  outcome.id = id; // the id may come after the outcome
  return outcome;
}
