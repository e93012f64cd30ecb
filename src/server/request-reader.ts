import { fromBinary } from "@bufbuild/protobuf";
import { BinaryReader, WireType } from "@bufbuild/protobuf/wire";
import { isUtf8 } from "node:buffer";
import {
  type Generation,
  BatchLookupRequestSchema,
  BatchUpdateRequestSchema,
  GenerationSchema,
  LookupRequestSchema,
  LookupResponseSchema,
  ReleaseLeaseRequestSchema,
  StreamOperationSchema,
  StreamRequestSchema,
  UpdateRequestSchema,
} from "../../gen/llmcache/v1/cache_pb.js";
import { MAX_LEASE_MS } from "../engine/leases.js";
import { checkGenerationNesting } from "../nesting.js";
import { DecodeError, decodeProblem } from "../rpc/codec.js";
import { fromWireGeneration } from "../rpc/generation-codec.js";
import { checkLimit, LimitExceededError, type RequestLimits } from "./request-limits.js";
import { expectWireType, lengthDelimited, readerOf } from "../rpc/wire-reader.js";
import { fieldSize, tag, WIRE_LENGTH_DELIMITED, writeFieldHeader } from "../rpc/wire-writer.js";

/**
 * A lookup as the server holds its key: the UTF-8 bytes of namespace, prompt
 * and llm_string, each read as a latin1 string (one character per byte).
 * Equal bytes make equal strings, and nothing is decoded on the way.
 */
export interface WireLookup {
  namespace: string;
  prompt: string;
  llmString: string;
  bypass: boolean;
  /** Single flight (see LeaseTable): 0 for a plain lookup. */
  leaseMs: number;
  waitMs: number;
}

export interface WireUpdate {
  namespace: string;
  prompt: string;
  llmString: string;
  /**
   * The update's generations, as the bytes of LookupResponse.generations
   * (field key, length and message, for each), read as latin1: a hit is
   * answered by copying them into the reply.
   */
  generations: string;
  /** undefined: the default TTL; Infinity: never expires. */
  ttlMs: number | undefined;
  noStore: boolean;
  onlyIfAbsent: boolean;
  /** The lease this update fills, if any (ASCII: its bytes are its characters). */
  leaseToken: string | undefined;
}

export interface WireRelease {
  namespace: string;
  prompt: string;
  llmString: string;
  leaseToken: string;
}

export type WireOperation =
  | { id: number; kind: "lookup"; lookup: WireLookup }
  | { id: number; kind: "update"; update: WireUpdate }
  | { id: number; kind: "release"; release: WireRelease }
  /** Stop the waiting lookup with this id. */
  | { id: number; kind: "cancel" }
  | { id: number; kind: "invalid"; problem: DecodeError | LimitExceededError };

const LOOKUP = LookupRequestSchema.field;
const UPDATE = UpdateRequestSchema.field;
const OPERATION = StreamOperationSchema.field;
const RELEASE = ReleaseLeaseRequestSchema.field;
/** The members of StreamOperation's oneof, by field number. */
const OPERATION_KINDS: Record<number, { kind: "lookup" | "update" | "release" | "cancel"; name: string }> = {
  [OPERATION.lookup.number]: { kind: "lookup", name: "lookup" },
  [OPERATION.update.number]: { kind: "update", name: "update" },
  [OPERATION.releaseLease.number]: { kind: "release", name: "release_lease" },
  [OPERATION.cancel.number]: { kind: "cancel", name: "cancel" },
};
const STORED_GENERATION_TAG = tag(LookupResponseSchema.field.generations.number, WIRE_LENGTH_DELIMITED);

/**
 * Readers for the requests the server answers without protobuf-es objects:
 * each reads the fields it needs straight from the bytes and keeps the
 * generations as bytes. Everything protobuf-es would refuse is refused with
 * a DecodeError naming the message and the problem; generations are checked
 * by decoding them with protobuf-es, so what is stored decodes for every
 * client. Unknown fields are skipped, as protobuf requires.
 */
export function readLookupRequest(bytes: Buffer, limits: RequestLimits): WireLookup {
  return reading(LookupRequestSchema.typeName, () => readLookup(bytes, 0, bytes.length, limits));
}

export function readUpdateRequest(bytes: Buffer, limits: RequestLimits): WireUpdate {
  return reading(UpdateRequestSchema.typeName, () => readUpdate(bytes, 0, bytes.length, limits));
}

export function readReleaseLeaseRequest(bytes: Buffer, limits: RequestLimits): WireRelease {
  return reading(ReleaseLeaseRequestSchema.typeName, () => readRelease(bytes, 0, bytes.length, limits));
}

/** A batch's lookups are answered at once: none may ask for a lease. */
export function readBatchLookupRequest(bytes: Buffer, limits: RequestLimits): WireLookup[] {
  return reading(BatchLookupRequestSchema.typeName, () =>
    readRepeated(bytes, BatchLookupRequestSchema.field.lookups.number, "lookups", (start, end) => {
      const lookup = readLookup(bytes, start, end, limits);
      if (lookup.leaseMs > 0) throw new DecodeError("lease_ms is not allowed in a batch (ask for leases with Lookup or on the Stream)");
      return lookup;
    }),
  );
}

export function readBatchUpdateRequest(bytes: Buffer, limits: RequestLimits): WireUpdate[] {
  return reading(BatchUpdateRequestSchema.typeName, () =>
    readRepeated(bytes, BatchUpdateRequestSchema.field.updates.number, "updates", (start, end) => readUpdate(bytes, start, end, limits)),
  );
}

/**
 * Reads a stream message. A malformed operation becomes an "invalid"
 * operation that carries its problem, so that it can be answered on its own;
 * only a malformed envelope, where ids cannot be trusted, throws.
 */
export function readStreamRequest(bytes: Buffer, limits: RequestLimits): WireOperation[] {
  return reading(StreamRequestSchema.typeName, () =>
    readRepeated(bytes, StreamRequestSchema.field.operations.number, "operations", (start, end) => readOperation(bytes, start, end, limits)),
  );
}

function readOperation(bytes: Buffer, start: number, end: number, limits: RequestLimits): WireOperation {
  const reader = readerOf(bytes, start, end);
  let id = 0;
  let body: { kind: "lookup" | "update" | "release" | "cancel"; start: number; end: number } | undefined;
  while (reader.pos < end) {
    const [field, wireType] = reader.tag();
    if (field === OPERATION.id.number) {
      expectWireType(wireType, WireType.Varint, "id");
      id = reader.uint32();
    } else if (field in OPERATION_KINDS) {
      const { kind, name } = OPERATION_KINDS[field]!;
      expectWireType(wireType, WireType.LengthDelimited, name);
      const [bodyStart, bodyEnd] = lengthDelimited(reader);
      body = { kind, start: bodyStart, end: bodyEnd }; // a oneof: the last one wins
    } else {
      reader.skip(wireType, field);
    }
  }
  if (!body) {
    return { id, kind: "invalid", problem: new DecodeError(`operation ${id} has no lookup, update, release_lease or cancel`) };
  }
  try {
    switch (body.kind) {
      case "lookup":
        return { id, kind: "lookup", lookup: reading(LookupRequestSchema.typeName, () => readLookup(bytes, body.start, body.end, limits)) };
      case "update":
        return { id, kind: "update", update: reading(UpdateRequestSchema.typeName, () => readUpdate(bytes, body.start, body.end, limits)) };
      case "release":
        return { id, kind: "release", release: reading(ReleaseLeaseRequestSchema.typeName, () => readRelease(bytes, body.start, body.end, limits)) };
      case "cancel":
        return { id, kind: "cancel" }; // CancelOperation has no fields: whatever it holds is unknown, and skipped
    }
  } catch (error) {
    if (error instanceof DecodeError || error instanceof LimitExceededError) return { id, kind: "invalid", problem: error };
    throw error;
  }
}

/** Reads a LookupRequest from bytes[start, end). */
function readLookup(bytes: Buffer, start: number, end: number, limits: RequestLimits): WireLookup {
  const reader = readerOf(bytes, start, end);
  const lookup: WireLookup = { namespace: "", prompt: "", llmString: "", bypass: false, leaseMs: 0, waitMs: 0 };
  while (reader.pos < end) {
    const [field, wireType] = reader.tag();
    if (field === LOOKUP.prompt.number) lookup.prompt = readString(bytes, reader, wireType, "prompt");
    else if (field === LOOKUP.llmString.number) lookup.llmString = readString(bytes, reader, wireType, "llm_string");
    else if (field === LOOKUP.namespace.number) lookup.namespace = readString(bytes, reader, wireType, "namespace");
    else if (field === LOOKUP.bypass.number) lookup.bypass = readBool(reader, wireType, "bypass");
    else if (field === LOOKUP.leaseMs.number) lookup.leaseMs = readLeaseTime(reader, wireType, "lease_ms");
    else if (field === LOOKUP.waitMs.number) lookup.waitMs = readLeaseTime(reader, wireType, "wait_ms");
    else reader.skip(wireType, field);
  }
  checkKeyLimits(lookup, limits);
  if (lookup.waitMs > 0 && lookup.leaseMs === 0) throw new DecodeError("wait_ms needs lease_ms: only a lookup that would take a lease may wait for one");
  if (lookup.leaseMs > 0 && lookup.bypass) throw new DecodeError("lease_ms with bypass: a lookup that bypasses the cache never takes or waits for a lease");
  return lookup;
}

/** Reads a ReleaseLeaseRequest from bytes[start, end). */
function readRelease(bytes: Buffer, start: number, end: number, limits: RequestLimits): WireRelease {
  const reader = readerOf(bytes, start, end);
  const release: WireRelease = { namespace: "", prompt: "", llmString: "", leaseToken: "" };
  while (reader.pos < end) {
    const [field, wireType] = reader.tag();
    if (field === RELEASE.prompt.number) release.prompt = readString(bytes, reader, wireType, "prompt");
    else if (field === RELEASE.llmString.number) release.llmString = readString(bytes, reader, wireType, "llm_string");
    else if (field === RELEASE.namespace.number) release.namespace = readString(bytes, reader, wireType, "namespace");
    else if (field === RELEASE.leaseToken.number) release.leaseToken = readString(bytes, reader, wireType, "lease_token");
    else reader.skip(wireType, field);
  }
  checkKeyLimits(release, limits);
  if (release.leaseToken === "") throw new DecodeError("lease_token is empty: give the token of the lease to release");
  return release;
}

/** lease_ms and wait_ms: at most MAX_LEASE_MS. */
function readLeaseTime(reader: BinaryReader, wireType: WireType, name: string): number {
  expectWireType(wireType, WireType.Varint, name);
  const ms = BigInt(reader.uint64());
  if (ms > BigInt(MAX_LEASE_MS)) throw new DecodeError(`${name} is ${ms}, over the largest allowed, ${MAX_LEASE_MS} (an hour)`);
  return Number(ms);
}

/** Reads an UpdateRequest from bytes[start, end). */
function readUpdate(bytes: Buffer, start: number, end: number, limits: RequestLimits): WireUpdate {
  const reader = readerOf(bytes, start, end);
  let namespace = "";
  let prompt = "";
  let llmString = "";
  let ttlMs = 0;
  let neverExpires = false;
  let noStore = false;
  let onlyIfAbsent = false;
  let leaseToken: string | undefined;
  const generations: [number, number][] = [];
  while (reader.pos < end) {
    const [field, wireType] = reader.tag();
    if (field === UPDATE.prompt.number) prompt = readString(bytes, reader, wireType, "prompt");
    else if (field === UPDATE.llmString.number) llmString = readString(bytes, reader, wireType, "llm_string");
    else if (field === UPDATE.namespace.number) namespace = readString(bytes, reader, wireType, "namespace");
    else if (field === UPDATE.generations.number) {
      expectWireType(wireType, WireType.LengthDelimited, "generations");
      generations.push(lengthDelimited(reader));
    } else if (field === UPDATE.ttlMs.number) {
      expectWireType(wireType, WireType.Varint, "ttl_ms");
      ttlMs = readTtlMs(reader);
    } else if (field === UPDATE.neverExpires.number) neverExpires = readBool(reader, wireType, "never_expires");
    else if (field === UPDATE.noStore.number) noStore = readBool(reader, wireType, "no_store");
    else if (field === UPDATE.onlyIfAbsent.number) onlyIfAbsent = readBool(reader, wireType, "only_if_absent");
    else if (field === UPDATE.leaseToken.number) leaseToken = readString(bytes, reader, wireType, "lease_token") || undefined;
    else reader.skip(wireType, field);
  }
  checkKeyLimits({ namespace, prompt, llmString }, limits);
  checkLimit(limits, "maxGenerations", "the number of generations", generations.length);
  return {
    namespace,
    prompt,
    llmString,
    generations: storedGenerations(bytes, generations),
    ttlMs: neverExpires ? Infinity : ttlMs > 0 ? ttlMs : undefined,
    noStore,
    onlyIfAbsent,
    leaseToken,
  };
}

/** The key strings hold one character per byte: their lengths are their sizes. */
function checkKeyLimits({ namespace, prompt, llmString }: { namespace: string; prompt: string; llmString: string }, limits: RequestLimits): void {
  checkLimit(limits, "maxPromptBytes", "the prompt's size in bytes", prompt.length);
  checkLimit(limits, "maxLlmStringBytes", "the llm_string's size in bytes", llmString.length);
  checkLimit(limits, "maxNamespaceBytes", "the namespace's size in bytes", namespace.length);
}

function readString(bytes: Buffer, reader: BinaryReader, wireType: WireType, name: string): string {
  expectWireType(wireType, WireType.LengthDelimited, name);
  return utf8AsLatin1(bytes, lengthDelimited(reader), name);
}

/** The largest ttl_ms that milliseconds on the server's clock can hold exactly. */
const MAX_TTL_MS = BigInt(Number.MAX_SAFE_INTEGER);

function readTtlMs(reader: BinaryReader): number {
  const ttlMs = BigInt(reader.uint64());
  if (ttlMs > MAX_TTL_MS) {
    throw new DecodeError(`ttl_ms is ${ttlMs}, over the largest allowed, ${MAX_TTL_MS} (set never_expires for an entry that never expires)`);
  }
  return Number(ttlMs);
}

function readBool(reader: BinaryReader, wireType: WireType, name: string): boolean {
  expectWireType(wireType, WireType.Varint, name);
  return reader.bool();
}

/**
 * Checks each generation and copies them all into one string laid out as
 * LookupResponse.generations. The copy matters: requests arrive in slices of
 * a shared 8 KiB buffer, which a stored slice would keep alive.
 */
function storedGenerations(bytes: Buffer, spans: [number, number][]): string {
  let size = 0;
  spans.forEach(([start, end], i) => {
    let generation: Generation;
    try {
      generation = fromBinary(GenerationSchema, bytes.subarray(start, end));
    } catch (error) {
      throw new DecodeError(`generations[${i}]: ${decodeProblem(error)}`);
    }
    try {
      checkGenerationNesting(fromWireGeneration(generation), `generations[${i}]`);
    } catch (error) {
      throw new DecodeError(error instanceof Error ? error.message : String(error));
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
      if (error instanceof LimitExceededError) throw new LimitExceededError(`${name}[${items.length}]`, error);
      throw error;
    }
  }
  return items;
}

/** Runs a reader, turning its every failure into a DecodeError that names the message (a limit stays a limit). */
function reading<T>(typeName: string, read: () => T): T {
  try {
    return read();
  } catch (error) {
    if (error instanceof LimitExceededError) throw error;
    throw new DecodeError(`cannot decode ${typeName}: ${error instanceof DecodeError ? error.message : decodeProblem(error)}`, {
      cause: error,
    });
  }
}

function utf8AsLatin1(bytes: Buffer, [start, end]: [number, number], name: string): string {
  if (!isUtf8(bytes.subarray(start, end))) throw new DecodeError(`${name} is not valid UTF-8`);
  return bytes.toString("latin1", start, end);
}
