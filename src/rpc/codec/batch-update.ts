import { BatchUpdateRequestSchema } from "../../../gen/llmcache/v1/cache_pb.js";
import { decoding } from "../codec.js";
import { concatFields, messageField } from "./fields.js";
import type { RequestChecks } from "./request-checks.js";
import { readUpdate, type WireUpdate } from "./update.js";
import { readRepeated, wireFields } from "./wire.js";

const REQUEST = wireFields(BatchUpdateRequestSchema);

// BatchUpdateRequest: the client writes it around its encoded UpdateRequests...

export function encodeBatchUpdateRequest(updates: readonly Buffer[]): Buffer {
  return concatFields(updates.map((update) => messageField(REQUEST.updates, update)));
}

// ...and the server reads it.

export function readBatchUpdateRequest(bytes: Buffer, checks: RequestChecks): WireUpdate[] {
  return decoding(BatchUpdateRequestSchema.typeName, () => readRepeated(bytes, REQUEST.updates, (start, end) => readUpdate(bytes, start, end, checks)));
}

// BatchUpdateResponse has no fields: the server writes it empty, and the client reads nothing of it.

export function writeBatchUpdateResponse(): Buffer {
  return Buffer.alloc(0);
}

export function decodeBatchUpdateResponse(_bytes: Buffer): void {}
