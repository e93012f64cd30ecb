import { create, fromBinary, toBinary, type MessageInitShape } from "@bufbuild/protobuf";
import { Server, ServerCredentials, type ServerDuplexStream, type ServerUnaryCall, type sendUnaryData } from "@grpc/grpc-js";
import {
  CacheService,
  StreamRequestSchema,
  StreamResponseSchema,
  StreamResultSchema,
  type StreamOperation,
} from "../../gen/llmcache/v1/cache_pb.js";
import { CacheStore } from "../../src/engine/cache-store.js";
import { LocalBackend } from "../../src/engine/local-backend.js";
import { SegmentIndex } from "../../src/engine/segment-index.js";
import { byteServiceDefinition } from "../../src/rpc/service-definition.js";
import { Authenticator } from "../../src/server/auth/authenticator.js";
import { ANYONE } from "../../src/server/auth/principal.js";
import { cacheServiceHandlers, cacheServiceMethods } from "../../src/server/cache-service.js";
import type { OpenStream } from "../../src/server/method-handlers.js";
import { DEFAULT_REQUEST_LIMITS } from "../../src/server/request-limits.js";

export type StreamResultInit = MessageInitShape<typeof StreamResultSchema>;

/** How the scripted server answers one stream operation: a result of its own, or the real one; now or later. */
export interface ScriptedAnswer {
  result?: StreamResultInit;
  delayMs?: number;
}

export interface ScriptedServer {
  address: string;
  port: number;
  /** The operations of every stream message received, message by message. */
  streamMessages: StreamOperation[][];
  /** How many calls each unary method received, by name. */
  unaryCalls: Record<string, number>;
  /** Stops at once, breaking every call in flight. */
  stop(): void;
}

/**
 * A real gRPC server in this process for the client's tests: the real
 * methods over a real store, with a record of what arrives, and a script
 * that may answer a stream operation its own way or late.
 */
export async function startScriptedServer(
  options: {
    port?: number;
    answer?: (operation: StreamOperation) => ScriptedAnswer | undefined;
    /** How long the server waits, once a client has ended its side of a stream, before it ends its own. */
    endDelayMs?: number;
  } = {},
): Promise<ScriptedServer> {
  const store = new CacheStore<Buffer>(undefined, new SegmentIndex());
  const context = {
    authenticator: new Authenticator(undefined),
    observer: { callEnded() {}, failed() {} },
    streams: new Set<OpenStream>(),
    isDraining: () => false,
  };
  const backend = new LocalBackend(store, { copyLent: (stored) => Buffer.from(stored) });
  const realHandlers = cacheServiceHandlers(backend, DEFAULT_REQUEST_LIMITS, context);
  const realStream = cacheServiceMethods(backend, DEFAULT_REQUEST_LIMITS).stream;
  const streamMessages: StreamOperation[][] = [];
  const unaryCalls: Record<string, number> = {};

  const handlers: Record<string, unknown> = {};
  for (const method of CacheService.methods) {
    handlers[method.localName] = (call: ServerUnaryCall<Buffer, Buffer>, callback: sendUnaryData<Buffer>) => {
      unaryCalls[method.name] = (unaryCalls[method.name] ?? 0) + 1;
      (realHandlers[method.localName] as (call: unknown, callback: unknown) => void)(call, callback);
    };
  }
  handlers[CacheService.method.stream.localName] = (call: ServerDuplexStream<Buffer, Buffer>) => {
    call.on("data", (bytes: Buffer) => {
      const { operations } = fromBinary(StreamRequestSchema, bytes);
      streamMessages.push(operations);
      for (const operation of operations) {
        const scripted = options.answer?.(operation);
        const send = () => {
          if (call.cancelled || call.destroyed) return;
          if (scripted?.result) {
            call.write(Buffer.from(toBinary(StreamResponseSchema, create(StreamResponseSchema, { results: [scripted.result] }))));
            return;
          }
          const request = Buffer.from(toBinary(StreamRequestSchema, create(StreamRequestSchema, { operations: [operation] })));
          const { now, later } = realStream(request, ANYONE, { remainingMs: () => Infinity, signal: new AbortController().signal });
          for (const reply of now) call.write(reply);
          for (const pending of later) void pending.then((replies) => replies.forEach((reply) => call.write(reply)));
        };
        if (scripted?.delayMs) setTimeout(send, scripted.delayMs);
        else send();
      }
    });
    call.on("end", () => setTimeout(() => call.end(), options.endDelayMs ?? 0));
    call.on("error", () => {});
  };

  const server = new Server();
  server.addService(byteServiceDefinition(CacheService), handlers as never);
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync(`127.0.0.1:${options.port ?? 0}`, ServerCredentials.createInsecure(), (error, bound) =>
      error ? reject(error) : resolve(bound),
    ),
  );
  return { address: `127.0.0.1:${port}`, port, streamMessages, unaryCalls, stop: () => server.forceShutdown() };
}
