import type { DescMessage, DescMethodUnary, MessageInitShape, MessageShape } from "@bufbuild/protobuf";
import { status, type Client } from "@grpc/grpc-js";
import { CacheService, type LookupResponse } from "../../gen/llmcache/v1/cache_pb.js";
import type { BaseCache } from "../base-cache.js";
import { checkKey, type Generation } from "../generation.js";
import { openChannel, type ChannelSettings } from "../rpc/channel.js";
import { DecodeError, decodeMessage, encodeMessage } from "../rpc/codec.js";
import { CacheError } from "../rpc/errors.js";
import { fromWireGenerations, toWireGenerations } from "../rpc/generation-codec.js";
import { methodPath } from "../rpc/service-definition.js";
import { callFailure, callUnary } from "../rpc/unary-call.js";
import { BlockingCaller } from "./blocking-caller.js";
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

/** One call: which method, with what request, and what the caller gets from its reply. */
interface Operation<I extends DescMessage, O extends DescMessage, R> {
  method: DescMethodUnary<I, O>;
  request: MessageInitShape<I>;
  result(response: MessageShape<O>): R;
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

  async #call<I extends DescMessage, O extends DescMessage, R>(
    operation: () => Operation<I, O, R>,
    options: CallOptions = {},
  ): Promise<R> {
    this.#checkOpen();
    const { method, request, result, streamKind } = operation();
    const timeoutMs = this.#timeout(options);
    const encoded = encodeMessage(method.input, request);
    if (this.#stream && streamKind && encoded.length < MAX_STREAM_MESSAGE_BYTES) {
      const outcome = await this.#stream.submit(streamKind, method.name, encoded, timeoutMs, options.signal);
      if (outcome.result.case === "error") {
        const { code, message } = outcome.result.value;
        throw callFailure(method.name, code, message);
      }
      if (outcome.result.case !== streamKind) {
        throw callFailure(method.name, status.INTERNAL, `the server answered a ${streamKind} with ${outcome.result.case ?? "nothing"}`);
      }
      // The stream carries LookupResponse and UpdateResponse as the unary methods return them.
      return result(outcome.result.value as MessageShape<O>);
    }
    const reply = await callUnary(this.#channel, methodPath(method), encoded, { timeoutMs, signal: options.signal });
    return result(decodeReply(method, reply));
  }

  #callBlocking<I extends DescMessage, O extends DescMessage, R>(
    { method, request, result }: Operation<I, O, R>,
    options: CallOptions = {},
  ): R {
    this.#checkOpen();
    const timeoutMs = this.#timeout(options);
    try {
      const reply = this.#blocking.call(methodPath(method), encodeMessage(method.input, request), timeoutMs);
      return result(decodeReply(method, reply));
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

function operation<I extends DescMessage, O extends DescMessage, R>(
  method: DescMethodUnary<I, O>,
  request: MessageInitShape<I>,
  result: (response: MessageShape<O>) => R,
  streamKind?: StreamOperationKind,
): Operation<I, O, R> {
  return { method, request, result, streamKind };
}

function lookupOperation(prompt: string, llmString: string) {
  checkKey(prompt, llmString);
  return operation(CacheService.method.lookup, { prompt, llmString }, lookupResult, "lookup");
}

function updateOperation(prompt: string, llmString: string, generations: Generation[]) {
  checkKey(prompt, llmString);
  return operation(CacheService.method.update, updateRequest(prompt, llmString, generations), () => {}, "update");
}

function lookupManyOperation(keys: readonly (readonly [string, string])[]) {
  if (!Array.isArray(keys)) throw new TypeError("keys must be an array of [prompt, llmString] pairs");
  const lookups = keys.map(([prompt, llmString]) => {
    checkKey(prompt, llmString);
    return { prompt, llmString };
  });
  return operation(CacheService.method.batchLookup, { lookups }, (response) => {
    if (response.results.length !== lookups.length) {
      throw callFailure("BatchLookup", status.INTERNAL, `${response.results.length} results for ${lookups.length} lookups`);
    }
    return response.results.map(lookupResult);
  });
}

function updateManyOperation(entries: readonly (readonly [string, string, Generation[]])[]) {
  if (!Array.isArray(entries)) throw new TypeError("entries must be an array of [prompt, llmString, generations]");
  const updates = entries.map(([prompt, llmString, generations], i) => {
    checkKey(prompt, llmString);
    return updateRequest(prompt, llmString, generations, `entries[${i}].generations`);
  });
  return operation(CacheService.method.batchUpdate, { updates }, () => {});
}

function updateRequest(prompt: string, llmString: string, generations: Generation[], path?: string) {
  return { prompt, llmString, generations: toWireGenerations(generations, path) };
}

function lookupResult(response: LookupResponse): Generation[] | null {
  return response.hit ? fromWireGenerations(response.generations) : null;
}

function clearOperation() {
  return operation(CacheService.method.clear, {}, () => {});
}

function decodeReply<O extends DescMessage>(method: DescMethodUnary<DescMessage, O>, reply: Uint8Array): MessageShape<O> {
  try {
    return decodeMessage(method.output, reply);
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
