import type { DescMessage, DescMethodUnary, MessageInitShape, MessageShape } from "@bufbuild/protobuf";
import { status, type handleUnaryCall, type StatusObject } from "@grpc/grpc-js";
import { DecodeError, decodeMessage, encodeMessage } from "../rpc/codec.js";
import { CacheError } from "../rpc/errors.js";
import { methodPath } from "../rpc/service-definition.js";

export type UnaryImplementation<I extends DescMessage, O extends DescMessage> = (
  request: MessageShape<I>,
) => MessageInitShape<O> | Promise<MessageInitShape<O>>;

/**
 * Adapts a typed implementation to grpc-js's byte-level unary handler. Every
 * method goes through here, so every one answers alike: undecodable input
 * gets INVALID_ARGUMENT, a thrown CacheError its own status, and anything
 * else INTERNAL with a fixed message, while the original goes to the log.
 */
export function unaryHandler<I extends DescMessage, O extends DescMessage>(
  method: DescMethodUnary<I, O>,
  implementation: UnaryImplementation<I, O>,
): handleUnaryCall<Buffer, Buffer> {
  return (call, callback) => {
    // Promise.resolve().then catches a synchronous throw as well as a
    // rejection; grpc-js itself would drop the rejection.
    Promise.resolve()
      .then(() => implementation(decodeMessage(method.input, call.request)))
      .then(
        (response) => callback(null, encodeMessage(method.output, response)),
        (error: unknown) => callback(toServiceError(method, error)),
      );
  };
}

function toServiceError(method: DescMethodUnary, error: unknown): Partial<StatusObject> {
  if (error instanceof DecodeError) return { code: status.INVALID_ARGUMENT, details: error.message };
  if (error instanceof CacheError) return { code: error.grpcCode, details: error.message };
  console.error(`llmcache: ${methodPath(method)} failed:`, error);
  return { code: status.INTERNAL, details: "internal error" };
}
