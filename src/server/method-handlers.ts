import type { DescMethod } from "@bufbuild/protobuf";
import type { handleBidiStreamingCall, handleUnaryCall } from "@grpc/grpc-js";
import { methodPath } from "../rpc/service-definition.js";
import { toStatus } from "./status.js";

/**
 * Adapts a byte-level implementation to grpc-js's unary handler. Every
 * unary method goes through here, so every one answers failures alike (see
 * toStatus).
 */
export function unaryHandler(method: DescMethod, implementation: (request: Buffer) => Buffer): handleUnaryCall<Buffer, Buffer> {
  const path = methodPath(method);
  return (call, callback) => {
    let response: Buffer;
    try {
      response = implementation(call.request);
    } catch (error) {
      callback(toStatus(path, error));
      return;
    }
    callback(null, response);
  };
}

/**
 * Adapts a byte-level implementation to a bidirectional stream that answers
 * each request message with one response message, in order. A request that
 * cannot be answered at all ends the stream with its status. When the
 * client stops reading, the server stops reading too, so a client cannot
 * make it hold an unbounded backlog of replies.
 */
export function streamHandler(
  method: DescMethod,
  implementation: (request: Buffer) => Buffer,
): handleBidiStreamingCall<Buffer, Buffer> {
  const path = methodPath(method);
  return (call) => {
    call.on("data", (request: Buffer) => {
      let response: Buffer;
      try {
        response = implementation(request);
      } catch (error) {
        call.emit("error", toStatus(path, error));
        return;
      }
      if (!call.write(response)) {
        call.pause();
        call.once("drain", () => call.resume());
      }
    });
    call.on("end", () => call.end());
    // A client that cancels or disconnects: there is no one left to answer.
    call.on("error", () => {});
  };
}
