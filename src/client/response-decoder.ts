import { fromBinary } from "@bufbuild/protobuf";
import { WireType } from "@bufbuild/protobuf/wire";
import { isUtf8 } from "node:buffer";
import {
  BatchLookupResponseSchema,
  GenerationSchema,
  LeaseSchema,
  LookupResponseSchema,
  OperationErrorSchema,
  ReleaseLeaseResponseSchema,
  StreamResponseSchema,
  StreamResultSchema,
  UpdateResponseSchema,
} from "../../gen/llmcache/v1/cache_pb.js";
import type { LeasedLookup, Lease } from "../call-options.js";
import type { Generation } from "../generation.js";
import { DecodeError, decodeProblem } from "../rpc/codec.js";
import { fromWireGeneration } from "../rpc/generation-codec.js";
import { expectWireType, lengthDelimited, readerOf } from "../rpc/wire-reader.js";

/** One result of a stream message, decoded as far as its caller needs. */
export type StreamOutcome =
  | { id: number; kind: "lookup"; generations: Generation[] | null; lease: Lease | null }
  | { id: number; kind: "update"; stored: boolean }
  | { id: number; kind: "release"; released: boolean }
  | { id: number; kind: "error"; code: number; message: string; reason: string }
  | { id: number; kind: "none" };

const LOOKUP = LookupResponseSchema.field;
const RESULT = StreamResultSchema.field;
const TEXT = GenerationSchema.field.text.number;

/**
 * The client's replies, read by hand for the same reason the requests are
 * written by hand (see request-encoder.ts). A generation that is text alone
 * is read directly; any other goes through protobuf-es. Malformed bytes
 * throw a DecodeError.
 */
export function decodeLookupResponse(bytes: Buffer): Generation[] | null {
  return decoding(LookupResponseSchema.typeName, () => readLookupResponse(bytes, 0, bytes.length));
}

/** A lookup that asked for a lease: its generations, and the lease if one was granted. */
export function decodeLeasedLookupResponse(bytes: Buffer): LeasedLookup {
  return decoding(LookupResponseSchema.typeName, () => {
    const granted: LeaseHolder = { lease: null };
    const generations = readLookupResponse(bytes, 0, bytes.length, granted);
    return { generations, lease: granted.lease };
  });
}

/** Whether the lease was released. */
export function decodeReleaseLeaseResponse(bytes: Buffer): boolean {
  return decoding(ReleaseLeaseResponseSchema.typeName, () => fromBinary(ReleaseLeaseResponseSchema, bytes).released);
}

/** Whether the update stored its generations. */
export function decodeUpdateResponse(bytes: Buffer): boolean {
  return decoding(UpdateResponseSchema.typeName, () => fromBinary(UpdateResponseSchema, bytes).stored);
}

export function decodeBatchLookupResponse(bytes: Buffer): (Generation[] | null)[] {
  return decoding(BatchLookupResponseSchema.typeName, () => readBatchLookupResponse(bytes));
}

export function decodeStreamResponse(bytes: Buffer): StreamOutcome[] {
  return decoding(StreamResponseSchema.typeName, () => readStreamResponse(bytes));
}

/** Runs a reader, turning its every failure into a DecodeError that names the message. */
function decoding<T>(typeName: string, read: () => T): T {
  try {
    return read();
  } catch (error) {
    const problem = error instanceof DecodeError ? error.message : decodeProblem(error);
    throw new DecodeError(`cannot decode ${typeName}: ${problem}`, { cause: error });
  }
}

/** Where a reader puts a lease it finds. */
interface LeaseHolder {
  lease: Lease | null;
}

function readLookupResponse(bytes: Buffer, start: number, end: number, granted?: LeaseHolder): Generation[] | null {
  const reader = readerOf(bytes, start, end);
  let hit = false;
  const generations: Generation[] = [];
  while (reader.pos < end) {
    const [field, wireType] = reader.tag();
    if (field === LOOKUP.hit.number) {
      expectWireType(wireType, WireType.Varint, "hit");
      hit = reader.bool();
    } else if (field === LOOKUP.generations.number) {
      expectWireType(wireType, WireType.LengthDelimited, "generations");
      generations.push(decodeGeneration(bytes, lengthDelimited(reader)));
    } else if (field === LOOKUP.lease.number && granted) {
      expectWireType(wireType, WireType.LengthDelimited, "lease");
      const [leaseStart, leaseEnd] = lengthDelimited(reader);
      const { token, leaseMs } = fromBinary(LeaseSchema, bytes.subarray(leaseStart, leaseEnd));
      if (token === "") throw new DecodeError("lease: the token is empty");
      granted.lease = { token, leaseMs: Number(leaseMs) };
    } else {
      reader.skip(wireType, field);
    }
  }
  return hit ? generations : null;
}

function readBatchLookupResponse(bytes: Buffer): (Generation[] | null)[] {
  const reader = readerOf(bytes, 0, bytes.length);
  const results: (Generation[] | null)[] = [];
  while (reader.pos < bytes.length) {
    const [field, wireType] = reader.tag();
    if (field !== BatchLookupResponseSchema.field.results.number) {
      reader.skip(wireType, field);
      continue;
    }
    expectWireType(wireType, WireType.LengthDelimited, "results");
    results.push(readLookupResponse(bytes, ...lengthDelimited(reader)));
  }
  return results;
}

function readStreamResponse(bytes: Buffer): StreamOutcome[] {
  const reader = readerOf(bytes, 0, bytes.length);
  const outcomes: StreamOutcome[] = [];
  while (reader.pos < bytes.length) {
    const [field, wireType] = reader.tag();
    if (field !== StreamResponseSchema.field.results.number) {
      reader.skip(wireType, field);
      continue;
    }
    expectWireType(wireType, WireType.LengthDelimited, "results");
    outcomes.push(decodeStreamResult(bytes, ...lengthDelimited(reader)));
  }
  return outcomes;
}

function decodeStreamResult(bytes: Buffer, start: number, end: number): StreamOutcome {
  const reader = readerOf(bytes, start, end);
  let id = 0;
  let outcome: StreamOutcome = { id, kind: "none" };
  while (reader.pos < end) {
    const [field, wireType] = reader.tag();
    if (field === RESULT.id.number) {
      expectWireType(wireType, WireType.Varint, "id");
      id = reader.uint32();
    } else if (field === RESULT.lookup.number) {
      expectWireType(wireType, WireType.LengthDelimited, "lookup");
      const granted: LeaseHolder = { lease: null };
      outcome = { id, kind: "lookup", generations: readLookupResponse(bytes, ...lengthDelimited(reader), granted), lease: granted.lease };
    } else if (field === RESULT.update.number) {
      expectWireType(wireType, WireType.LengthDelimited, "update");
      const [updateStart, updateEnd] = lengthDelimited(reader);
      outcome = { id, kind: "update", stored: fromBinary(UpdateResponseSchema, bytes.subarray(updateStart, updateEnd)).stored };
    } else if (field === RESULT.releaseLease.number) {
      expectWireType(wireType, WireType.LengthDelimited, "release_lease");
      const [releaseStart, releaseEnd] = lengthDelimited(reader);
      outcome = { id, kind: "release", released: fromBinary(ReleaseLeaseResponseSchema, bytes.subarray(releaseStart, releaseEnd)).released };
    } else if (field === RESULT.error.number) {
      expectWireType(wireType, WireType.LengthDelimited, "error");
      const [errorStart, errorEnd] = lengthDelimited(reader);
      const { code, message, reason } = fromBinary(OperationErrorSchema, bytes.subarray(errorStart, errorEnd));
      outcome = { id, kind: "error", code, message, reason };
    } else {
      reader.skip(wireType, field);
    }
  }
  outcome.id = id; // the id may come after the outcome
  return outcome;
}

function decodeGeneration(bytes: Buffer, [start, end]: [number, number]): Generation {
  const reader = readerOf(bytes, start, end);
  let text = "";
  while (reader.pos < end) {
    const [field, wireType] = reader.tag();
    if (field !== TEXT || wireType !== WireType.LengthDelimited) return decodeGenerationFully(bytes, start, end);
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
