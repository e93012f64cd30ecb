import type { DescMethod } from "@bufbuild/protobuf";
import { status, type Client } from "@grpc/grpc-js";
import { CacheService } from "../../gen/llmcache/v1/cache_pb.js";
import type { BaseCache, CacheStatsReport } from "../base-cache.js";
import {
  checkClearOptions,
  checkLookupOptions,
  checkNamespace,
  checkUpdateOptions,
  type ClearOptions,
  type LeasedLookup,
  type LeaseOptions,
  type LookupOptions,
  type UpdateOptions,
} from "../call-options.js";
import { checkKey, copyGenerations, type Generation } from "../generation.js";
import { getOrCompute, type GetOrComputeOptions } from "../single-flight.js";
import { callMetadata, openChannel, type ChannelSettings } from "../rpc/channel.js";
import { asBuffer, DecodeError } from "../rpc/codec.js";
import { decodeBatchLookupResponse, encodeBatchLookupRequest } from "../rpc/codec/batch-lookup.js";
import { decodeBatchUpdateResponse, encodeBatchUpdateRequest } from "../rpc/codec/batch-update.js";
import { decodeClearResponse, encodeClearRequest } from "../rpc/codec/clear.js";
import { decodeLeasedLookupResponse, decodeLookupResponse, encodeLookupRequest } from "../rpc/codec/lookup.js";
import { decodeReleaseLeaseResponse, encodeReleaseLeaseRequest } from "../rpc/codec/release-lease.js";
import { decodeStatsResponse, encodeStatsRequest } from "../rpc/codec/stats.js";
import type { StreamOperationKind, StreamOutcome } from "../rpc/codec/stream.js";
import { decodeUpdateResponse, encodeUpdateRequest } from "../rpc/codec/update.js";
import { CacheError } from "../rpc/errors.js";
import { methodPath } from "../rpc/service-definition.js";
import { callFailure } from "../rpc/status-mapping.js";
import { callUnary } from "../rpc/unary-call.js";
import { BlockingCaller } from "./blocking-caller.js";
import { MAX_STREAM_MESSAGE_BYTES, OperationStream, type BatchingOptions } from "./operation-stream.js";

export interface CacheClientOptions {
  /** host:port of an llmcache server. Default "127.0.0.1:50051". */
  address?: string;
  /** A bearer token from the server's auth file, sent with every call. */
  token?: string;
  /**
   * TLS: `true` for a server whose certificate the system's roots trust, or
   * PEM text for its CA, and for mutual TLS the client's cert and key.
   * Default: plain text.
   */
  tls?: boolean | { ca?: string | Buffer; cert?: string | Buffer; key?: string | Buffer; serverName?: string };
  /** Deadline of each call, in milliseconds. Default 5000. */
  timeoutMs?: number;
  /** The namespace of the calls that do not name one. Default "". */
  namespace?: string;
  /**
   * Auto-batching of `alookup`, `aupdate` and `aupdateIfAbsent` (on by
   * default): the calls made in the same turn of the event loop travel
   * together on one stream, as ioredis's auto-pipelining does. `false` makes
   * each its own unary call.
   */
  batching?: boolean | BatchingOptions;
}

/** Options every call takes, beside its own. */
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
  /**
   * Set for the operations the stream carries, when batching is on: its
   * kind, what the caller gets from its result, and what to do with a result
   * that comes after the caller gave up.
   */
  stream?: { kind: StreamOperationKind; result(outcome: StreamOutcome): R | undefined; abandoned?: (outcome: StreamOutcome) => void };
  /** How long the server may hold the call beyond its deadline's usual timeout: a lookup's wait for a lease's fill. */
  waitMs?: number;
}

/**
 * A remote llmcache server behind LangChain's cache interface.
 *
 * The async methods are the ones to use in a server or anywhere an event
 * loop runs. The blocking methods (`lookup`, `update`, `clear`, ...) really
 * wait for the reply, for code written against a synchronous cache; the call
 * runs on a worker thread while this thread sleeps. The trap: nothing else
 * runs on this thread meanwhile, so a blocking call to a server started in
 * the same thread cannot be answered. It fails with DEADLINE_EXCEEDED once
 * its deadline passes; use the async methods there.
 *
 * By default the async lookups and updates are auto-batched (see
 * CacheClientOptions.batching); `alookupMany` and `aupdateMany` send an
 * explicit batch in one call.
 *
 * A failed call throws (or rejects with) a CacheError naming the method, the
 * gRPC status and the server's message; an entry larger than the server's
 * byte budget, the same EntryTooLargeError an InMemoryCache throws.
 */
export class CacheClient implements BaseCache {
  readonly address: string;
  readonly timeoutMs: number;
  readonly namespace: string;
  readonly #settings: ChannelSettings;
  readonly #channel: Client;
  readonly #blocking: BlockingCaller;
  readonly #stream: OperationStream | undefined;
  #closed = false;

  constructor(options: CacheClientOptions = {}) {
    this.address = options.address ?? DEFAULT_ADDRESS;
    this.timeoutMs = checkTimeout(options.timeoutMs ?? DEFAULT_TIMEOUT_MS);
    this.namespace = options.namespace === undefined ? "" : checkNamespace(options.namespace);
    this.#settings = channelSettings(this.address, options);
    this.#channel = openChannel(this.#settings);
    this.#blocking = new BlockingCaller(this.#settings);
    const batching = options.batching ?? true;
    if (batching !== false) {
      this.#stream = new OperationStream(this.#channel, () => callMetadata(this.#settings), batching === true ? {} : batching);
    }
  }

  /** With `lease`: single flight (see LeaseOptions); the call's deadline is the wait plus its timeout. */
  alookup(prompt: string, llmString: string, options: LookupOptions & CallOptions & { lease: LeaseOptions }): Promise<LeasedLookup>;
  alookup(prompt: string, llmString: string, options?: LookupOptions & CallOptions): Promise<Generation[] | null>;
  alookup(prompt: string, llmString: string, options?: LookupOptions & CallOptions): Promise<Generation[] | null | LeasedLookup> {
    return this.#call(() => this.#lookup(prompt, llmString, options), options);
  }

  areleaseLease(prompt: string, llmString: string, token: string, options?: Pick<LookupOptions, "namespace"> & CallOptions): Promise<boolean> {
    return this.#call(() => this.#releaseLease(prompt, llmString, token, options), options);
  }

  getOrCompute(
    prompt: string,
    llmString: string,
    compute: () => Generation[] | Promise<Generation[]>,
    options?: GetOrComputeOptions,
  ): Promise<Generation[]> {
    return getOrCompute(this, prompt, llmString, compute, options);
  }

  aupdate(prompt: string, llmString: string, generations: Generation[], options?: UpdateOptions & CallOptions): Promise<void> {
    return this.#call(() => this.#update(prompt, llmString, generations, options, false), options).then(() => {});
  }

  aupdateIfAbsent(prompt: string, llmString: string, generations: Generation[], options?: UpdateOptions & CallOptions): Promise<boolean> {
    return this.#call(() => this.#update(prompt, llmString, generations, options, true), options);
  }

  aclear(options?: ClearOptions & CallOptions): Promise<void> {
    return this.#call(() => this.#clear(options), options);
  }

  astats(options?: CallOptions): Promise<CacheStatsReport> {
    return this.#call(statsOperation, options);
  }

  /**
   * Looks up many pairs in one call; the results come in the order of
   * `keys`. The options apply to every lookup.
   */
  alookupMany(
    keys: readonly (readonly [prompt: string, llmString: string])[],
    options?: LookupOptions & CallOptions,
  ): Promise<(Generation[] | null)[]> {
    return this.#call(() => this.#lookupMany(keys, options), options);
  }

  /**
   * Stores many entries in one call, in order; the options apply to every
   * entry. If any entry is refused, none is stored. A batch is one message:
   * keep it under the server's limit (4 MiB by default).
   */
  aupdateMany(
    entries: readonly (readonly [prompt: string, llmString: string, generations: Generation[]])[],
    options?: UpdateOptions & CallOptions,
  ): Promise<void> {
    return this.#call(() => this.#updateMany(entries, options), options);
  }

  lookup(prompt: string, llmString: string, options: LookupOptions & CallOptions & { lease: LeaseOptions }): LeasedLookup;
  lookup(prompt: string, llmString: string, options?: LookupOptions & CallOptions): Generation[] | null;
  lookup(prompt: string, llmString: string, options?: LookupOptions & CallOptions): Generation[] | null | LeasedLookup {
    return this.#callBlocking(this.#lookup(prompt, llmString, options), options);
  }

  releaseLease(prompt: string, llmString: string, token: string, options?: Pick<LookupOptions, "namespace"> & CallOptions): boolean {
    return this.#callBlocking(this.#releaseLease(prompt, llmString, token, options), options);
  }

  update(prompt: string, llmString: string, generations: Generation[], options?: UpdateOptions & CallOptions): void {
    this.#callBlocking(this.#update(prompt, llmString, generations, options, false), options);
  }

  updateIfAbsent(prompt: string, llmString: string, generations: Generation[], options?: UpdateOptions & CallOptions): boolean {
    return this.#callBlocking(this.#update(prompt, llmString, generations, options, true), options);
  }

  clear(options?: ClearOptions & CallOptions): void {
    this.#callBlocking(this.#clear(options), options);
  }

  stats(options?: CallOptions): CacheStatsReport {
    return this.#callBlocking(statsOperation(), options);
  }

  /** Closes the channel and stops the blocking methods' worker thread. */
  async close(): Promise<void> {
    this.#closed = true;
    this.#stream?.close();
    this.#channel.close();
    await this.#blocking.close();
  }

  #lookup(prompt: string, llmString: string, options: LookupOptions | undefined): Operation<Generation[] | null | LeasedLookup> {
    checkKey(prompt, llmString);
    const fields = checkLookupOptions(options, this.namespace);
    const request = encodeLookupRequest(prompt, llmString, fields);
    const method = CacheService.method.lookup;
    if (!fields.lease) {
      return { method, request, decode: decodeLookupResponse, stream: { kind: "lookup", result: (outcome) => (outcome.kind === "lookup" ? outcome.generations : undefined) } };
    }
    // A lookup given up while it waited may still be granted a lease: give it back, so that the next waiter need not wait it out.
    const abandoned = (outcome: StreamOutcome) => {
      if (outcome.kind !== "lookup" || !outcome.lease || this.#closed) return;
      this.areleaseLease(prompt, llmString, outcome.lease.token, { namespace: fields.namespace }).catch(() => {});
    };
    return {
      method,
      request,
      decode: decodeLeasedLookupResponse,
      stream: { kind: "lookup", result: lookupResult, abandoned },
      waitMs: fields.lease.waitMs,
    };
  }

  #releaseLease(prompt: string, llmString: string, token: string, options: Pick<LookupOptions, "namespace"> | undefined): Operation<boolean> {
    checkKey(prompt, llmString);
    if (typeof token !== "string" || token === "") throw new TypeError("token must be the non-empty token of a lease");
    const { namespace } = checkLookupOptions(options, this.namespace);
    return {
      method: CacheService.method.releaseLease,
      request: encodeReleaseLeaseRequest(prompt, llmString, namespace, token),
      decode: decodeReleaseLeaseResponse,
      stream: { kind: "release", result: (outcome) => (outcome.kind === "release" ? outcome.released : undefined) },
    };
  }

  #update(
    prompt: string,
    llmString: string,
    generations: Generation[],
    options: UpdateOptions | undefined,
    onlyIfAbsent: boolean,
  ): Operation<boolean> {
    checkKey(prompt, llmString);
    const fields = { ...checkUpdateOptions(options, this.namespace), onlyIfAbsent };
    return {
      method: CacheService.method.update,
      request: encodeUpdateRequest(prompt, llmString, copyGenerations(generations), fields),
      decode: decodeUpdateResponse,
      stream: { kind: "update", result: (outcome) => (outcome.kind === "update" ? outcome.stored : undefined) },
    };
  }

  #clear(options: ClearOptions | undefined): Operation<void> {
    const { namespace, allNamespaces } = checkClearOptions(options, this.namespace);
    return { method: CacheService.method.clear, request: encodeClearRequest(namespace, allNamespaces), decode: decodeClearResponse };
  }

  #lookupMany(keys: readonly (readonly [string, string])[], options: LookupOptions | undefined): Operation<(Generation[] | null)[]> {
    if (!Array.isArray(keys)) throw new TypeError("keys must be an array of [prompt, llmString] pairs");
    const fields = checkLookupOptions(options, this.namespace);
    if (fields.lease) throw new TypeError("lease is not allowed in alookupMany: a batch is answered at once (use alookup)");
    const lookups = keys.map(([prompt, llmString]) => {
      checkKey(prompt, llmString);
      return encodeLookupRequest(prompt, llmString, fields);
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

  #updateMany(entries: readonly (readonly [string, string, Generation[]])[], options: UpdateOptions | undefined): Operation<void> {
    if (!Array.isArray(entries)) throw new TypeError("entries must be an array of [prompt, llmString, generations]");
    const fields = { ...checkUpdateOptions(options, this.namespace), onlyIfAbsent: false };
    const updates = entries.map(([prompt, llmString, generations], i) => {
      checkKey(prompt, llmString);
      return encodeUpdateRequest(prompt, llmString, copyGenerations(generations, `entries[${i}].generations`), fields);
    });
    return { method: CacheService.method.batchUpdate, request: encodeBatchUpdateRequest(updates), decode: decodeBatchUpdateResponse };
  }

  async #call<R>(operation: () => Operation<R>, options: CallOptions = {}): Promise<R> {
    this.#checkOpen();
    const { method, request, decode, stream, waitMs = 0 } = operation();
    const timeoutMs = this.#timeout(options) + waitMs;
    if (this.#stream && stream && request.length < MAX_STREAM_MESSAGE_BYTES) {
      const outcome = await this.#stream.submit(stream.kind, method.name, request, timeoutMs, options.signal, stream.abandoned);
      if (outcome.kind === "error") throw callFailure(method.name, outcome.code, outcome.message, outcome.reason);
      const result = stream.result(outcome);
      if (result === undefined) throw callFailure(method.name, status.INTERNAL, `the server answered a ${stream.kind} with ${outcome.kind}`);
      return result;
    }
    const reply = await callUnary(this.#channel, methodPath(method), request, {
      timeoutMs,
      signal: options.signal,
      metadata: callMetadata(this.#settings),
    });
    return decodeReply(method, decode, reply);
  }

  #callBlocking<R>({ method, request, decode, waitMs = 0 }: Operation<R>, options: CallOptions = {}): R {
    this.#checkOpen();
    const timeoutMs = this.#timeout(options) + waitMs;
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
    return options.timeoutMs === undefined ? this.timeoutMs : checkTimeout(options.timeoutMs);
  }

  #checkOpen(): void {
    if (this.#closed) throw new CacheError("FAILED_PRECONDITION", "the client is closed");
  }
}

/** A stream lookup's result, as a LeasedLookup; undefined if the outcome is not a lookup's. */
function lookupResult(outcome: StreamOutcome): LeasedLookup | undefined {
  return outcome.kind === "lookup" ? { generations: outcome.generations, lease: outcome.lease } : undefined;
}

function channelSettings(address: string, { token, tls }: CacheClientOptions): ChannelSettings {
  if (token !== undefined && (typeof token !== "string" || token.length === 0 || /\s/.test(token))) {
    throw new TypeError("token must be a non-empty string without spaces");
  }
  const text = (value: string | Buffer | undefined) => (value === undefined ? undefined : value.toString());
  const clientTls = tls === true ? {} : tls ? { ca: text(tls.ca), cert: text(tls.cert), key: text(tls.key), serverName: tls.serverName } : undefined;
  return { address, token, tls: clientTls };
}

function statsOperation(): Operation<CacheStatsReport> {
  return { method: CacheService.method.stats, request: encodeStatsRequest(), decode: decodeStatsResponse };
}

/** Decodes a reply; one that cannot be decoded is the server's fault: INTERNAL. */
function decodeReply<R>(method: DescMethod, decode: (reply: Buffer) => R, reply: Buffer): R {
  try {
    return decode(reply);
  } catch (error) {
    if (!(error instanceof DecodeError)) throw error;
    throw callFailure(method.name, status.INTERNAL, `the server's reply is malformed: ${error.message}`, undefined, error);
  }
}

function checkTimeout(timeoutMs: unknown): number {
  if (typeof timeoutMs !== "number" || !Number.isFinite(timeoutMs) || timeoutMs <= 0) {
    throw new RangeError(`timeoutMs must be a positive number of milliseconds, got ${String(timeoutMs)}`);
  }
  return timeoutMs;
}
