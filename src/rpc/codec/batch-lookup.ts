import { BatchLookupRequestSchema, BatchLookupResponseSchema } from "../../../gen/llmcache/v1/cache_pb.js";
import type { Generation } from "../../generation.js";
import { DecodeError, decoding } from "../codec.js";
import { concatFields, messageField } from "./fields.js";
import type { StoredGenerations } from "./generations.js";
import { lookupResponseSize, readLookup, readLookupResponse, writeLookupBody, type WireLookup } from "./lookup.js";
import type { RequestChecks } from "./request-checks.js";
import { fieldSize, readRepeated, wireFields, writeFieldHeader } from "./wire.js";

const REQUEST = wireFields(BatchLookupRequestSchema);
const RESPONSE = wireFields(BatchLookupResponseSchema);

// BatchLookupRequest: the client writes it around its encoded LookupRequests...

export function encodeBatchLookupRequest(lookups: readonly Buffer[]): Buffer {
  return concatFields(lookups.map((lookup) => messageField(REQUEST.lookups, lookup)));
}

// ...and the server reads it. A batch's lookups are answered at once: none may ask for a lease.

export function readBatchLookupRequest(bytes: Buffer, checks: RequestChecks): WireLookup[] {
  return decoding(BatchLookupRequestSchema.typeName, () =>
    readRepeated(bytes, REQUEST.lookups, (start, end) => {
      const lookup = readLookup(bytes, start, end, checks);
      if (lookup.leaseMs > 0) throw new DecodeError("lease_ms is not allowed in a batch (ask for leases with Lookup or on the Stream)");
      return lookup;
    }),
  );
}

// BatchLookupResponse: the server writes it from what the store holds (undefined: a miss)...

export function writeBatchLookupResponse(results: readonly (StoredGenerations | undefined)[]): Buffer {
  const buffer = Buffer.allocUnsafe(batchLookupResponseSize(results));
  let position = 0;
  for (const stored of results) {
    position = writeFieldHeader(buffer, position, RESPONSE.results.tag, lookupResponseSize(stored));
    position = writeLookupBody(buffer, position, stored);
  }
  return buffer;
}

/** What one result adds to a BatchLookupResponse, in bytes. */
export function batchLookupResultSize(stored: StoredGenerations | undefined): number {
  return fieldSize(RESPONSE.results.tag, lookupResponseSize(stored));
}

export function batchLookupResponseSize(results: readonly (StoredGenerations | undefined)[]): number {
  let size = 0;
  for (const stored of results) size += batchLookupResultSize(stored);
  return size;
}

// ...and the client reads it.

export function decodeBatchLookupResponse(bytes: Buffer): (Generation[] | null)[] {
  return decoding(BatchLookupResponseSchema.typeName, () =>
    readRepeated(bytes, RESPONSE.results, (start, end) => readLookupResponse(bytes, start, end)),
  );
}
