import { status, type UntypedServiceImplementation } from "@grpc/grpc-js";
import { CacheService } from "../../gen/llmcache/v1/cache_pb.js";
import { allOf, andThen, type CacheBackend, type MaybePromise, type NearLeave } from "../engine/cache-backend.js";
import type { LeasedLookup } from "../engine/leases.js";
import { batchLookupResultSize, readBatchLookupRequest, writeBatchLookupResponse } from "../rpc/codec/batch-lookup.js";
import { readBatchUpdateRequest, writeBatchUpdateResponse } from "../rpc/codec/batch-update.js";
import { readClearRequest, writeClearResponse } from "../rpc/codec/clear.js";
import { encodeLease, lookupResponseSize, readLookupRequest, writeLookupResponse, type EncodedLease, type WireLookup } from "../rpc/codec/lookup.js";
import { readReleaseLeaseRequest, writeReleaseLeaseResponse, type WireRelease } from "../rpc/codec/release-lease.js";
import { readStatsRequest, writeStatsResponse } from "../rpc/codec/stats.js";
import { readStreamRequest, writeStreamResponses, type WireOperation, type WireResult } from "../rpc/codec/stream.js";
import type { StoredGenerations } from "../rpc/codec/generations.js";
import { readUpdateRequest, writeUpdateResponse, type WireUpdate } from "../rpc/codec/update.js";
import { CacheError } from "../rpc/errors.js";
import { fromKeyBytes, type KeyBytes } from "../rpc/key-bytes.js";
import { methodPath } from "../rpc/service-definition.js";
import { toFailure } from "../rpc/status-mapping.js";
import type { Principal } from "./auth/principal.js";
import {
  streamHandler,
  unaryHandler,
  type CallScope,
  type HandlerContext,
  type MethodImplementation,
  type StreamImplementation,
} from "./method-handlers.js";
import { ChangesToTell } from "./changes-to-tell.js";
import { checkLimit, requestChecks, type RequestLimits } from "./request-limits.js";

/**
 * A lookup's wait ends this long before its call's deadline, so that the
 * caller gets its miss rather than DEADLINE_EXCEEDED.
 */
const DEADLINE_MARGIN_MS = 20;

export interface CacheServiceOptions {
  /** Where unexpected failures go (see toFailure). */
  logFailure?: (path: string, error: unknown) => void;
  /**
   * Told of every operation of a stream once answered: its kind, named as
   * StreamOperation's field ("lookup", "update", "release_lease", "cancel";
   * "invalid" when not even that could be read), and its status.
   */
  operationEnded?: (operation: string, code: status) => void;
}

/**
 * What a lookup answers: the stored bytes of a hit, and on a miss maybe a
 * lease. The bytes of a hit may be the backend's own, valid until it is
 * next written to (CacheBackend.lendsValues): a reply written at once uses
 * them as they are, and so does a stream's, written once its message has
 * been read through, unless an update later in that message may have
 * overwritten them: then it copies them first.
 */
interface LookupAnswer {
  stored: StoredGenerations | undefined;
  lease?: EncodedLease;
}

/**
 * How often a watching stream is written an empty Invalidation, so that its
 * client knows the replica still tells it of changes (see WatchChanges).
 */
export const WATCH_HEARTBEAT_MS = 1_000;

/** How the metrics name a stream's operations: as the contract's StreamOperation fields. */
const OPERATION_LABELS: Record<WireOperation["kind"], string> = {
  lookup: "lookup",
  cancel: "cancel",
  update: "update",
  release: "release_lease",
  watch: "watch",
  invalid: "invalid",
};

/** The grpc-js handlers of llmcache.v1.CacheService over a backend. */
export function cacheServiceHandlers(backend: CacheBackend<StoredGenerations>, limits: RequestLimits, context: HandlerContext): UntypedServiceImplementation {
  const { unary, stream } = cacheServiceMethods(backend, limits, { logFailure: context.observer.failed, operationEnded: context.observer.operationEnded });
  const handlers: UntypedServiceImplementation = {};
  for (const method of CacheService.methods) {
    handlers[method.localName] =
      method.methodKind === "bidi_streaming" ? streamHandler(method, stream, context) : unaryHandler(method, unary[method.localName]!, context);
  }
  return handlers;
}

/**
 * The methods of llmcache.v1.CacheService over a backend that holds, for
 * each key's bytes, its generations' bytes (see rpc/codec/update.ts): the
 * backend never sees a decoded message, and no caller ever shares its
 * values. Each operation is checked against the caller's rights on its
 * namespace. The stream's method answers one request message of the
 * stream. No reply is larger than limits.maxReplyBytes: a lookup or batch
 * that would pass it is refused, and a stream's results are spread over
 * several messages.
 *
 * A lookup that asks for a lease may wait for another's fill (see
 * LeaseTable), and every operation may wait on a backend over the network:
 * such a method answers later, while the stream answers its other
 * operations meanwhile.
 */
export function cacheServiceMethods(
  backend: CacheBackend<StoredGenerations>,
  limits: RequestLimits,
  options: CacheServiceOptions = {},
): { unary: Record<string, MethodImplementation>; stream: StreamImplementation } {
  const { lookup, update, clear, batchLookup, batchUpdate, stream, stats, releaseLease } = CacheService.method;
  const streamPath = methodPath(stream);
  const { logFailure, operationEnded } = options;
  const checks = requestChecks(limits);
  /** The streams that watch (see WatchChanges), each with the changes it is yet to be told of. */
  const watches = new WeakMap<CallScope, ChangesToTell>();
  /** Stored bytes of the caller's own, for a reply written after the backend may have changed. */
  const copyOf = (stored: StoredGenerations | undefined) => (stored && backend.lendsValues ? Buffer.from(stored) : stored);

  /** A lookup that may take or wait for a lease: its answer now, or once its wait ends (or `signal` stops it). */
  function getOrLease(request: WireLookup, principal: Principal, call: CallScope, signal?: AbortSignal): MaybePromise<LookupAnswer> {
    const { namespace, prompt, llmString, leaseMs, bypass } = request;
    if (!principal.canRead(namespace)) throw denied(principal, "read", namespace);
    if (leaseMs > 0 && !principal.canWrite(namespace)) throw denied(principal, "take a lease (which needs the right to write) in", namespace);
    const waitMs = leaseMs === 0 ? 0 : Math.max(0, Math.min(request.waitMs, call.remainingMs() - DEADLINE_MARGIN_MS));
    // Only a wait needs the signal: a plain lookup makes no closure for it.
    const stopWaiting = waitMs > 0 ? () => signal ?? call.signal : undefined;
    const outcome = backend.lookup(namespace, prompt, llmString, { bypass, leaseMs, waitMs, signal: stopWaiting });
    return andThen(outcome, answerOf);
  }

  function set({ namespace, prompt, llmString, generations, ttlMs, noStore, onlyIfAbsent, leaseToken }: WireUpdate, principal: Principal): MaybePromise<boolean> {
    if (!principal.canWrite(namespace)) throw denied(principal, "write", namespace);
    const bytes = entryBytes({ prompt, llmString, generations });
    return backend.update(namespace, prompt, llmString, generations, bytes, { ttlMs, onlyIfAbsent, noStore, leaseToken });
  }

  function release({ namespace, prompt, llmString, leaseToken }: WireRelease, principal: Principal): MaybePromise<boolean> {
    if (!principal.canWrite(namespace)) throw denied(principal, "write", namespace);
    return backend.release(namespace, prompt, llmString, leaseToken);
  }

  function checkReply(size: number): void {
    checkLimit(limits, "maxReplyBytes", "the reply's size in bytes", size);
  }

  /** What a single lookup answers, refused if its reply alone would pass the reply limit. */
  function withinReplyLimit(answer: LookupAnswer): LookupAnswer {
    checkReply(lookupResponseSize(answer.stored));
    return answer;
  }

  function lookupOne(request: WireLookup, principal: Principal, call: CallScope, signal?: AbortSignal): MaybePromise<LookupAnswer> {
    return andThen(getOrLease(request, principal, call, signal), withinReplyLimit);
  }

  /** A stream's lookup: one that may wait can be cancelled alone (CancelOperation), or with its stream. */
  function lookupOnStream(id: number, request: WireLookup, principal: Principal, call: CallScope): MaybePromise<LookupAnswer> {
    if (request.waitMs === 0 || !call.waiting) return lookupOne(request, principal, call);
    const own = new AbortController();
    const stop = () => own.abort(call.signal.reason);
    call.signal.addEventListener("abort", stop, { once: true });
    const done = () => {
      call.signal.removeEventListener("abort", stop);
      if (call.waiting!.get(id) === own) call.waiting!.delete(id);
    };
    let answer: MaybePromise<LookupAnswer>;
    try {
      answer = lookupOne(request, principal, call, own.signal);
    } catch (error) {
      done();
      throw error;
    }
    if (!(answer instanceof Promise)) {
      done();
      return answer;
    }
    call.waiting.set(id, own);
    return answer.finally(done);
  }

  /**
   * Tells the stream of every change its caller may see, as Invalidation
   * results with the watch's id. The changes heard in one turn go in one
   * message, written before the next turn (process.nextTick): before the
   * result of the update that made them, which comes after (see Outbox),
   * and before any later lookup's.
   */
  function watch(id: number, call: CallScope): void {
    const feed = backend.changes;
    const stream = call.stream;
    if (!feed || !stream) {
      throw new CacheError("FAILED_PRECONDITION", "this server cannot tell of changes: it keeps no near cache of its own (see llmcache serve --near-cache)");
    }
    const watching = watches.get(call);
    if (watching !== undefined) throw new CacheError("FAILED_PRECONDITION", `the stream already watches (operation ${watching.id})`);
    const write = (results: WireResult[]) => stream.push(writeStreamResponses(results, limits.maxReplyBytes));
    const pending = new ChangesToTell(id, write, stream);
    watches.set(call, pending);
    const stop = feed.watch((change) => {
      if (change === null) pending.add(undefined);
      else if (stream.principal()?.canRead(change.namespace)) pending.add(change.key);
    });
    // What the client keeps was read with rights it may have lost.
    stream.onRightsChange(() => pending.add(undefined));
    // A client that hears nothing cannot tell a quiet replica from a stuck one: it hears this at least.
    // One that does not read hears none: it will stop trusting what it keeps, as it should.
    const heartbeat = setInterval(() => stream.writable() && write([{ id, kind: "invalidation", keys: [], all: false }]), WATCH_HEARTBEAT_MS).unref();
    stream.onEnd(() => {
      stop();
      clearInterval(heartbeat);
    });
  }

  /** Leave for a watching stream's client to keep the hit it is answered (see NearGrant). */
  function nearLeave(call: CallScope, { namespace, prompt, llmString }: WireLookup, stored: StoredGenerations | undefined): NearLeave | undefined {
    // While the stream owes changes, a grant could be written before the word that withdraws it.
    const pending = watches.get(call);
    return stored === undefined || !pending || pending.owes ? undefined : backend.changes?.leave(namespace, prompt, llmString, stored);
  }

  /** `updatesFollow`: an update comes later in the same message. */
  function execute(operation: WireOperation, principal: Principal, call: CallScope, updatesFollow: boolean): MaybePromise<WireResult> | undefined {
    const result = answer(operation, principal, call, updatesFollow);
    if (operationEnded && result !== undefined) {
      const label = OPERATION_LABELS[operation.kind === "invalid" ? (operation.of ?? "invalid") : operation.kind];
      const count = (settled: WireResult) => operationEnded(label, settled.kind === "error" ? settled.code : status.OK);
      if (result instanceof Promise) void result.then(count);
      else count(result);
    }
    return result;
  }

  function answer(operation: WireOperation, principal: Principal, call: CallScope, updatesFollow: boolean): MaybePromise<WireResult> | undefined {
    const { id } = operation;
    const failed = (error: unknown): WireResult => ({ id, kind: "error", ...toFailure(streamPath, error, logFailure) });
    const answered = <T>(outcome: MaybePromise<T>, result: (value: T) => WireResult) =>
      outcome instanceof Promise ? outcome.then(result, failed) : result(outcome);
    try {
      switch (operation.kind) {
        case "lookup": {
          const answer = lookupOnStream(id, operation.lookup, principal, call);
          // An answer that waited is written on its own, whenever it comes.
          const mayBeOverwritten = updatesFollow || answer instanceof Promise;
          return answered(answer, ({ stored, lease }) => ({
            id,
            kind: "lookup",
            stored: mayBeOverwritten ? copyOf(stored) : stored,
            lease,
            near: nearLeave(call, operation.lookup, stored),
          }));
        }
        case "cancel":
          call.waiting?.get(id)?.abort(new CacheError("CANCELLED", `operation ${id} was cancelled by the client`));
          return undefined;
        case "watch":
          watch(id, call);
          return undefined;
        case "update":
          return answered(set(operation.update, principal), (stored) => ({ id, kind: "update", stored }));
        case "release":
          return answered(release(operation.release, principal), (released) => ({ id, kind: "release", released }));
        case "invalid":
          throw operation.problem;
      }
    } catch (error) {
      return failed(error);
    }
  }

  const unary: Record<string, MethodImplementation> = {
    [lookup.localName]: (request, principal, call) =>
      andThen(lookupOne(readLookupRequest(request, checks), principal, call), ({ stored, lease }) => writeLookupResponse(stored, lease)),
    [update.localName]: (request, principal) => andThen(set(readUpdateRequest(request, checks), principal), writeUpdateResponse),
    [releaseLease.localName]: (request, principal) => andThen(release(readReleaseLeaseRequest(request, checks), principal), writeReleaseLeaseResponse),
    [clear.localName]: (request, principal) => {
      const target = readClearRequest(request);
      if (!principal.canClear(target)) throw denied(principal, "clear", target);
      return andThen(backend.clear(target), writeClearResponse);
    },
    [batchLookup.localName]: (request, principal) => {
      const pairs = readBatchLookupRequest(request, checks);
      for (const { namespace } of pairs) if (!principal.canRead(namespace)) throw denied(principal, "read", namespace);
      return andThen(backend.lookupMany(pairs), (results) => {
        // Checked as it grows, so that a big entry named many times is
        // refused before the server has made a copy of it for every name.
        let size = 0;
        for (const stored of results) checkReply((size += batchLookupResultSize(stored)));
        return writeBatchLookupResponse(results);
      });
    },
    [batchUpdate.localName]: (request, principal) => {
      // Read and check all first: a malformed, forbidden or oversized update anywhere, or one
      // namespace too many, applies none of them.
      const updates = readBatchUpdateRequest(request, checks);
      for (const entry of updates) {
        if (!principal.canWrite(entry.namespace)) throw denied(principal, "write", entry.namespace);
        backend.checkFits(entry.namespace, entryBytes(entry));
      }
      backend.checkNamespacesFit(updates.filter((entry) => !entry.noStore).map((entry) => entry.namespace));
      return andThen(allOf(updates.map((entry) => set(entry, principal))), writeBatchUpdateResponse);
    },
    [stats.localName]: (request, principal) => {
      readStatsRequest(request);
      if (!principal.canReadStats()) throw new CacheError("PERMISSION_DENIED", `token "${principal.name}" may not read the statistics`);
      return andThen(backend.stats(), writeStatsResponse);
    },
  };
  const outboxes = new WeakMap<CallScope, Outbox>();
  const streamMessage: StreamImplementation = (request, principal, call) => {
    const now: WireResult[] = [];
    const later: Promise<Buffer[]>[] = [];
    const operations = readStreamRequest(request, checks);
    const lastUpdate = operations.findLastIndex((operation) => operation.kind === "update");
    for (const [i, operation] of operations.entries()) {
      const result = execute(operation, principal, call, i < lastUpdate);
      if (result === undefined) continue;
      if (result instanceof Promise) {
        let outbox = outboxes.get(call);
        if (!outbox) outboxes.set(call, (outbox = new Outbox(limits.maxReplyBytes)));
        later.push(result.then((settled) => outbox.send(settled)));
      } else now.push(result);
    }
    return { now: now.length === 0 ? [] : writeStreamResponses(now, limits.maxReplyBytes), later };
  };
  return { unary, stream: streamMessage };
}

/**
 * A stream's results that come late (lookups that waited), gathered so that
 * those ready at once travel together: a fill answers all its waiters in
 * the same turn, and one message for them all costs the stream and the
 * client one write and one read instead of one each.
 */
class Outbox {
  readonly #maxBytes: number;
  #results: WireResult[] = [];
  #sent: Promise<Buffer[]> | undefined;

  constructor(maxBytes: number) {
    this.#maxBytes = maxBytes;
  }

  /** The messages to write for this result: all of this turn's for the first result of the turn, none for the others. */
  send(result: WireResult): Promise<Buffer[]> {
    this.#results.push(result);
    if (this.#sent) return this.#sent.then(() => []);
    this.#sent = new Promise((resolve) =>
      // Once the microtasks in which the other results ready now arrive have run: a tick queued from a microtask runs after them.
      process.nextTick(() => {
        const results = this.#results;
        this.#results = [];
        this.#sent = undefined;
        resolve(writeStreamResponses(results, this.#maxBytes));
      }),
    );
    return this.#sent;
  }
}

function answerOf(outcome: LeasedLookup<StoredGenerations>): LookupAnswer {
  switch (outcome.kind) {
    case "hit":
      return { stored: outcome.value };
    case "lease":
      return { stored: undefined, lease: encodeLease(outcome.lease) };
    case "miss":
      return { stored: undefined };
  }
}

/** The key strings hold one character per byte: their lengths are their sizes. */
function entryBytes({ prompt, llmString, generations }: Pick<WireUpdate, "prompt" | "llmString" | "generations">): number {
  return prompt.length + llmString.length + generations.length;
}

function denied(principal: Principal, right: string, namespace: KeyBytes | undefined): CacheError {
  const where = namespace === undefined ? "every namespace" : `namespace "${fromKeyBytes(namespace)}"`;
  return new CacheError("PERMISSION_DENIED", `token "${principal.name}" may not ${right} ${where}`);
}
