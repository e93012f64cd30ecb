import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import type { WireType } from "@bufbuild/protobuf/wire";
import { LeaseSchema, LookupRequestSchema, LookupResponseSchema, NearGrantSchema } from "../../../gen/llmcache/v1/cache_pb.js";
import type { LeasedLookup, Lease } from "../../call-options.js";
import { MAX_LEASE_MS } from "../../engine/leases.js";
import type { Generation } from "../../generation.js";
import { DecodeError, decoding } from "../codec.js";
import { boolField, concatFields, stringField, varintField } from "./fields.js";
import { decodeGeneration, type StoredGenerations } from "./generations.js";
import type { RequestChecks, WireKey } from "./request-checks.js";
import type { WireReader } from "./wire-reader.js";
import {
  expectWireType,
  fieldSize,
  lengthDelimited,
  readBool,
  readerOf,
  readKeyBytes,
  varintSize,
  wireFields,
  writeFieldHeader,
  writeVarint,
  type WireField,
} from "./wire.js";

const REQUEST = wireFields(LookupRequestSchema);
const RESPONSE = wireFields(LookupResponseSchema);
const NEAR = wireFields(NearGrantSchema);

// LookupRequest: the client writes it...

export interface LookupFields {
  namespace: string;
  bypass: boolean;
  lease?: { leaseMs: number; waitMs: number } | undefined;
}

export function encodeLookupRequest(prompt: string, llmString: string, { namespace, bypass, lease }: LookupFields): Buffer {
  return concatFields([
    stringField(REQUEST.prompt, prompt),
    stringField(REQUEST.llmString, llmString),
    stringField(REQUEST.namespace, namespace),
    boolField(REQUEST.bypass, bypass),
    lease && varintField(REQUEST.leaseMs, lease.leaseMs),
    lease && varintField(REQUEST.waitMs, lease.waitMs),
  ]);
}

// ...and the server reads it, the key as its bytes.

export interface WireLookup extends WireKey {
  bypass: boolean;
  /** Single flight (see LeaseTable): 0 for a plain lookup. */
  leaseMs: number;
  waitMs: number;
}

export function readLookupRequest(bytes: Buffer, checks: RequestChecks): WireLookup {
  return decoding(LookupRequestSchema.typeName, () => readLookup(bytes, 0, bytes.length, checks));
}

/** Reads a LookupRequest from bytes[start, end): in a batch or a stream too. */
export function readLookup(bytes: Buffer, start: number, end: number, checks: RequestChecks): WireLookup {
  const reader = readerOf(bytes, start, end);
  const lookup = { namespace: "", prompt: "", llmString: "", bypass: false, leaseMs: 0, waitMs: 0 } as WireLookup;
  while (reader.pos < end) {
    const [field, wireType] = reader.tag();
    if (field === REQUEST.prompt.number) lookup.prompt = readKeyBytes(bytes, reader, wireType, REQUEST.prompt);
    else if (field === REQUEST.llmString.number) lookup.llmString = readKeyBytes(bytes, reader, wireType, REQUEST.llmString);
    else if (field === REQUEST.namespace.number) lookup.namespace = readKeyBytes(bytes, reader, wireType, REQUEST.namespace);
    else if (field === REQUEST.bypass.number) lookup.bypass = readBool(reader, wireType, REQUEST.bypass);
    else if (field === REQUEST.leaseMs.number) lookup.leaseMs = readLeaseTime(reader, wireType, REQUEST.leaseMs);
    else if (field === REQUEST.waitMs.number) lookup.waitMs = readLeaseTime(reader, wireType, REQUEST.waitMs);
    else reader.skip(wireType, field);
  }
  checks.key(lookup);
  if (lookup.waitMs > 0 && lookup.leaseMs === 0) throw new DecodeError("wait_ms needs lease_ms: only a lookup that would take a lease may wait for one");
  if (lookup.leaseMs > 0 && lookup.bypass) throw new DecodeError("lease_ms with bypass: a lookup that bypasses the cache never takes or waits for a lease");
  return lookup;
}

/** lease_ms and wait_ms: at most MAX_LEASE_MS. */
function readLeaseTime(reader: WireReader, wireType: WireType, field: WireField): number {
  expectWireType(wireType, field);
  const ms = reader.uint64();
  if (ms > BigInt(MAX_LEASE_MS)) throw new DecodeError(`${field.name} is ${ms}, over the largest allowed, ${MAX_LEASE_MS} (an hour)`);
  return Number(ms);
}

// LookupResponse: the server writes it...

/** A granted lease as the bytes of a Lease message: leases are rare, so protobuf-es writes them. */
export type EncodedLease = Buffer & { readonly __encodedLease: true };

export function encodeLease({ token, leaseMs }: { token: string; leaseMs: number }): EncodedLease {
  return Buffer.from(toBinary(LeaseSchema, create(LeaseSchema, { token, leaseMs: BigInt(leaseMs) }))) as EncodedLease;
}

/**
 * Leave for a client to keep a hit (see NearGrant): `key` is ASCII, so its
 * length is its size; `ttlMs` 0 for an entry that never expires.
 */
export interface WireNearGrant {
  key: string;
  ttlMs: number;
}

/**
 * What the store holds for a pair (undefined: a miss), as a reply. A hit is
 * the hit flag followed by the stored bytes as they are (they are already
 * laid out as LookupResponse.generations): nothing is decoded or encoded
 * again.
 */
export function writeLookupResponse(stored: StoredGenerations | undefined, lease?: EncodedLease): Buffer {
  const buffer = Buffer.allocUnsafe(lookupResponseSize(stored, lease));
  writeLookupBody(buffer, 0, stored, lease);
  return buffer;
}

export function lookupResponseSize(stored: StoredGenerations | undefined, lease?: EncodedLease, near?: WireNearGrant): number {
  if (lease) return fieldSize(RESPONSE.lease.tag, lease.length); // a miss granted a lease
  if (stored === undefined) return 0;
  return varintSize(RESPONSE.hit.tag) + 1 + stored.length + (near ? fieldSize(RESPONSE.near.tag, nearGrantSize(near)) : 0);
}

function nearGrantSize({ key, ttlMs }: WireNearGrant): number {
  return fieldSize(NEAR.key.tag, key.length) + (ttlMs === 0 ? 0 : varintSize(NEAR.ttlMs.tag) + varintSize(ttlMs));
}

/** Writes a LookupResponse at `position` (in a batch or a stream too); returns the position after it. */
export function writeLookupBody(buffer: Buffer, position: number, stored: StoredGenerations | undefined, lease?: EncodedLease, near?: WireNearGrant): number {
  if (lease) {
    position = writeFieldHeader(buffer, position, RESPONSE.lease.tag, lease.length);
    return position + lease.copy(buffer, position);
  }
  if (stored === undefined) return position; // a miss: every field at its default
  position = writeVarint(buffer, position, RESPONSE.hit.tag);
  buffer[position++] = 1;
  position += stored.copy(buffer, position);
  if (!near) return position;
  position = writeFieldHeader(buffer, position, RESPONSE.near.tag, nearGrantSize(near));
  position = writeFieldHeader(buffer, position, NEAR.key.tag, near.key.length);
  position += buffer.write(near.key, position, "latin1");
  return near.ttlMs === 0 ? position : writeVarint(buffer, writeVarint(buffer, position, NEAR.ttlMs.tag), near.ttlMs);
}

// ...and the client reads it.

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

/** Where a reader puts a lease, or a near grant, it finds. */
export interface LeaseHolder {
  lease: Lease | null;
  near?: WireNearGrant | null;
}

/** Reads a LookupResponse from bytes[start, end), and its lease if `granted` is given: in a batch or a stream too. */
export function readLookupResponse(bytes: Buffer, start: number, end: number, granted?: LeaseHolder): Generation[] | null {
  const reader = readerOf(bytes, start, end);
  let hit = false;
  const generations: Generation[] = [];
  while (reader.pos < end) {
    const [field, wireType] = reader.tag();
    if (field === RESPONSE.hit.number) {
      hit = readBool(reader, wireType, RESPONSE.hit);
    } else if (field === RESPONSE.generations.number) {
      expectWireType(wireType, RESPONSE.generations);
      generations.push(decodeGeneration(bytes, ...lengthDelimited(reader)));
    } else if (field === RESPONSE.lease.number && granted) {
      expectWireType(wireType, RESPONSE.lease);
      const [leaseStart, leaseEnd] = lengthDelimited(reader);
      const { token, leaseMs } = fromBinary(LeaseSchema, bytes.subarray(leaseStart, leaseEnd));
      if (token === "") throw new DecodeError("lease: the token is empty");
      granted.lease = { token, leaseMs: Number(leaseMs) };
    } else if (field === RESPONSE.near.number && granted) {
      expectWireType(wireType, RESPONSE.near);
      const [nearStart, nearEnd] = lengthDelimited(reader);
      const { key, ttlMs } = fromBinary(NearGrantSchema, bytes.subarray(nearStart, nearEnd));
      if (key === "") throw new DecodeError("near: the key is empty");
      granted.near = { key, ttlMs: Number(ttlMs) };
    } else {
      reader.skip(wireType, field);
    }
  }
  return hit ? generations : null;
}
