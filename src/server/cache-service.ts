import type { UntypedServiceImplementation } from "@grpc/grpc-js";
import { CacheService } from "../../gen/llmcache/v1/cache_pb.js";
import type { Store } from "../engine/store.js";
import { updateThroughLeases } from "../engine/leased-update.js";
import { LeaseTable, type LeasedLookup } from "../engine/leases.js";
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
import { checkLimit, requestChecks, type RequestLimits } from "./request-limits.js";

/**
 * A lookup's wait ends this long before its call's deadline, so that the
 * caller gets its miss rather than DEADLINE_EXCEEDED.
 */
const DEADLINE_MARGIN_MS = 20;

export interface CacheServiceOptions {
  /** Single flight's leases over the store; every store of a pair must go through it. Default: a table of its own. */
  leases?: LeaseTable;
  /** Where unexpected failures go (see toFailure). */
  logFailure?: (path: string, error: unknown) => void;
}

/**
 * What a lookup answers: the stored bytes of a hit, and on a miss maybe a
 * lease. The bytes of a hit are the store's own, valid until the store is
 * next written to: a reply written at once uses them as they are, and one
 * written later (a stream's) copies them first.
 */
interface LookupAnswer {
  stored: StoredGenerations | undefined;
  lease?: EncodedLease;
}

/** The grpc-js handlers of llmcache.v1.CacheService over a store. */
export function cacheServiceHandlers(
  store: Store<StoredGenerations>,
  limits: RequestLimits,
  context: HandlerContext,
  leases?: LeaseTable,
): UntypedServiceImplementation {
  const { unary, stream } = cacheServiceMethods(store, limits, { leases, logFailure: context.observer.failed });
  const handlers: UntypedServiceImplementation = {};
  for (const method of CacheService.methods) {
    handlers[method.localName] =
      method.methodKind === "bidi_streaming" ? streamHandler(method, stream, context) : unaryHandler(method, unary[method.localName]!, context);
  }
  return handlers;
}

/**
 * The methods of llmcache.v1.CacheService over a store that holds, for each
 * key's bytes, its generations' bytes (see rpc/codec/update.ts): the store
 * never sees a decoded message, and no caller ever shares its values. Each
 * operation is checked against the caller's rights on its namespace. The
 * stream's method answers one request message of the stream. No reply is
 * larger than limits.maxReplyBytes: a lookup or batch that would pass it is
 * refused, and a stream's results are spread over several messages.
 *
 * A lookup that asks for a lease goes to the lease table on a miss (see
 * LeaseTable), and may wait there: its method answers later, while the
 * stream answers its other operations meanwhile.
 */
export function cacheServiceMethods(
  store: Store<StoredGenerations>,
  limits: RequestLimits,
  options: CacheServiceOptions = {},
): { unary: Record<string, MethodImplementation>; stream: StreamImplementation } {
  const { lookup, update, clear, batchLookup, batchUpdate, stream, stats, releaseLease } = CacheService.method;
  const streamPath = methodPath(stream);
  const { logFailure } = options;
  const leases = options.leases ?? new LeaseTable({ count: (namespace, event) => store.countLease(namespace, event) });
  const checks = requestChecks(limits);

  function get({ namespace, prompt, llmString, bypass }: WireLookup, principal: Principal): StoredGenerations | undefined {
    if (!principal.canRead(namespace)) throw denied(principal, "read", namespace);
    if (!bypass) return store.get(namespace, prompt, llmString);
    store.bypass(namespace);
    return undefined;
  }

  /** A lookup that may take or wait for a lease: its answer now, or once its wait ends (or `signal` stops it). */
  function getOrLease(request: WireLookup, principal: Principal, call: CallScope, signal?: AbortSignal): LookupAnswer | Promise<LookupAnswer> {
    const { namespace, prompt, llmString, leaseMs } = request;
    if (leaseMs > 0 && principal.canRead(namespace) && !principal.canWrite(namespace)) {
      throw denied(principal, "take a lease (which needs the right to write) in", namespace);
    }
    const stored = get(request, principal);
    if (stored !== undefined || leaseMs === 0) return { stored };
    const waitMs = Math.max(0, Math.min(request.waitMs, call.remainingMs() - DEADLINE_MARGIN_MS));
    // A waiter re-reads when a fill wakes it, and is answered after the fill's update: with a copy.
    const reread = () => copyOf(store.peek(namespace, prompt, llmString));
    const outcome = leases.afterMiss(namespace, prompt, llmString, reread, {
      leaseMs,
      waitMs,
      // The call's signal is made on first use: only a lookup that waits needs one.
      signal: waitMs > 0 ? (signal ?? call.signal) : undefined,
    });
    return outcome instanceof Promise ? outcome.then(answerOf) : answerOf(outcome);
  }

  function set({ namespace, prompt, llmString, generations, ttlMs, noStore, onlyIfAbsent, leaseToken }: WireUpdate, principal: Principal): boolean {
    if (!principal.canWrite(namespace)) throw denied(principal, "write", namespace);
    const bytes = entryBytes({ prompt, llmString, generations });
    return updateThroughLeases(store, leases, namespace, prompt, llmString, generations, bytes, { ttlMs, onlyIfAbsent, noStore, leaseToken });
  }

  function release({ namespace, prompt, llmString, leaseToken }: WireRelease, principal: Principal): boolean {
    if (!principal.canWrite(namespace)) throw denied(principal, "write", namespace);
    return leases.release(namespace, prompt, llmString, leaseToken);
  }

  function checkReply(size: number): void {
    checkLimit(limits, "maxReplyBytes", "the reply's size in bytes", size);
  }

  /** What a single lookup answers, refused if its reply alone would pass the reply limit. */
  function withinReplyLimit(answer: LookupAnswer): LookupAnswer {
    checkReply(lookupResponseSize(answer.stored));
    return answer;
  }

  function lookupOne(request: WireLookup, principal: Principal, call: CallScope, signal?: AbortSignal): LookupAnswer | Promise<LookupAnswer> {
    const answer = getOrLease(request, principal, call, signal);
    return answer instanceof Promise ? answer.then(withinReplyLimit) : withinReplyLimit(answer);
  }

  /** A stream's lookup: one that may wait can be cancelled alone (CancelOperation), or with its stream. */
  function lookupOnStream(id: number, request: WireLookup, principal: Principal, call: CallScope): LookupAnswer | Promise<LookupAnswer> {
    if (request.waitMs === 0 || !call.waiting) return lookupOne(request, principal, call);
    const own = new AbortController();
    const stop = () => own.abort(call.signal.reason);
    call.signal.addEventListener("abort", stop, { once: true });
    const done = () => {
      call.signal.removeEventListener("abort", stop);
      if (call.waiting!.get(id) === own) call.waiting!.delete(id);
    };
    let answer: LookupAnswer | Promise<LookupAnswer>;
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

  function execute(operation: WireOperation, principal: Principal, call: CallScope): WireResult | Promise<WireResult> | undefined {
    const { id } = operation;
    const failed = (error: unknown): WireResult => ({ id, kind: "error", ...toFailure(streamPath, error, logFailure) });
    try {
      switch (operation.kind) {
        case "lookup": {
          const answer = lookupOnStream(id, operation.lookup, principal, call);
          // A stream's replies are written once its message has been read
          // through, perhaps after updates that reuse the store's bytes.
          const result = ({ stored, lease }: LookupAnswer): WireResult => ({ id, kind: "lookup", stored: copyOf(stored), lease });
          return answer instanceof Promise ? answer.then(result, failed) : result(answer);
        }
        case "cancel":
          call.waiting?.get(id)?.abort(new CacheError("CANCELLED", `operation ${id} was cancelled by the client`));
          return undefined;
        case "update":
          return { id, kind: "update", stored: set(operation.update, principal) };
        case "release":
          return { id, kind: "release", released: release(operation.release, principal) };
        case "invalid":
          throw operation.problem;
      }
    } catch (error) {
      return failed(error);
    }
  }

  const unary: Record<string, MethodImplementation> = {
    [lookup.localName]: (request, principal, call) => {
      const answer = lookupOne(readLookupRequest(request, checks), principal, call);
      const encode = ({ stored, lease }: LookupAnswer) => writeLookupResponse(stored, lease);
      return answer instanceof Promise ? answer.then(encode) : encode(answer);
    },
    [update.localName]: (request, principal) => writeUpdateResponse(set(readUpdateRequest(request, checks), principal)),
    [releaseLease.localName]: (request, principal) => writeReleaseLeaseResponse(release(readReleaseLeaseRequest(request, checks), principal)),
    [clear.localName]: (request, principal) => {
      const target = readClearRequest(request);
      if (!principal.canClear(target)) throw denied(principal, "clear", target);
      store.clear(target);
      leases.clear(target); // after the store: their waiters must find the pairs gone
      return writeClearResponse();
    },
    [batchLookup.localName]: (request, principal) => {
      // Checked as it grows, so that a big entry named many times is refused
      // before the server has made a copy of it for every name.
      const results: (StoredGenerations | undefined)[] = [];
      let size = 0;
      for (const entry of readBatchLookupRequest(request, checks)) {
        const stored = get(entry, principal);
        results.push(stored);
        size += batchLookupResultSize(stored);
        checkReply(size);
      }
      return writeBatchLookupResponse(results);
    },
    [batchUpdate.localName]: (request, principal) => {
      // Read and check all first: a malformed, forbidden or oversized update anywhere, or one
      // namespace too many, applies none of them.
      const updates = readBatchUpdateRequest(request, checks);
      for (const entry of updates) {
        if (!principal.canWrite(entry.namespace)) throw denied(principal, "write", entry.namespace);
        store.checkFits(entry.namespace, entryBytes(entry));
      }
      store.checkNamespacesFit(updates.filter((entry) => !entry.noStore).map((entry) => entry.namespace));
      for (const entry of updates) set(entry, principal);
      return writeBatchUpdateResponse();
    },
    [stats.localName]: (request, principal) => {
      readStatsRequest(request);
      if (!principal.canReadStats()) throw new CacheError("PERMISSION_DENIED", `token "${principal.name}" may not read the statistics`);
      return writeStatsResponse(store.stats());
    },
  };
  const outboxes = new WeakMap<CallScope, Outbox>();
  const streamMessage: StreamImplementation = (request, principal, call) => {
    const now: WireResult[] = [];
    const later: Promise<Buffer[]>[] = [];
    for (const operation of readStreamRequest(request, checks)) {
      const result = execute(operation, principal, call);
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

/** Stored bytes of the caller's own, for a reply written after the store may have changed. */
function copyOf(stored: StoredGenerations | undefined): StoredGenerations | undefined {
  return stored && Buffer.from(stored);
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
