import type { DescMethod } from "@bufbuild/protobuf";
import { status, type Deadline, type handleBidiStreamingCall, type handleUnaryCall, type ServerDuplexStream } from "@grpc/grpc-js";
import { setMaxListeners } from "node:events";
import { CacheError } from "../rpc/errors.js";
import { methodPath } from "../rpc/service-definition.js";
import { toFailure, toStatus } from "../rpc/status-mapping.js";
import type { Authenticator } from "./auth/authenticator.js";
import type { Principal } from "./auth/principal.js";

/** What unary calls and streams share in grpc-js (part of its ServerSurfaceCall, which it does not export). */
interface ServerSurfaceCall {
  readonly cancelled: boolean;
  getDeadline(): Deadline;
  once(event: "cancelled", listener: () => void): unknown;
}

/** What a method may need of its call beyond the request: when it must answer by, and whether anyone still waits. */
export interface CallScope {
  /** Milliseconds left before the call's deadline; Infinity when it has none. */
  remainingMs(): number;
  /** Aborted, with a CacheError CANCELLED, when the caller cancels the call or goes away. */
  readonly signal: AbortSignal;
  /** A stream's operations that wait now, by id, each with what cancels it alone (see CancelOperation). */
  readonly waiting?: Map<number, AbortController>;
  /** A stream's: what an operation that answers more than once needs (see WatchChanges). */
  readonly stream?: StreamScope;
}

/** What a stream offers an operation that goes on after its message is answered. */
export interface StreamScope {
  /** Writes these messages now, after every message written before; nothing once the stream has ended. */
  push(messages: Buffer[]): void;
  /** Whether the client keeps up: false once what was written waits for it to read (and after the end). */
  writable(): boolean;
  /** `listener` runs once, when the client has read enough for the stream to take more. */
  onceWritable(listener: () => void): void;
  /**
   * The caller's rights now: checked again after a reload of the auth file.
   * Undefined once the token is no longer valid (the stream fails at its
   * next message).
   */
  principal(): Principal | undefined;
  /** `listener` runs once, when the stream ends, however it ends. */
  onEnd(listener: () => void): void;
  /** `listener` runs whenever the caller's rights may have changed (the auth file was reloaded), until the stream ends. */
  onRightsChange(listener: () => void): void;
}

/** A unary method's work on its request message, for a caller with these rights: its reply, now or later. */
export type MethodImplementation = (request: Buffer, principal: Principal, call: CallScope) => Buffer | Promise<Buffer>;

/**
 * A stream's work on one request message: the response messages that answer
 * it now (one, or several when one would be too large), and those that
 * answer its operations that wait, each when it is ready.
 */
export type StreamImplementation = (request: Buffer, principal: Principal, call: CallScope) => { now: Buffer[]; later: Promise<Buffer[]>[] };

/** An open stream, as the server sees it when it drains. */
export interface OpenStream {
  /** Ends the stream once the answers it owes are written. */
  drain(): void;
}

/** What the server is told about each call, for its metrics and logs. */
export interface CallObserver {
  callEnded(method: string, code: status, seconds: number): void;
  /** An unexpected failure: logged, never shown to the caller. */
  failed(path: string, error: unknown): void;
  /** An operation of a Stream call was answered (see CacheServiceOptions.operationEnded). */
  operationEnded?(operation: string, code: status): void;
}

/** What every handler shares: who is calling, who is watching, and the streams to end when draining. */
export interface HandlerContext {
  authenticator: Authenticator;
  observer: CallObserver;
  /** The streams open now: ended, after their current message, when the server drains. */
  streams: Set<OpenStream>;
  isDraining(): boolean;
}

/**
 * Adapts a byte-level implementation to grpc-js's unary handler. Every
 * unary method goes through here, so every one authenticates, answers
 * failures (see toFailure) and reports to the observer alike.
 */
export function unaryHandler(method: DescMethod, implementation: MethodImplementation, context: HandlerContext): handleUnaryCall<Buffer, Buffer> {
  const path = methodPath(method);
  return (call, callback) => {
    const started = performance.now();
    const fail = (error: unknown) => {
      const failure = toStatus(toFailure(path, error, context.observer.failed));
      context.observer.callEnded(method.name, failure.code, (performance.now() - started) / 1000);
      callback(failure);
    };
    const succeed = (response: Buffer) => {
      context.observer.callEnded(method.name, status.OK, (performance.now() - started) / 1000);
      callback(null, response);
    };
    let response: Buffer | Promise<Buffer>;
    try {
      response = implementation(call.request, context.authenticator.authenticate(call.metadata), new GrpcCallScope(call));
    } catch (error) {
      fail(error);
      return;
    }
    if (response instanceof Promise) response.then(succeed, fail);
    else succeed(response);
  };
}

/** A grpc-js call as a CallScope; its AbortSignal is made only for a method that asks for it. */
class GrpcCallScope implements CallScope {
  readonly #call: ServerSurfaceCall;
  #controller: AbortController | undefined;
  readonly waiting: Map<number, AbortController> | undefined;

  readonly stream: StreamScope | undefined;

  constructor(call: ServerSurfaceCall, stream?: StreamScope) {
    this.#call = call;
    this.waiting = stream ? new Map() : undefined;
    this.stream = stream;
  }

  remainingMs(): number {
    const deadline = this.#call.getDeadline();
    const at = deadline instanceof Date ? deadline.getTime() : deadline;
    return at === Infinity ? Infinity : at - Date.now();
  }

  get signal(): AbortSignal {
    if (!this.#controller) {
      const controller = (this.#controller = new AbortController());
      // Every lookup waiting on a stream listens to its signal; the lease table bounds how many.
      setMaxListeners(0, controller.signal);
      const cancelled = () => controller.abort(new CacheError("CANCELLED", "the call was cancelled"));
      if (this.#call.cancelled) cancelled();
      else this.#call.once("cancelled", cancelled);
    }
    return this.#controller.signal;
  }
}

/**
 * Adapts a byte-level implementation to a bidirectional stream that answers
 * each request message as it comes, and the operations that wait when their
 * wait ends. A request that cannot be answered at all ends the stream with
 * its status. When the client stops reading, the server stops reading too,
 * so a client cannot make it hold an unbounded backlog of replies. The
 * stream ends (the client's end, or a draining server) once every answer it
 * owes is written.
 */
export function streamHandler(method: DescMethod, implementation: StreamImplementation, context: HandlerContext): handleBidiStreamingCall<Buffer, Buffer> {
  const path = methodPath(method);
  return (call) => {
    const started = performance.now();
    let ended = false;
    /** Answers still owed: the stream ends only when none is. */
    let owed = 0;
    let ending = false;
    const open: OpenStream = { drain: () => finish() };
    const endListeners: (() => void)[] = [];
    const end = (code: status) => {
      if (ended) return;
      ended = true;
      context.streams.delete(open);
      context.observer.callEnded(method.name, code, (performance.now() - started) / 1000);
      for (const listener of endListeners) listener();
    };
    const finish = () => {
      ending = true;
      if (owed > 0 || ended) return;
      end(status.OK);
      call.end();
    };
    let paused = false;
    const write = (responses: Buffer[]) => {
      let full = false;
      for (const response of responses) full = !call.write(response) || full;
      if (full && !paused) {
        paused = true;
        call.pause();
        call.once("drain", () => {
          paused = false;
          call.resume();
        });
      }
    };
    /** The principal, checked again if the auth file was reloaded since it was found; throws if the token is no longer valid. */
    const currentPrincipal = () => {
      if (authenticatedAt !== context.authenticator.version) {
        authenticatedAt = context.authenticator.version;
        principal = context.authenticator.authenticate(call.metadata);
      }
      return principal;
    };
    const scope = new GrpcCallScope(call, {
      push: (messages) => {
        if (!ended) write(messages);
      },
      writable: () => !paused && !ended,
      onceWritable: (listener) => call.once("drain", listener),
      principal: () => {
        try {
          return currentPrincipal();
        } catch {
          return undefined;
        }
      },
      onEnd: (listener) => (ended ? listener() : endListeners.push(listener)),
      onRightsChange: (listener) => {
        if (!ended) endListeners.push(context.authenticator.onReload(listener));
      },
    });
    const fail = (error: unknown) => {
      const failure = toStatus(toFailure(path, error, context.observer.failed));
      end(failure.code);
      call.emit("error", failure);
    };
    const refuse = (error: unknown) => refuseOnceHeard(call, () => fail(error), () => end(status.CANCELLED));
    let principal: Principal;
    let authenticatedAt = context.authenticator.version;
    try {
      principal = context.authenticator.authenticate(call.metadata);
    } catch (error) {
      refuse(error);
      return;
    }
    if (context.isDraining()) {
      refuse(new CacheError("UNAVAILABLE", "the server is shutting down"));
      return;
    }
    context.streams.add(open);
    call.on("data", (request: Buffer) => {
      if (ended || ending) return;
      let responses: ReturnType<StreamImplementation>;
      try {
        // A stream outlives reloads of the auth file: the token is checked
        // again against the rights now in force, so revoking it ends the stream.
        responses = implementation(request, currentPrincipal(), scope);
      } catch (error) {
        fail(error);
        return;
      }
      write(responses.now);
      for (const pending of responses.later) {
        owed++;
        // The implementation turns an operation's failure into its error result; a rejection is the stream's failure.
        pending.then(
          (later) => {
            owed--;
            if (!ended) write(later);
            if (ending) finish();
          },
          (error: unknown) => {
            owed--;
            fail(error);
          },
        );
      }
      if (context.isDraining()) finish();
    });
    call.on("end", finish);
    // A client that cancels or disconnects: there is no one left to answer.
    call.on("error", () => end(status.CANCELLED));
    // A paused call that is cancelled emits neither "end" nor "error", only
    // "close": without this a watching stream would be told of changes for ever.
    call.on("close", () => end(status.CANCELLED));
  };
}

/**
 * How long a stream refused at its start (a bad token, a server shutting
 * down) may stay open waiting for its first message before it is refused
 * anyway: clients send that message right after opening.
 */
export const REFUSAL_WAIT_MS = 1_000;

/**
 * Refuses a stream once its first message or its end has arrived, not at its
 * headers. grpcio's asyncio client loses the status of a stream that ends
 * while it is still sending a message: it reports INTERNAL "Internal error
 * from Core" instead (grpc/grpc#36066). Refused at the headers, a Python
 * client with a wrong token saw that about one time in five.
 */
function refuseOnceHeard(call: ServerDuplexStream<Buffer, Buffer>, refuse: () => void, cancelled: () => void): void {
  let refused = false;
  const refuseNow = () => {
    if (refused) return;
    refused = true;
    clearTimeout(timer);
    refuse();
  };
  const timer = setTimeout(refuseNow, REFUSAL_WAIT_MS).unref();
  call.once("data", refuseNow);
  call.once("end", refuseNow);
  // A client that gives up first: nothing left to refuse.
  call.once("error", () => {
    if (refused) return;
    refused = true;
    clearTimeout(timer);
    cancelled();
  });
}
