import type { DescMethod } from "@bufbuild/protobuf";
import { status, type Client } from "@grpc/grpc-js";
import { CacheService } from "../../gen/llmcache/v1/cache_pb.js";
import type { BaseCache } from "../base-cache.js";
import { checkKey, copyGenerations, type Generation } from "../generation.js";
import { openChannel, type ChannelSettings } from "../rpc/channel.js";
import { asBuffer, DecodeError } from "../rpc/codec.js";
import { CacheError } from "../rpc/errors.js";
import { methodPath } from "../rpc/service-definition.js";
import { callFailure, callUnary } from "../rpc/unary-call.js";
import { BlockingCaller } from "./blocking-caller.js";
import { encodeBatchLookupRequest, encodeBatchUpdateRequest, encodeLookupRequest, encodeUpdateRequest } from "./request-encoder.js";
import { decodeBatchLookupResponse, decodeLookupResponse } from "./response-decoder.js";
import { MAX_STREAM_MESSAGE_BYTES, OperationStream, type BatchingOptions, type StreamOperationKind } from "./operation-stream.js";

export interface CacheClientOptions {
  /** host:port of an llmcache server. Default "127.0.0.1:50051". */
  address?: string;
  /** Deadline of each call, in milliseconds. Default 5000. */
  timeoutMs?: number;
  /**
   * Auto-batching of `alookup` and `aupdate` (on by default): the calls made
   * in the same turn of the event loop travel together on one stream, as
   * ioredis's auto-pipelining does. `false` makes each its own unary call.
   */
  batching?: boolean | BatchingOptions;
}

export interface CallOptions {
  /** This call's deadline, in milliseconds, instead of the client's. */
  timeoutMs?: number;
  /** Aborting it cancels the call (async methods only). */
  signal?: AbortSignal;
}

export const DEFAULT_ADDRESS = "127.0.0.1:50051";
export const DEFAULT_TIMEOUT_MS = 5_000;

/** One call: which method, its encoded request, and what the caller gets from the reply. */
interface Operation<R> {
  method: DescMethod;
  request: Buffer;
  decode(reply: Buffer): R;
  /** Set for the operations the stream carries, when batching is on. */
  streamKind?: StreamOperationKind;
}

/**
 * A remote llmcache server behind LangChain's cache interface.
 *
 * The async methods are the ones to use in a server or anywhere an event
 * loop runs. The blocking methods (`lookup`, `update`, `clear`) really wait
 * for the reply, for code written against a synchronous cache; the call runs
 * on a worker thread while this thread sleeps. The trap: nothing else runs
 * on this thread meanwhile, so a blocking call to a server started in the
 * same thread cannot be answered. It fails with DEADLINE_EXCEEDED once its
 * deadline passes; use the async methods there.
 *
 * By default the async `alookup` and `aupdate` are auto-batched (see
 * CacheClientOptions.batching); `alookupMany` and `aupdateMany` send an
 * explicit batch in one call.
 *
 * A failed call throws (or rejects with) a CacheError naming the method, the
 * gRPC status and the server's message.
 */
export class CacheClient implements BaseCache {
  readonly address: string;
  readonly timeoutMs: number;
  readonly #channel: Client;
  readonly #blocking: BlockingCaller;
  readonly #stream: OperationStream | undefined;
  #closed = false;

  constructor(options: CacheClientOptions = {}) {
    this.address = options.address ?? DEFAULT_ADDRESS;
    this.timeoutMs = checkTimeout(options.timeoutMs ?? DEFAULT_TIMEOUT_MS, "timeoutMs");
    const settings: ChannelSettings = { address: this.address };
    this.#channel = openChannel(settings);
    this.#blocking = new BlockingCaller(settings);
    const batching = options.batching ?? true;
    if (batching !== false) this.#stream = new OperationStream(this.#channel, batching === true ? {} : batching);
  }

  alookup(prompt: string, llmString: string, options?: CallOptions): Promise<Generation[] | null> {
    return this.#call(() => lookupOperation(prompt, llmString), options);
  }

  aupdate(prompt: string, llmString: string, generations: Generation[], options?: CallOptions): Promise<void> {
    return this.#call(() => updateOperation(prompt, llmString, generations), options);
  }

  aclear(options?: CallOptions): Promise<void> {
    return this.#call(clearOperation, options);
  }

  /** Looks up many pairs in one call; the results come in the order of `keys`. */
  alookupMany(keys: readonly (readonly [prompt: string, llmString: string])[], options?: CallOptions): Promise<(Generation[] | null)[]> {
    return this.#call(() => lookupManyOperation(keys), options);
  }

  /**
   * Stores many entries in one call, in order. If any entry is refused, none
   * is stored. A batch is one message: keep it under the server's limit (4 MiB
   * by default).
   */
  aupdateMany(
    entries: readonly (readonly [prompt: string, llmString: string, generations: Generation[]])[],
    options?: CallOptions,
  ): Promise<void> {
    return this.#call(() => updateManyOperation(entries), options);
  }

  lookup(prompt: string, llmString: string, options?: CallOptions): Generation[] | null {
    return this.#callBlocking(lookupOperation(prompt, llmString), options);
  }

  update(prompt: string, llmString: string, generations: Generation[], options?: CallOptions): void {
    this.#callBlocking(updateOperation(prompt, llmString, generations), options);
  }

  clear(options?: CallOptions): void {
    this.#callBlocking(clearOperation(), options);
  }

  /** Closes the channel and stops the blocking methods' worker thread. */
  async close(): Promise<void> {
    this.#closed = true;
    this.#stream?.close();
    this.#channel.close();
    await this.#blocking.close();
  }

  async #call<R>(operation: () => Operation<R>, options: CallOptions = {}): Promise<R> {
    this.#checkOpen();
    const { method, request, decode, streamKind } = operation();
    const timeoutMs = this.#timeout(options);
    if (this.#stream && streamKind && request.length < MAX_STREAM_MESSAGE_BYTES) {
      const outcome = await this.#stream.submit(streamKind, method.name, request, timeoutMs, options.signal);
      if (outcome.kind === "error") throw callFailure(method.name, outcome.code, outcome.message);
      if (outcome.kind !== streamKind) {
        throw callFailure(method.name, status.INTERNAL, `the server answered a ${streamKind} with ${outcome.kind}`);
      }
      return (outcome.kind === "lookup" ? outcome.generations : undefined) as R;
    }
    const reply = await callUnary(this.#channel, methodPath(method), request, { timeoutMs, signal: options.signal });
    return decodeReply(method, decode, reply);
  }

  #callBlocking<R>({ method, request, decode }: Operation<R>, options: CallOptions = {}): R {
    this.#checkOpen();
    const timeoutMs = this.#timeout(options);
    try {
      const reply = this.#blocking.call(methodPath(method), request, timeoutMs);
      return decodeReply(method, decode, asBuffer(reply));
    } catch (error) {
      if (error instanceof CacheError && error.code === "DEADLINE_EXCEEDED") {
        throw new CacheError(
          error.code,
          `${error.message} (a blocking call cannot be answered by a server running on the calling thread; ` +
            `use the async method there)`,
        );
      }
      throw error;
    }
  }

  #timeout(options: CallOptions): number {
    return options.timeoutMs === undefined ? this.timeoutMs : checkTimeout(options.timeoutMs, "timeoutMs");
  }

  #checkOpen(): void {
    if (this.#closed) throw new CacheError("FAILED_PRECONDITION", "the client is closed");
  }
}

function lookupOperation(prompt: string, llmString: string): Operation<Generation[] | null> {
  checkKey(prompt, llmString);
  return {
    method: CacheService.method.lookup,
    request: encodeLookupRequest(prompt, llmString),
    decode: (reply) => decodeLookupResponse(reply),
    streamKind: "lookup",
  };
}

function updateOperation(prompt: string, llmString: string, generations: Generation[]): Operation<void> {
  checkKey(prompt, llmString);
  return {
    method: CacheService.method.update,
    request: encodeUpdateRequest(prompt, llmString, copyGenerations(generations)),
    decode: () => {},
    streamKind: "update",
  };
}

function clearOperation(): Operation<void> {
  return { method: CacheService.method.clear, request: Buffer.alloc(0), decode: () => {} };
}

function lookupManyOperation(keys: readonly (readonly [string, string])[]): Operation<(Generation[] | null)[]> {
  if (!Array.isArray(keys)) throw new TypeError("keys must be an array of [prompt, llmString] pairs");
  const lookups = keys.map(([prompt, llmString]) => {
    checkKey(prompt, llmString);
    return encodeLookupRequest(prompt, llmString);
  });
  return {
    method: CacheService.method.batchLookup,
    request: encodeBatchLookupRequest(lookups),
    decode(reply) {
      const results = decodeBatchLookupResponse(reply);
      if (results.length !== lookups.length) {
        throw callFailure("BatchLookup", status.INTERNAL, `${results.length} results for ${lookups.length} lookups`);
      }
      return results;
    },
  };
}

function updateManyOperation(entries: readonly (readonly [string, string, Generation[]])[]): Operation<void> {
  if (!Array.isArray(entries)) throw new TypeError("entries must be an array of [prompt, llmString, generations]");
  const updates = entries.map(([prompt, llmString, generations], i) => {
    checkKey(prompt, llmString);
    return encodeUpdateRequest(prompt, llmString, copyGenerations(generations, `entries[${i}].generations`));
  });
  return { method: CacheService.method.batchUpdate, request: encodeBatchUpdateRequest(updates), decode: () => {} };
}

/** Decodes a reply; one that cannot be decoded is the server's fault: INTERNAL. */
function decodeReply<R>(method: DescMethod, decode: (reply: Buffer) => R, reply: Buffer): R {
  try {
    return decode(reply);
  } catch (error) {
    if (!(error instanceof DecodeError)) throw error;
    throw callFailure(method.name, status.INTERNAL, `the server's reply is malformed: ${error.message}`, error);
  }
}

function checkTimeout(timeoutMs: unknown, name: string): number {
  if (typeof timeoutMs !== "number" || !Number.isFinite(timeoutMs) || timeoutMs <= 0) {
    throw new RangeError(`${name} must be a positive number of milliseconds, got ${String(timeoutMs)}`);
  }
  return timeoutMs;
}
