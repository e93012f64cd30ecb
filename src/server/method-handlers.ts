import type { DescMethod } from "@bufbuild/protobuf";
import { status, type handleBidiStreamingCall, type handleUnaryCall, type ServerDuplexStream } from "@grpc/grpc-js";
import { methodPath } from "../rpc/service-definition.js";
import type { Authenticator } from "./auth/authenticator.js";
import type { Principal } from "./auth/principal.js";
import { toStatus } from "./status.js";

/** A unary method's work on its request message, for a caller with these rights. */
export type MethodImplementation = (request: Buffer, principal: Principal) => Buffer;

/** A stream's work on one request message: the response messages that answer it (one, or several when one would be too large). */
export type StreamImplementation = (request: Buffer, principal: Principal) => Buffer[];

/** What the server is told about each call, for its metrics and logs. */
export interface CallObserver {
  callEnded(method: string, code: status, seconds: number): void;
  /** An unexpected failure: logged, never shown to the caller. */
  failed(path: string, error: unknown): void;
}

/** What every handler shares: who is calling, who is watching, and the streams to end when draining. */
export interface HandlerContext {
  authenticator: Authenticator;
  observer: CallObserver;
  /** The streams open now: ended, after their current message, when the server drains. */
  streams: Set<ServerDuplexStream<Buffer, Buffer>>;
  isDraining(): boolean;
}

/**
 * Adapts a byte-level implementation to grpc-js's unary handler. Every
 * unary method goes through here, so every one authenticates, answers
 * failures (see toStatus) and reports to the observer alike.
 */
export function unaryHandler(method: DescMethod, implementation: MethodImplementation, context: HandlerContext): handleUnaryCall<Buffer, Buffer> {
  const path = methodPath(method);
  return (call, callback) => {
    const started = performance.now();
    let response: Buffer;
    try {
      response = implementation(call.request, context.authenticator.authenticate(call.metadata));
    } catch (error) {
      const failure = toStatus(path, error, context.observer.failed);
      context.observer.callEnded(method.name, failure.code, (performance.now() - started) / 1000);
      callback(failure);
      return;
    }
    context.observer.callEnded(method.name, status.OK, (performance.now() - started) / 1000);
    callback(null, response);
  };
}

/**
 * Adapts a byte-level implementation to a bidirectional stream that answers
 * each request message with one response message, in order. A request that
 * cannot be answered at all ends the stream with its status. When the
 * client stops reading, the server stops reading too, so a client cannot
 * make it hold an unbounded backlog of replies. A draining server ends the
 * stream once the message in hand is answered.
 */
export function streamHandler(method: DescMethod, implementation: StreamImplementation, context: HandlerContext): handleBidiStreamingCall<Buffer, Buffer> {
  const path = methodPath(method);
  return (call) => {
    const started = performance.now();
    let ended = false;
    const end = (code: status) => {
      if (ended) return;
      ended = true;
      context.streams.delete(call);
      context.observer.callEnded(method.name, code, (performance.now() - started) / 1000);
    };
    const fail = (error: unknown) => {
      const failure = toStatus(path, error, context.observer.failed);
      end(failure.code);
      call.emit("error", failure);
    };
    let principal: Principal;
    let authenticatedAt = context.authenticator.version;
    try {
      principal = context.authenticator.authenticate(call.metadata);
    } catch (error) {
      fail(error);
      return;
    }
    if (context.isDraining()) {
      end(status.UNAVAILABLE);
      call.emit("error", { code: status.UNAVAILABLE, details: "the server is shutting down" });
      return;
    }
    context.streams.add(call);
    call.on("data", (request: Buffer) => {
      if (ended) return;
      let responses: Buffer[];
      try {
        // A stream outlives reloads of the auth file: the token is checked
        // again against the rights now in force, so revoking it ends the stream.
        if (authenticatedAt !== context.authenticator.version) {
          authenticatedAt = context.authenticator.version;
          principal = context.authenticator.authenticate(call.metadata);
        }
        responses = implementation(request, principal);
      } catch (error) {
        fail(error);
        return;
      }
      let full = false;
      for (const response of responses) full = !call.write(response) || full;
      if (full) {
        call.pause();
        call.once("drain", () => call.resume());
      }
      if (context.isDraining()) {
        end(status.OK);
        call.end();
      }
    });
    call.on("end", () => {
      end(status.OK);
      call.end();
    });
    // A client that cancels or disconnects: there is no one left to answer.
    call.on("error", () => end(status.CANCELLED));
  };
}
