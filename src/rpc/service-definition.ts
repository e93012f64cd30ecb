import type { DescMethod, DescService } from "@bufbuild/protobuf";
import type { MethodDefinition, ServiceDefinition } from "@grpc/grpc-js";
import { passBytes } from "./codec.js";

/** The HTTP/2 path of a method: `/llmcache.v1.CacheService/Lookup`. */
export function methodPath(method: DescMethod): string {
  return `/${method.parent.typeName}/${method.name}`;
}

/**
 * The grpc-js definition of a protobuf-es service, derived from its
 * descriptor, with every message passed as raw bytes.
 *
 * Encoding stays with the caller (codec.ts) rather than in grpc-js
 * serializers: grpc-js answers a throwing request deserializer with INTERNAL,
 * where malformed input deserves INVALID_ARGUMENT, and a server that holds
 * replies already encoded can send them without decoding them first.
 */
export function byteServiceDefinition(service: DescService): ServiceDefinition {
  const definition: Record<string, MethodDefinition<Buffer, Buffer>> = {};
  for (const method of service.methods) {
    definition[method.localName] = {
      path: methodPath(method),
      originalName: method.name,
      requestStream: method.methodKind === "client_streaming" || method.methodKind === "bidi_streaming",
      responseStream: method.methodKind === "server_streaming" || method.methodKind === "bidi_streaming",
      requestSerialize: passBytes,
      requestDeserialize: passBytes,
      responseSerialize: passBytes,
      responseDeserialize: passBytes,
    };
  }
  return definition;
}
