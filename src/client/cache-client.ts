import type { DescMethod } from "@bufbuild/protobuf";
import { status } from "@grpc/grpc-js";
import { CacheService } from "../../gen/llmcache/v1/cache_pb.js";
import type { BaseCache, CacheStatsReport } from "../base-cache.js";
import {
  checkClearOptions,
  checkLookupOptions,
  checkNamespace,
  checkUpdateOptions,
  refuseUnknownOptions,
  type ClearOptions,
  type LeasedLookup,
  type LeaseOptions,
  type LookupOptions,
  type UpdateOptions,
} from "../call-options.js";
import { checkKey, copyGenerations, type Generation } from "../generation.js";
import { describe } from "../json.js";
import { getOrCompute, type GetOrComputeOptions } from "../single-flight.js";
import { callMetadata, isSendableToken, type ChannelSettings } from "../rpc/channel.js";
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
import { parseAddresses } from "./addresses.js";
import { BlockingCaller } from "./blocking-caller.js";
import { ClientNearCache, localKey, type NearCacheStats } from "./near-cache.js";
import { MAX_STREAM_MESSAGE_BYTES, OperationStream, type BatchingOptions, type StreamChanges } from "./operation-stream.js";
import { ReplicaPicker } from "./replica-picker.js";

export interface CacheClientOptions {
  /**
   * The llmcache server: host:port ("10.0.0.1:50051", "[::1]:50051"), or
   * several replicas of one cache (servers on one Redis), as host:port
   * items separated by commas or as an array. Default "127.0.0.1:50051".
   * An empty list or item, a duplicate, or an item that is not host:port
   * (or a grpc-js "unix:PATH" target) is a TypeError.
   *
   * A channel is opened to each address; a DNS name with several A/AAAA
   * records is spread over all of them (round robin). Calls take turns over
   * the replicas whose channel is not in TRANSIENT_FAILURE (with auto-batching,
   * the calls of one turn of the event loop go to one replica's stream).
   *
   * A call that fails with UNAVAILABLE (its replica died, or was never there)
   * is made again on a replica this call has not tried yet, with what is
   * left of its deadline, at most once per replica: lookups (leased or not),
   * `lookupMany`, `stats`, `clear`, and updates that overwrite (`update`,
   * `updateMany`: storing the same value again changes nothing). Never
   * retried, so their UNAVAILABLE reaches the caller: `updateIfAbsent` (the
   * retry could find the entry the first attempt stored and answer false),
   * an update that fills a lease (`leaseToken`) and `releaseLease`.
   */
  address?: string | readonly string[];
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
  /**
   * A near cache: hits kept in this process, up to `maxBytes`, and answered
   * again with no call, as Redis's client-side caching does. Needs
   * auto-batching, and a server that tells of changes (one with
   * `--near-cache`, on Redis): each stream watches (WatchChanges), the
   * server grants the hits it may keep, and every change to an entry,
   * wherever it is made, drops it here once the server hears of it. A
   * server that cannot tell of changes refuses, and the client then keeps
   * nothing read through it (with a warning). What is kept goes when the
   * stream ends (after a second with neither a call nor a hit from memory,
   * or at close()), and when it has heard nothing for 3 s (the server
   * writes every second: a silent one may be stuck). Lookups with
   * `bypass` are never answered from it. Its hits are not in the server's
   * stats: see `nearCacheStats`.
   */
  nearCache?: { maxBytes: number };
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
/**
 * The longest deadline a call may have: 24 days. With a lease's wait (at
 * most an hour) on top, it stays under 2^31 ms, past which a grpc-js
 * server reads the deadline as negative (and a lookup that would wait
 * answers at once), and Node fires its timers at once.
 */
export const MAX_TIMEOUT_MS = 24 * 86_400_000;

/** One call: which method, its encoded request, and what the caller gets from the reply. */
interface Operation<R> {
  method: DescMethod;
  request: Buffer;
  decode(reply: Buffer): R;
  /** Whether it may be sent again to another replica after UNAVAILABLE (see CacheClientOptions.address). */
  replayable: boolean;
  /**
   * Set for the operations the stream carries, when batching is on: its
   * kind, what the caller gets from its result, and what to do with a result
   * that comes after the caller gave up.
   */
  stream?: {
    kind: StreamOperationKind;
    result(outcome: StreamOutcome): R | undefined;
    abandoned?: (outcome: StreamOutcome, replica: number) => void;
  };
  /** How long the server may hold the call beyond its deadline's usual timeout: a lookup's wait for a lease's fill. */
  waitMs?: number;
  /** A lease's fill or release: close() still sends it while calls it lets finish may wait for that lease. */
  endsLease?: boolean;
  /** A lookup the near cache may answer, and keep the answer of: its local key (see localKey). */
  nearKey?: string;
  /** What the call changes, for the near cache to forget: these local keys, or everything. */
  changes?: readonly string[] | "all";
  /** What a lookup answers when the near cache holds its pair. */
  nearHit?: (generations: Generation[]) => R;
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
  /** The replicas' addresses, joined with ",". */
  readonly address: string;
  readonly addresses: readonly string[];
  readonly timeoutMs: number;
  readonly namespace: string;
  /** One per replica, in the order of `addresses`. */
  readonly #replicas: readonly ChannelSettings[];
  readonly #picker: ReplicaPicker;
  readonly #blocking: BlockingCaller;
  /** Off: undefined. On: each replica's stream, opened on its first operation. */
  readonly #batching: { options: BatchingOptions; streams: (OperationStream | undefined)[] } | undefined;
  /** The replica whose stream takes this turn's operations; undefined until one is submitted. */
  #turnReplica: number | undefined;
  /** The channels are closed: nothing more can be sent, not even a retry. */
  #closed = false;
  /** close() was called: new calls are refused while those already made finish. */
  #closing: Promise<void> | undefined;
  /** Async calls made and not yet settled, which close() lets finish. */
  readonly #inFlight = new Set<Promise<unknown>>();
  /** Hits kept in this process (CacheClientOptions.nearCache), if asked for. */
  readonly #near: ClientNearCache | undefined;

  constructor(options: CacheClientOptions = {}) {
    checkClientOptions(options);
    this.addresses = parseAddresses(options.address ?? DEFAULT_ADDRESS);
    this.address = this.addresses.join(",");
    this.timeoutMs = checkTimeout(options.timeoutMs ?? DEFAULT_TIMEOUT_MS);
    this.namespace = options.namespace === undefined ? "" : checkNamespace(options.namespace);
    this.#replicas = channelSettings(this.addresses, options);
    this.#picker = new ReplicaPicker(this.#replicas);
    this.#blocking = new BlockingCaller(this.#replicas);
    const batching = options.batching ?? true;
    if (batching !== false) this.#batching = { options: batching === true ? {} : batching, streams: [] };
    if (options.nearCache) this.#near = new ClientNearCache(options.nearCache.maxBytes);
  }

  /** What the near cache holds and has done (CacheClientOptions.nearCache); undefined without one. */
  get nearCacheStats(): NearCacheStats | undefined {
    return this.#near?.stats;
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
    if (this.#closing) return Promise.reject(new CacheError("FAILED_PRECONDITION", "the client is closed"));
    // A call of its own for close(), compute included, whose calls close() lets
    // through: closed under it, its store (and its release) would be refused.
    return this.#track(getOrCompute(this.#admittedCalls(), prompt, llmString, compute, options));
  }

  /** The async calls getOrCompute makes, sent even while close() waits for it. */
  #admittedCalls(): Pick<BaseCache, "alookup" | "aupdate" | "areleaseLease"> {
    const admitted = true;
    return {
      alookup: ((prompt: string, llmString: string, options?: LookupOptions & CallOptions) =>
        this.#call(() => this.#lookup(prompt, llmString, options), options, admitted)) as BaseCache["alookup"],
      aupdate: (prompt, llmString, generations, options?: UpdateOptions & CallOptions) =>
        this.#call(() => this.#update(prompt, llmString, generations, options, false), options, admitted).then(() => {}),
      areleaseLease: (prompt, llmString, token, options?: Pick<LookupOptions, "namespace"> & CallOptions) =>
        this.#call(() => this.#releaseLease(prompt, llmString, token, options), options, admitted),
    };
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

  /**
   * Refuses new calls, lets the calls already made finish (each within its
   * deadline: an update made just before close() is sent and answered, not
   * dropped), then closes the channels and stops the blocking methods'
   * worker thread. Meanwhile it still sends the calls that end a lease (an
   * update with a leaseToken, releaseLease), which calls it waits for may
   * be waiting for.
   */
  close(): Promise<void> {
    this.#closing ??= this.#drainAndClose();
    return this.#closing;
  }

  async #drainAndClose(): Promise<void> {
    // A lease's fill may come while draining: one call ending may not be the last.
    while (this.#inFlight.size > 0) await Promise.allSettled([...this.#inFlight]);
    this.#closed = true;
    for (const stream of this.#batching?.streams ?? []) stream?.close();
    this.#picker.close();
    await this.#blocking.close();
  }

  #lookup(prompt: string, llmString: string, options: LookupOptions | undefined): Operation<Generation[] | null | LeasedLookup> {
    checkKey(prompt, llmString);
    const fields = checkLookupOptions(options, this.namespace);
    const request = encodeLookupRequest(prompt, llmString, fields);
    const method = CacheService.method.lookup;
    const nearKey = this.#near && !fields.bypass ? localKey(fields.namespace, prompt, llmString) : undefined;
    if (!fields.lease) {
      const result = (outcome: StreamOutcome) => (outcome.kind === "lookup" ? outcome.generations : undefined);
      return { method, request, decode: decodeLookupResponse, replayable: true, stream: { kind: "lookup", result }, nearKey, nearHit: (kept) => kept };
    }
    // A lookup given up while it waited may still be granted a lease: give it
    // back, to the replica that granted it, so the next waiter need not wait it out.
    const abandoned = (outcome: StreamOutcome, replica: number) => {
      if (outcome.kind !== "lookup" || !outcome.lease || this.#closed) return;
      const release = this.#releaseLease(prompt, llmString, outcome.lease.token, { namespace: fields.namespace });
      // Counted, so that close() does not close the channel under it.
      this.#track(this.#attempt(release, replica, this.timeoutMs, undefined)).catch(() => {});
    };
    return {
      method,
      request,
      decode: decodeLeasedLookupResponse,
      replayable: true,
      stream: { kind: "lookup", result: lookupResult, abandoned },
      waitMs: fields.lease.waitMs,
      nearKey,
      nearHit: (kept) => ({ generations: kept, lease: null }),
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
      replayable: false,
      endsLease: true,
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
      // A second updateIfAbsent could find what the first stored, and a second fill a lease the first ended.
      replayable: !onlyIfAbsent && fields.leaseToken === undefined,
      endsLease: fields.leaseToken !== undefined,
      stream: { kind: "update", result: (outcome) => (outcome.kind === "update" ? outcome.stored : undefined) },
      changes: this.#near && [localKey(fields.namespace, prompt, llmString)],
    };
  }

  #clear(options: ClearOptions | undefined): Operation<void> {
    const { namespace, allNamespaces } = checkClearOptions(options, this.namespace);
    const request = encodeClearRequest(namespace, allNamespaces);
    return { method: CacheService.method.clear, request, decode: decodeClearResponse, replayable: true, changes: "all" };
  }

  #lookupMany(keys: readonly (readonly [string, string])[], options: LookupOptions | undefined): Operation<(Generation[] | null)[]> {
    if (!Array.isArray(keys)) throw new TypeError("keys must be an array of [prompt, llmString] pairs");
    const fields = checkLookupOptions(options, this.namespace);
    if (fields.lease) throw new TypeError("lease is not allowed in alookupMany: a batch is answered at once (use alookup)");
    const lookups = keys.map((key, i) => {
      const [prompt, llmString] = tupleAt(key, 2, `keys[${i}]`, "[prompt, llmString]");
      checkKey(prompt, llmString);
      return encodeLookupRequest(prompt as string, llmString as string, fields);
    });
    return {
      method: CacheService.method.batchLookup,
      request: encodeBatchLookupRequest(lookups),
      replayable: true,
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
    const changes: string[] = [];
    const updates = entries.map((entry, i) => {
      const [prompt, llmString, generations] = tupleAt(entry, 3, `entries[${i}]`, "[prompt, llmString, generations]");
      checkKey(prompt, llmString);
      if (this.#near) changes.push(localKey(fields.namespace, prompt as string, llmString as string));
      return encodeUpdateRequest(prompt as string, llmString as string, copyGenerations(generations, `entries[${i}].generations`), fields);
    });
    return {
      method: CacheService.method.batchUpdate,
      request: encodeBatchUpdateRequest(updates),
      decode: decodeBatchUpdateResponse,
      replayable: fields.leaseToken === undefined,
      changes,
    };
  }

  /** Makes the call, counted among those close() lets finish: the promise the caller gets. */
  #call<R>(operation: () => Operation<R>, options: CallOptions = {}, admitted = false): Promise<R> {
    return this.#track(this.#start(operation, options, admitted));
  }

  /** Counts a call among those close() lets finish, until it settles. */
  #track<R>(call: Promise<R>): Promise<R> {
    this.#inFlight.add(call);
    const settled = () => this.#inFlight.delete(call);
    call.then(settled, settled);
    return call;
  }

  /** `admitted`: sent while the client closes (see getOrCompute), as a lease's fill or release is. */
  async #start<R>(operation: () => Operation<R>, options: CallOptions, admitted: boolean): Promise<R> {
    const built = operation();
    this.#refuseIfClosing(admitted || built.endsLease === true);
    const kept = this.#nearAnswer(built);
    if (kept !== undefined) return kept;
    const timeoutMs = this.#timeout(options) + (built.waitMs ?? 0);
    const first = this.#batched(built) ? this.#streamReplica() : undefined;
    const attempt = (replica: number, remainingMs: number) => this.#attempt(built, replica, remainingMs, options.signal);
    const result = await this.#picker.call(timeoutMs, built.replayable, attempt, first);
    this.#nearForget(built);
    return result;
  }

  /**
   * What the near cache answers for a lookup it holds; for a call that
   * changes entries, forgets them first, so that no lookup already sent
   * keeps the old value.
   */
  #nearAnswer<R>(operation: Operation<R>): R | undefined {
    const near = this.#near;
    if (!near) return undefined;
    this.#nearForget(operation);
    if (operation.nearKey === undefined) return undefined;
    const streams = this.#batching!.streams;
    // A stream silent too long may have missed changes: it drops what it let be kept before anything is answered.
    for (const stream of streams) stream?.checkWatch();
    const kept = near.get(operation.nearKey);
    if (kept === undefined) return undefined;
    // Every stream, not only the one that granted: losing any watching stream drops everything kept.
    for (const stream of streams) stream?.usedNear();
    return operation.nearHit!(kept);
  }

  /** One attempt of an operation on one replica: on its stream, if the operation can be batched, else as a unary call. */
  async #attempt<R>(operation: Operation<R>, replica: number, timeoutMs: number, signal: AbortSignal | undefined): Promise<R> {
    // A retry after close() must not open a stream on a closed channel.
    this.#checkOpen();
    const { method, request, decode, stream } = operation;
    if (stream && this.#batched(operation)) {
      const abandoned = stream.abandoned && ((outcome: StreamOutcome) => stream.abandoned!(outcome, replica));
      const submitted = this.#stream(replica).submit(stream.kind, method.name, request, timeoutMs, signal, abandoned);
      const outcome = await (operation.nearKey === undefined ? submitted : this.#nearKeeping(operation.nearKey, submitted));
      if (outcome.kind === "error") throw callFailure(method.name, outcome.code, outcome.message, outcome.reason);
      const result = stream.result(outcome);
      if (result === undefined) throw callFailure(method.name, status.INTERNAL, `the server answered a ${stream.kind} with ${outcome.kind}`);
      return result;
    }
    const reply = await callUnary(this.#picker.channels[replica]!, methodPath(method), request, {
      timeoutMs,
      signal,
      metadata: callMetadata(this.#replicas[replica]!),
    });
    return decodeReply(method, decode, reply);
  }

  /**
   * Forgets what a call changes: before it is sent, and again once it is
   * answered. A lookup sent meanwhile may bring back the old value (through
   * another replica, or beside an update that was not on the stream);
   * forgetting again refuses its grant, whenever it comes.
   */
  #nearForget(operation: Operation<unknown>): void {
    if (operation.changes === "all") this.#near?.forgetAll();
    else for (const key of operation.changes ?? []) this.#near?.forget(key);
  }

  /** Gives a lookup's grant, if any, to the near cache, which keeps it unless the key changed since it was sent. */
  async #nearKeeping(key: string, submitted: Promise<StreamOutcome>): Promise<StreamOutcome> {
    const ticket = this.#near!.beginLookup(key);
    try {
      const outcome = await submitted;
      const near = outcome.kind === "lookup" && outcome.generations !== null ? outcome.near : null;
      ticket.done(near ? { serverKey: near.key, ttlMs: near.ttlMs, response: near.response } : undefined);
      return outcome;
    } catch (error) {
      ticket.done(undefined);
      throw error;
    }
  }

  #batched(operation: Operation<unknown>): boolean {
    return this.#batching !== undefined && operation.stream !== undefined && operation.request.length < MAX_STREAM_MESSAGE_BYTES;
  }

  #stream(replica: number): OperationStream {
    const { options, streams } = this.#batching!;
    const settings = this.#replicas[replica]!;
    return (streams[replica] ??= new OperationStream(this.#picker.channels[replica]!, () => callMetadata(settings), options, this.#nearChanges(settings.address)));
  }

  /** What a replica's streams tell the near cache, if there is one. */
  #nearChanges(address: string): StreamChanges | undefined {
    const near = this.#near;
    if (!near) return undefined;
    let warned = false;
    return {
      invalidate: (keys, all) => near.invalidate(keys, all),
      lost: () => near.forgetAll(),
      refused: (message) => {
        if (warned) return;
        warned = true;
        process.emitWarning(`llmcache: the near cache keeps nothing read through ${address}: ${message}`, { code: "LLMCACHE_NEAR_CACHE_REFUSED" });
      },
    };
  }

  /** The replica whose stream takes the operations of this turn of the event loop, so that they travel together. */
  #streamReplica(): number {
    if (this.#replicas.length === 1) return 0;
    if (this.#turnReplica === undefined) {
      this.#turnReplica = this.#picker.pick();
      setImmediate(() => (this.#turnReplica = undefined));
    }
    return this.#turnReplica;
  }

  #callBlocking<R>(operation: Operation<R>, options: CallOptions = {}): R {
    const { method, request, decode, replayable, waitMs = 0, endsLease } = operation;
    this.#refuseIfClosing(endsLease === true);
    const kept = this.#nearAnswer(operation);
    if (kept !== undefined) return kept;
    const timeoutMs = this.#timeout(options) + waitMs;
    try {
      const reply = this.#blocking.call(methodPath(method), request, timeoutMs, replayable);
      const result = decodeReply(method, decode, asBuffer(reply));
      this.#nearForget(operation);
      return result;
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

  /** Once close() is called, refuses a new call; one `admitted` (see #start) only once the channels are closed. */
  #refuseIfClosing(admitted: boolean): void {
    if (this.#closing && (this.#closed || !admitted)) throw new CacheError("FAILED_PRECONDITION", "the client is closed");
  }
}

/** A stream lookup's result, as a LeasedLookup; undefined if the outcome is not a lookup's. */
function lookupResult(outcome: StreamOutcome): LeasedLookup | undefined {
  return outcome.kind === "lookup" ? { generations: outcome.generations, lease: outcome.lease } : undefined;
}

/** Each replica's channel settings: its address, and the token and TLS they share. */
function channelSettings(addresses: readonly string[], { token, tls }: CacheClientOptions): ChannelSettings[] {
  if (token !== undefined && (typeof token !== "string" || !isSendableToken(token))) {
    throw new TypeError("token must be a non-empty string of visible ASCII characters, without spaces");
  }
  const text = (value: string | Buffer | undefined) => (value === undefined ? undefined : value.toString());
  const clientTls = tls === true ? {} : tls ? { ca: text(tls.ca), cert: text(tls.cert), key: text(tls.key), serverName: tls.serverName } : undefined;
  return addresses.map((address) => ({ address, token, tls: clientTls }));
}

function statsOperation(): Operation<CacheStatsReport> {
  return { method: CacheService.method.stats, request: encodeStatsRequest(), decode: decodeStatsResponse, replayable: true };
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

function checkNearCacheOption(nearCache: unknown, batching: unknown): void {
  if (nearCache === null || typeof nearCache !== "object") throw new TypeError(`nearCache must be { maxBytes }, got ${describe(nearCache)}`);
  refuseUnknownOptions(nearCache, ["maxBytes"]);
  const { maxBytes } = nearCache as { maxBytes?: unknown };
  if (typeof maxBytes !== "number" || !Number.isSafeInteger(maxBytes) || maxBytes <= 0) {
    throw new RangeError(`nearCache.maxBytes must be a positive whole number of bytes, got ${describe(maxBytes)}`);
  }
  if (batching === false) throw new TypeError("nearCache needs batching: the server tells of changes on the batching stream");
}

/** An item of a batch: an array of exactly `size` items, which `shape` names for the error ("[prompt, llmString]"). */
function tupleAt(item: unknown, size: number, path: string, shape: string): unknown[] {
  if (!Array.isArray(item) || item.length !== size) {
    const got = Array.isArray(item) ? `an array of ${item.length} item${item.length === 1 ? "" : "s"}` : describe(item);
    throw new TypeError(`${path} must be ${shape}, got ${got}`);
  }
  return item;
}

function checkTimeout(timeoutMs: unknown): number {
  if (typeof timeoutMs !== "number") throw new TypeError(`timeoutMs must be a number of milliseconds, got ${describe(timeoutMs)}`);
  if (!Number.isFinite(timeoutMs) || timeoutMs <= 0) throw new RangeError(`timeoutMs must be a positive number of milliseconds, got ${timeoutMs}`);
  if (timeoutMs > MAX_TIMEOUT_MS) throw new RangeError(`timeoutMs must be at most ${MAX_TIMEOUT_MS} (24 days), got ${timeoutMs}`);
  return timeoutMs;
}

const CLIENT_OPTIONS: readonly (keyof CacheClientOptions)[] = ["address", "token", "tls", "timeoutMs", "namespace", "batching", "nearCache"];

/**
 * What the types say, for callers in JavaScript: a misspelt option would
 * otherwise be dropped silently, leaving its default in force.
 */
function checkClientOptions(options: unknown): void {
  if (options === null || typeof options !== "object") throw new TypeError(`options must be an object, got ${describe(options)}`);
  refuseUnknownOptions(options, CLIENT_OPTIONS);
  const { tls, batching, nearCache } = options as Record<string, unknown>;
  if (tls !== undefined && typeof tls !== "boolean" && (tls === null || typeof tls !== "object")) {
    throw new TypeError(`tls must be a boolean or { ca?, cert?, key?, serverName? }, got ${describe(tls)}`);
  }
  if (nearCache !== undefined) checkNearCacheOption(nearCache, batching);
  if (batching === undefined || typeof batching === "boolean") return;
  if (batching === null || typeof batching !== "object") throw new TypeError(`batching must be a boolean or { windowMs? }, got ${describe(batching)}`);
  const { windowMs } = batching as { windowMs?: unknown };
  if (windowMs !== undefined && (typeof windowMs !== "number" || !Number.isFinite(windowMs) || windowMs < 0)) {
    throw new RangeError(`batching.windowMs must be a number of milliseconds, 0 or more, got ${describe(windowMs)}`);
  }
}
