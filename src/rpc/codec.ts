import { create, fromBinary, toBinary, type DescMessage, type MessageInitShape, type MessageShape } from "@bufbuild/protobuf";
import { LimitExceededError } from "./limit-exceeded-error.js";
import type { StatusCarrier } from "./status-mapping.js";

/** Encodes a message with protobuf-es, as a Node Buffer (grpc-js refuses a plain Uint8Array). */
export function encodeMessage<Desc extends DescMessage>(schema: Desc, init: MessageInitShape<Desc>): Buffer {
  return asBuffer(toBinary(schema, create(schema, init)));
}

/** The serializer of a byte-level method: grpc-js moves the bytes as they are. */
export function passBytes(bytes: Buffer): Buffer {
  return bytes;
}

/** Wraps bytes as a Buffer without copying them. */
export function asBuffer(bytes: Uint8Array): Buffer {
  return Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/** Thrown for bytes that are not a valid encoding of the expected message. */
export class DecodeError extends Error implements StatusCarrier {
  override readonly name = "DecodeError";
  /** The gRPC status a server answers with for it. */
  readonly code = "INVALID_ARGUMENT";
}

/**
 * Decodes a message, turning every way the bytes can be wrong into a
 * DecodeError whose message says what was expected and what went wrong.
 */
export function decodeMessage<Desc extends DescMessage>(schema: Desc, bytes: Uint8Array): MessageShape<Desc> {
  return decoding(schema.typeName, () => fromBinary(schema, bytes));
}

/**
 * Runs a reader of a message, turning its every failure into a DecodeError
 * that names the message and says what went wrong: "cannot decode
 * llmcache.v1.LookupRequest: premature EOF". A request over one of the
 * server's limits stays a LimitExceededError.
 */
export function decoding<T>(typeName: string, read: () => T): T {
  try {
    return read();
  } catch (error) {
    if (error instanceof LimitExceededError) throw error;
    throw new DecodeError(`cannot decode ${typeName}: ${error instanceof DecodeError ? error.message : decodeProblem(error)}`, { cause: error });
  }
}

/** What went wrong in a protobuf-es decode, in a few words. */
export function decodeProblem(error: unknown): string {
  if (error instanceof TypeError && (error as NodeJS.ErrnoException).code === "ERR_ENCODING_INVALID_ENCODED_DATA") {
    return "a string field is not valid UTF-8";
  }
  const message = error instanceof Error ? error.message : String(error);
  // protobuf-es prefixes some messages with its own "cannot decode X from binary:".
  return message.replace(/^cannot decode \S+ from binary: /, "");
}
