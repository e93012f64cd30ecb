import http2 from "node:http2";
import { createServer, type Server as NetServer, type Socket } from "node:net";
import type { Server, ServerCredentials } from "@grpc/grpc-js";

/** What a client can make the server hold through its connections, and for how long. */
export interface ConnectionLimits {
  /** Most connections open at once; past it, new ones are closed as they come. */
  maxConnections: number;
  /** How long a new connection may take to start its first call (TLS, HTTP/2 preface, headers), in ms. */
  handshakeTimeoutMs: number;
  /** How long a connection may stay open with no call in flight, in ms. */
  idleTimeoutMs: number;
  /** Most reply bytes one connection may leave unread (sent but not yet taken by the client's flow control). */
  maxUnreadBytes: number;
  /** Most reply bytes all connections together may leave unread. */
  maxUnreadBytesTotal: number;
  /**
   * How many request bytes a client may send, on a connection and on each of
   * its calls, before the server has read them: HTTP/2's receive window.
   * Node's default, 64 KiB for a whole connection, stalls clients that send
   * batches from many callers at once.
   */
  receiveWindowBytes: number;
}

export const DEFAULT_CONNECTION_LIMITS: ConnectionLimits = {
  maxConnections: 4096,
  handshakeTimeoutMs: 10_000,
  idleTimeoutMs: 5 * 60_000,
  maxUnreadBytes: 64 * 1024 * 1024,
  maxUnreadBytesTotal: 256 * 1024 * 1024,
  receiveWindowBytes: 4 * 1024 * 1024,
};

/** One accepted socket and what its calls hold. */
export interface Connection {
  readonly socket: Socket;
  /** Calls started and not yet ended. */
  calls: number;
  /** Reply bytes handed to HTTP/2 and not yet taken by the client. */
  unreadBytes: number;
  /** Closes the connection when it has waited too long for a call. */
  timer: NodeJS.Timeout | undefined;
}

/**
 * The server's listening socket, owned here rather than by grpc-js so that
 * every connection is bounded: grpc-js keeps a connection that never
 * completes its handshake, or that a client leaves open and idle after a
 * GOAWAY, for ever. Each accepted socket is handed to grpc-js through its
 * connection injector (TLS, when configured, is done there), and closed if
 * it starts no call within the handshake timeout or has none in flight for
 * the idle timeout. Calls report to it (see call-tracking.ts) by their peer
 * address, which is the socket's.
 */
export class Connections {
  readonly limits: ConnectionLimits;
  readonly #byPeer = new Map<string, Connection>();
  #unreadBytesTotal = 0;
  #listener: NetServer | undefined;

  constructor(limits: ConnectionLimits) {
    this.limits = limits;
  }

  /** Listens on host:port and serves each connection with `server`; resolves with the port bound. */
  async listen(server: Server, credentials: ServerCredentials, host: string, port: number): Promise<number> {
    const window = this.limits.receiveWindowBytes;
    const injector = watchingHttp2Servers(
      () => server.createConnectionInjector(credentials),
      (options) => ({ ...options, settings: { ...options.settings, initialWindowSize: window } }),
      (http2Server) => {
        http2Server.prependListener("stream", keepRepeatedAuthorization);
        // The stream window is a setting; the connection's own can only be set on each session.
        http2Server.on("session", (session) => session.setLocalWindowSize(window));
      },
    );
    const listener = createServer({ noDelay: true }, (socket) => {
      this.#accept(socket);
      injector.injectConnection(socket);
    });
    listener.maxConnections = this.limits.maxConnections;
    await new Promise<void>((resolve, reject) => {
      listener.once("error", reject);
      listener.listen(port, host, () => {
        listener.off("error", reject);
        resolve();
      });
    });
    this.#listener = listener;
    return (listener.address() as { port: number }).port;
  }

  /** The connection a call with this peer address came on, if it is still open. */
  byPeer(peer: string): Connection | undefined {
    return this.#byPeer.get(peer);
  }

  callStarted(connection: Connection): void {
    connection.calls++;
    clearTimeout(connection.timer);
    connection.timer = undefined;
  }

  callEnded(connection: Connection): void {
    connection.calls--;
    if (connection.calls === 0 && !connection.socket.destroyed) this.#closeAfter(connection, this.limits.idleTimeoutMs);
  }

  /**
   * Reserves room for a reply of `bytes` bytes the client has yet to read.
   * Returns a reason it cannot, naming the limit, or undefined once reserved.
   */
  reserveUnread(connection: Connection, bytes: number): string | undefined {
    if (connection.unreadBytes > 0 && connection.unreadBytes + bytes > this.limits.maxUnreadBytes) {
      return `this connection has ${connection.unreadBytes} bytes of replies it has not read, and ${bytes} more would pass the limit of ${this.limits.maxUnreadBytes} (--max-unread-bytes)`;
    }
    if (this.#unreadBytesTotal > 0 && this.#unreadBytesTotal + bytes > this.limits.maxUnreadBytesTotal) {
      return `clients have ${this.#unreadBytesTotal} bytes of replies they have not read, and ${bytes} more would pass the limit of ${this.limits.maxUnreadBytesTotal} (--max-unread-bytes-total)`;
    }
    connection.unreadBytes += bytes;
    this.#unreadBytesTotal += bytes;
    return undefined;
  }

  releaseUnread(connection: Connection, bytes: number): void {
    connection.unreadBytes -= bytes;
    this.#unreadBytesTotal -= bytes;
  }

  /** Stops accepting connections; open ones stay. */
  stopAccepting(): void {
    this.#listener?.close();
  }

  /** Closes every connection still open: those grpc-js's shutdown left, such as clients that never spoke HTTP/2. */
  destroyAll(): void {
    for (const connection of this.#byPeer.values()) connection.socket.resetAndDestroy();
  }

  #accept(socket: Socket): void {
    const peer = `${socket.remoteAddress}:${socket.remotePort}`;
    const connection: Connection = { socket, calls: 0, unreadBytes: 0, timer: undefined };
    this.#byPeer.set(peer, connection);
    this.#closeAfter(connection, this.limits.handshakeTimeoutMs);
    // Its calls are cancelled when it goes, and release what they held.
    socket.once("close", () => {
      clearTimeout(connection.timer);
      this.#byPeer.delete(peer);
    });
  }

  /**
   * Closes the connection in `ms` unless a call starts first. By a reset:
   * once HTTP/2 (or TLS) has taken the socket's descriptor over, neither
   * destroying the socket nor closing the session (GOAWAY) releases the
   * descriptor of a peer that sends nothing more; a reset does. The client
   * has no call in flight then, and opens a new connection for its next.
   */
  #closeAfter(connection: Connection, ms: number): void {
    clearTimeout(connection.timer);
    connection.timer = setTimeout(() => connection.socket.resetAndDestroy(), ms);
    connection.timer.unref();
  }
}

/**
 * Runs `create`, which makes grpc-js's HTTP/2 server for injected
 * connections, with the options `adjust` makes of grpc-js's, and hands that
 * server to `watch`: grpc-js offers no other way to see a request's raw
 * headers, nor to set HTTP/2's receive window. grpc-js makes the server
 * synchronously inside `create`, which is the only time node:http2's
 * factories are wrapped.
 */
function watchingHttp2Servers<T>(
  create: () => T,
  adjust: (options: http2.ServerOptions) => http2.ServerOptions,
  watch: (server: http2.Http2Server | http2.Http2SecureServer) => void,
): T {
  const { createServer: plain, createSecureServer: secure } = http2;
  const watched = <S extends http2.Http2Server | http2.Http2SecureServer>(server: S): S => {
    watch(server);
    return server;
  };
  http2.createServer = ((options: http2.ServerOptions = {}, ...rest: unknown[]) =>
    watched((plain as (...args: unknown[]) => http2.Http2Server)(adjust(options), ...rest))) as typeof plain;
  http2.createSecureServer = ((options: http2.SecureServerOptions = {}, ...rest: unknown[]) =>
    watched((secure as (...args: unknown[]) => http2.Http2SecureServer)(adjust(options), ...rest))) as typeof secure;
  try {
    return create();
  } finally {
    http2.createServer = plain;
    http2.createSecureServer = secure;
  }
}

/**
 * Node keeps only the first value of a header it deems single-valued, so a
 * garbage second token would pass unseen; the raw headers still hold them
 * all, and putting them back lets the authenticator refuse the ambiguous
 * request.
 */
function keepRepeatedAuthorization(_stream: unknown, headers: http2.IncomingHttpHeaders, _flags: number, rawHeaders: string[]): void {
  const values: string[] = [];
  for (let i = 0; i + 1 < rawHeaders.length; i += 2) {
    if (rawHeaders[i]!.toLowerCase() === "authorization") values.push(rawHeaders[i + 1]!);
  }
  if (values.length > 1) (headers as Record<string, unknown>).authorization = values;
}
