import {
  ResponderBuilder,
  ServerInterceptingCall,
  ServerListenerBuilder,
  status,
  type ServerInterceptingCallInterface,
  type ServerInterceptor,
} from "@grpc/grpc-js";
import type { Connection, Connections } from "./connections.js";

/**
 * A grpc-js server interceptor that tells `connections` when each call
 * starts and ends (so idle connections can be closed) and how many reply
 * bytes it has handed to HTTP/2 that the client has not yet taken. HTTP/2
 * flow control holds a reply the client does not read in the server's
 * memory; past the connection's (or the server's) limit a call is answered
 * RESOURCE_EXHAUSTED instead of queueing more.
 */
export function callTracking(connections: Connections): ServerInterceptor {
  return (_method, call) => {
    const connection = connections.byPeer(call.getPeer());
    return connection ? new TrackedCall(call, connection, connections) : new ServerInterceptingCall(call);
  };
}

class TrackedCall extends ServerInterceptingCall {
  readonly #connection: Connection;
  readonly #connections: Connections;
  readonly #state: { ended: boolean; unreadBytes: number };

  constructor(call: ServerInterceptingCallInterface, connection: Connection, connections: Connections) {
    // The responder and listener run after construction, once the call is under way.
    const state = { ended: false, unreadBytes: 0 };
    const end = () => {
      if (state.ended) return;
      state.ended = true;
      connections.releaseUnread(connection, state.unreadBytes);
      state.unreadBytes = 0;
      connections.callEnded(connection);
    };
    super(
      call,
      new ResponderBuilder()
        .withStart((next) => next(new ServerListenerBuilder().withOnCancel(end).build()))
        .withSendStatus((sent, next) => {
          next(sent);
          end();
        })
        .build(),
    );
    this.#connection = connection;
    this.#connections = connections;
    this.#state = state;
    connections.callStarted(connection);
  }

  override sendMessage(message: Buffer, callback: () => void): void {
    const bytes = message.length;
    const refusal = this.#connections.reserveUnread(this.#connection, bytes);
    if (refusal !== undefined) {
      this.sendStatus({ code: status.RESOURCE_EXHAUSTED, details: refusal });
      return;
    }
    this.#state.unreadBytes += bytes;
    super.sendMessage(message, () => {
      // Taken by HTTP/2 once the client's window allowed: no longer held for it.
      if (!this.#state.ended) {
        this.#state.unreadBytes -= bytes;
        this.#connections.releaseUnread(this.#connection, bytes);
      }
      callback();
    });
  }
}
