import type { DescMessage, DescMethodUnary, MessageInitShape, MessageShape } from "@bufbuild/protobuf";
import { status, type Client } from "@grpc/grpc-js";
import { CacheService } from "../../gen/llmcache/v1/cache_pb.js";
import type { BaseCache } from "../base-cache.js";
import { checkKey, type Generation } from "../generation.js";
import { openChannel, type ChannelSettings } from "../rpc/channel.js";
import { DecodeError, decodeMessage, encodeMessage } from "../rpc/codec.js";
import { CacheError } from "../rpc/errors.js";
import { fromWireGenerations, toWireGenerations } from "../rpc/generation-codec.js";
import { methodPath } from "../rpc/service-definition.js";
import { callFailure, callUnary } from "../rpc/unary-call.js";
import { BlockingCaller } from "./blocking-caller.js";

export interface CacheClientOptions {
  /** host:port of an llmcache server. Default "127.0.0.1:50051". */
  address?: string;
  /** Deadline of each call, in milliseconds. Default 5000. */
  timeoutMs?: number;
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
 * A failed call throws (or rejects with) a CacheError naming the method, the
 * gRPC status and the server's message.
 */
export class CacheClient implements BaseCache {
  readonly address: string;
  readonly timeoutMs: number;
  readonly #channel: Client;
  readonly #blocking: BlockingCaller;
  #closed = false;

  constructor(options: CacheClientOptions = {}) {
    this.address = options.address ?? DEFAULT_ADDRESS;
    this.timeoutMs = checkTimeout(options.timeoutMs ?? DEFAULT_TIMEOUT_MS, "timeoutMs");
    const settings: ChannelSettings = { address: this.address };
    this.#channel = openChannel(settings);
    this.#blocking = new BlockingCaller(settings);
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
    this.#channel.close();
    await this.#blocking.close();
  }

  async #call<I extends DescMessage, O extends DescMessage, R>(
    operation: () => Operation<I, O, R>,
    options: CallOptions = {},
  ): Promise<R> {
    this.#checkOpen();
    const { method, request, result } = operation();
    const timeoutMs = this.#timeout(options);
    const reply = await callUnary(this.#channel, methodPath(method), encodeMessage(method.input, request), {
      timeoutMs,
      signal: options.signal,
    });
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
): Operation<I, O, R> {
  return { method, request, result };
}

function lookupOperation(prompt: string, llmString: string) {
  checkKey(prompt, llmString);
  return operation(CacheService.method.lookup, { prompt, llmString }, (response) =>
    response.hit ? fromWireGenerations(response.generations) : null,
  );
}

function updateOperation(prompt: string, llmString: string, generations: Generation[]) {
  checkKey(prompt, llmString);
  return operation(CacheService.method.update, { prompt, llmString, generations: toWireGenerations(generations) }, () => {});
}

function clearOperation() {
  return operation(CacheService.method.clear, {}, () => {});
}

function decodeReply<O extends DescMessage>(method: DescMethodUnary<DescMessage, O>, reply: Uint8Array): MessageShape<O> {
  try {
    return decodeMessage(method.output, reply);
  } catch (error) {
    if (!(error instanceof DecodeError)) throw error;
    throw callFailure(methodPath(method), status.INTERNAL, `the server's reply is malformed: ${error.message}`, error);
  }
}

function checkTimeout(timeoutMs: unknown, name: string): number {
  if (typeof timeoutMs !== "number" || !Number.isFinite(timeoutMs) || timeoutMs <= 0) {
    throw new RangeError(`${name} must be a positive number of milliseconds, got ${String(timeoutMs)}`);
  }
  return timeoutMs;
}
