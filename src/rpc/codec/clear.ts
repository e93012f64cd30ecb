import { ClearRequestSchema } from "../../../gen/llmcache/v1/cache_pb.js";
import { decodeMessage, encodeMessage } from "../codec.js";
import { asKeyBytes, type KeyBytes } from "../key-bytes.js";

// ClearRequest: rare, so protobuf-es writes and reads it. The client writes it...

export function encodeClearRequest(namespace: string, allNamespaces: boolean): Buffer {
  return encodeMessage(ClearRequestSchema, { namespace, allNamespaces });
}

// ...and the server reads it: the namespace to clear as it holds names, or undefined for every namespace.

export function readClearRequest(bytes: Buffer): KeyBytes | undefined {
  const { namespace, allNamespaces } = decodeMessage(ClearRequestSchema, bytes);
  return allNamespaces ? undefined : asKeyBytes(namespace);
}

// ClearResponse has no fields: the server writes it empty, and the client reads nothing of it.

export function writeClearResponse(): Buffer {
  return Buffer.alloc(0);
}

export function decodeClearResponse(_bytes: Buffer): void {}
