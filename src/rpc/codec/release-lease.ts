import { ReleaseLeaseRequestSchema, ReleaseLeaseResponseSchema } from "../../../gen/llmcache/v1/cache_pb.js";
import { DecodeError, decoding } from "../codec.js";
import { concatFields, stringField } from "./fields.js";
import type { RequestChecks, WireKey } from "./request-checks.js";
import { flagMessage, readerOf, readKeyBytes, wireFields } from "./wire.js";

const REQUEST = wireFields(ReleaseLeaseRequestSchema);
const RESPONSE = wireFields(ReleaseLeaseResponseSchema);

// ReleaseLeaseRequest: the client writes it...

export function encodeReleaseLeaseRequest(prompt: string, llmString: string, namespace: string, token: string): Buffer {
  return concatFields([
    stringField(REQUEST.prompt, prompt),
    stringField(REQUEST.llmString, llmString),
    stringField(REQUEST.namespace, namespace),
    stringField(REQUEST.leaseToken, token),
  ]);
}

// ...and the server reads it.

export interface WireRelease extends WireKey {
  leaseToken: string;
}

export function readReleaseLeaseRequest(bytes: Buffer, checks: RequestChecks): WireRelease {
  return decoding(ReleaseLeaseRequestSchema.typeName, () => readRelease(bytes, 0, bytes.length, checks));
}

/** Reads a ReleaseLeaseRequest from bytes[start, end): in a stream too. */
export function readRelease(bytes: Buffer, start: number, end: number, checks: RequestChecks): WireRelease {
  const reader = readerOf(bytes, start, end);
  const release = { namespace: "", prompt: "", llmString: "", leaseToken: "" } as WireRelease;
  while (reader.pos < end) {
    const [field, wireType] = reader.tag();
    if (field === REQUEST.prompt.number) release.prompt = readKeyBytes(bytes, reader, wireType, REQUEST.prompt);
    else if (field === REQUEST.llmString.number) release.llmString = readKeyBytes(bytes, reader, wireType, REQUEST.llmString);
    else if (field === REQUEST.namespace.number) release.namespace = readKeyBytes(bytes, reader, wireType, REQUEST.namespace);
    else if (field === REQUEST.leaseToken.number) release.leaseToken = readKeyBytes(bytes, reader, wireType, REQUEST.leaseToken);
    else reader.skip(wireType, field);
  }
  checks.key(release);
  if (release.leaseToken === "") throw new DecodeError("lease_token is empty: give the token of the lease to release");
  return release;
}

// ReleaseLeaseResponse: the server writes it...

const RELEASED = flagMessage(RESPONSE.released);
export const writeReleaseLeaseResponse = RELEASED.write;
export const releaseLeaseResponseSize = RELEASED.size;
export const writeReleaseLeaseBody = RELEASED.writeAt;

// ...and the client reads it: whether the lease was released.

export function decodeReleaseLeaseResponse(bytes: Buffer): boolean {
  return decoding(ReleaseLeaseResponseSchema.typeName, () => readReleaseLeaseResponse(bytes, 0, bytes.length));
}

export function readReleaseLeaseResponse(bytes: Buffer, start: number, end: number): boolean {
  return RELEASED.read(bytes, start, end);
}
