import { randomBytes } from "node:crypto";
import type { LeaseEvent } from "./stats.js";
import { TooManyLeaseWaitersError } from "./too-many-lease-waiters-error.js";

/** Longest lease and longest wait a lookup may ask for: an hour. */
export const MAX_LEASE_MS = 3_600_000;

/** What a lookup that may take a lease asks for. */
export interface LeaseRequest {
  /** How long a lease granted to it lasts, in ms; more than 0. */
  leaseMs: number;
  /** How long it waits for another's fill when the pair is leased, in ms; 0: not at all. */
  waitMs: number;
  /** Aborting it stops the wait: the lookup rejects with the signal's reason. */
  signal?: AbortSignal;
}

/** The right to fill a pair, given to one caller at a time. */
export interface Lease {
  /** Opaque; proves the fill (or release) is this lease's. */
  token: string;
  leaseMs: number;
}

/** How a lookup that asked for a lease ended. */
export type LeasedLookup<V> =
  | { kind: "hit"; value: V }
  /** A miss, and this caller is to compute the value and fill the pair. */
  | { kind: "lease"; lease: Lease }
  /** A miss without a lease: another holds it, and the wait (if any) ran out. */
  | { kind: "miss" };

export interface WaiterLimits {
  /** Most lookups waiting at once, all pairs together. */
  maxWaiters: number;
  /** Most lookups waiting at once for one pair. */
  maxWaitersPerPair: number;
}

export const DEFAULT_WAITER_LIMITS: WaiterLimits = { maxWaiters: 10_000, maxWaitersPerPair: 1_000 };

/** Timers, so that tests can run the table on a fake clock. */
export interface LeaseTimers {
  /** Calls `fire` in `ms` milliseconds; the returned function cancels it. */
  start(ms: number, fire: () => void): () => void;
}

/** Real timers that never keep the process alive. */
export const REAL_TIMERS: LeaseTimers = {
  start(ms, fire) {
    const timer = setTimeout(fire, ms);
    timer.unref();
    return () => clearTimeout(timer);
  },
};

export interface LeaseTableOptions extends Partial<WaiterLimits> {
  timers?: LeaseTimers;
  /** Told of every event worth counting, with its namespace. */
  count?: (namespace: string, event: LeaseEvent) => void;
}

/** A lookup waiting for a pair's fill. */
interface Waiter {
  /** Reads the pair again, counting nothing: its value, or undefined. */
  reread: () => unknown;
  leaseMs: number;
  settle(outcome: LeasedLookup<unknown> | Error): void;
}

/** A pair's outstanding lease and the lookups waiting on it. */
interface PairLease {
  namespace: string;
  key: string;
  token: string;
  cancelExpiry: () => void;
  waiters: Waiter[];
}

/**
 * Single flight: at most one caller at a time computes a missing pair,
 * while the others that miss it wait for that caller's fill (memcache's
 * leases, "Scaling Memcache at Facebook", NSDI 2013).
 *
 * The table knows nothing of where values live: the cache reads its store
 * first and comes here on a miss, with a function that reads the pair again
 * without counting (`reread`); every store of a pair goes through fill(), so
 * the table learns when to answer the waiters.
 *
 * The rules:
 * - A miss when no lease is outstanding is granted one.
 * - A miss while one is outstanding waits, up to its waitMs.
 * - When a lease ends, its waiters are reconsidered in the order they came:
 *   each reads the pair again and is answered that hit; if the pair is still
 *   missing, the first is granted the next lease and the rest wait on.
 * - A lease ends when the pair is stored (whoever stored it), when its
 *   holder fills or releases it, when it expires, and when it is cleared.
 * - A fill with a stale token (its lease ended) is stored only if the pair
 *   holds no live value and no lease: it never overwrites a newer value nor
 *   races a newer leaseholder.
 *
 * Waiting costs a timer and a closure, no CPU; every wait ends, by a fill,
 * by its waitMs, by its signal, or by close().
 */
export class LeaseTable {
  readonly limits: WaiterLimits;
  readonly #timers: LeaseTimers;
  readonly #count: (namespace: string, event: LeaseEvent) => void;
  /** namespace → pair key → its lease. */
  readonly #leases = new Map<string, Map<string, PairLease>>();
  #waiting = 0;
  #outstanding = 0;
  #closedWith: Error | undefined;
  /** Tokens are this prefix, unique to the table, and a counter: a token from another table (or a restart) never matches. */
  readonly #tokenPrefix = randomBytes(6).toString("base64url");
  #lastToken = 0;

  constructor(options: LeaseTableOptions = {}) {
    this.limits = {
      maxWaiters: checkLimit(options.maxWaiters ?? DEFAULT_WAITER_LIMITS.maxWaiters, "maxWaiters"),
      maxWaitersPerPair: checkLimit(options.maxWaitersPerPair ?? DEFAULT_WAITER_LIMITS.maxWaitersPerPair, "maxWaitersPerPair"),
    };
    this.#timers = options.timers ?? REAL_TIMERS;
    this.#count = options.count ?? (() => {});
  }

  /** Leases outstanding now. */
  get outstanding(): number {
    return this.#outstanding;
  }

  /** Lookups waiting now. */
  get waiting(): number {
    return this.#waiting;
  }

  /**
   * What a lookup that missed gets: a lease, a wait for another's fill, or a
   * plain miss. Synchronous unless it waits. Throws TooManyLeaseWaitersError
   * when it would wait past a limit.
   */
  afterMiss<V>(
    namespace: string,
    prompt: string,
    llmString: string,
    reread: () => V | undefined,
    request: LeaseRequest,
  ): LeasedLookup<V> | Promise<LeasedLookup<V>> {
    if (this.#closedWith) throw this.#closedWith;
    const key = pairKey(prompt, llmString);
    const current = this.#leases.get(namespace)?.get(key);
    if (!current) return { kind: "lease", lease: this.#grant(namespace, key, request.leaseMs) };
    if (request.waitMs <= 0) return { kind: "miss" };
    if (this.#waiting >= this.limits.maxWaiters) throw new TooManyLeaseWaitersError("maxWaiters", this.limits.maxWaiters);
    if (current.waiters.length >= this.limits.maxWaitersPerPair) {
      throw new TooManyLeaseWaitersError("maxWaitersPerPair", this.limits.maxWaitersPerPair);
    }
    const { signal } = request;
    if (signal?.aborted) return Promise.reject(signal.reason);
    return new Promise<LeasedLookup<V>>((resolve, reject) => {
      let cancelWait = () => {};
      const onAbort = () => {
        this.#forget(waiter, namespace, key);
        waiter.settle(signal!.reason instanceof Error ? signal!.reason : new Error(String(signal!.reason)));
      };
      const waiter: Waiter = {
        reread,
        leaseMs: request.leaseMs,
        settle: (outcome) => {
          this.#waiting--;
          cancelWait();
          signal?.removeEventListener("abort", onAbort);
          if (outcome instanceof Error) reject(outcome);
          else resolve(outcome as LeasedLookup<V>);
        },
      };
      this.#waiting++;
      current.waiters.push(waiter);
      cancelWait = this.#timers.start(request.waitMs, () => {
        this.#forget(waiter, namespace, key);
        this.#count(namespace, "waitsTimedOut");
        waiter.settle({ kind: "miss" });
      });
      signal?.addEventListener("abort", onAbort, { once: true });
    });
  }

  /**
   * Stores the pair through `store` if `token` allows, then ends the pair's
   * lease and answers its waiters. With no token, or the current one, it
   * stores; with a stale one, only if `isLive` says the pair holds nothing
   * and no lease is outstanding. Returns what `store` returned, or false for
   * a refused stale fill. If `store` throws, the lease stays.
   */
  fill(namespace: string, prompt: string, llmString: string, token: string | undefined, isLive: () => boolean, store: () => boolean): boolean {
    if (this.#outstanding === 0 && token === undefined) return store();
    const key = pairKey(prompt, llmString);
    const lease = this.#leases.get(namespace)?.get(key);
    const current = token !== undefined && lease?.token === token;
    if (token !== undefined && !current && (lease || isLive())) {
      this.#count(namespace, "staleFillsRefused");
      return false;
    }
    const stored = store();
    if (current) this.#count(namespace, "filled");
    // The holder is done with its lease whether it stored or chose not to;
    // anyone else ends it only by storing the pair.
    if (lease && (current || stored)) this.#end(lease);
    return stored;
  }

  /** Gives up a lease without a fill; false if the token is not the pair's current lease. */
  release(namespace: string, prompt: string, llmString: string, token: string): boolean {
    const lease = this.#leases.get(namespace)?.get(pairKey(prompt, llmString));
    if (!lease || lease.token !== token) return false;
    this.#count(namespace, "released");
    this.#end(lease);
    return true;
  }

  /**
   * Ends the leases of a namespace, or of all: call it after clearing the
   * store, so that their waiters find the pairs missing and one of them
   * takes the next lease.
   */
  clear(namespace?: string): void {
    const spaces = namespace === undefined ? [...this.#leases.values()] : [this.#leases.get(namespace)];
    for (const leases of spaces) for (const lease of [...(leases?.values() ?? [])]) this.#end(lease);
  }

  /** Ends every lease and fails every waiter with `error`; later lookups throw it. */
  close(error: Error): void {
    this.#closedWith = error;
    for (const leases of this.#leases.values()) {
      for (const lease of leases.values()) {
        lease.cancelExpiry();
        for (const waiter of lease.waiters) waiter.settle(error);
        lease.waiters = [];
      }
    }
    this.#leases.clear();
    this.#outstanding = 0;
  }

  #grant(namespace: string, key: string, leaseMs: number): Lease {
    let leases = this.#leases.get(namespace);
    if (!leases) this.#leases.set(namespace, (leases = new Map()));
    const token = `${this.#tokenPrefix}.${(++this.#lastToken).toString(36)}`;
    const lease: PairLease = { namespace, key, token, cancelExpiry: () => {}, waiters: [] };
    lease.cancelExpiry = this.#timers.start(leaseMs, () => {
      this.#count(namespace, "expired");
      this.#end(lease);
    });
    leases.set(key, lease);
    this.#outstanding++;
    this.#count(namespace, "granted");
    return { token, leaseMs };
  }

  /** Ends a lease and reconsiders its waiters, in the order they came. */
  #end(lease: PairLease): void {
    lease.cancelExpiry();
    const leases = this.#leases.get(lease.namespace)!;
    leases.delete(lease.key);
    if (leases.size === 0) this.#leases.delete(lease.namespace);
    this.#outstanding--;
    for (const waiter of lease.waiters) {
      const value = waiter.reread();
      if (value !== undefined) {
        this.#count(lease.namespace, "waitsServed");
        waiter.settle({ kind: "hit", value });
        continue;
      }
      const next = this.#leases.get(lease.namespace)?.get(lease.key);
      if (next) next.waiters.push(waiter);
      else waiter.settle({ kind: "lease", lease: this.#grant(lease.namespace, lease.key, waiter.leaseMs) });
    }
  }

  /** Takes a waiter out of its pair's queue (it timed out or was cancelled). */
  #forget(waiter: Waiter, namespace: string, key: string): void {
    const lease = this.#leases.get(namespace)?.get(key);
    if (!lease) return;
    const at = lease.waiters.indexOf(waiter);
    if (at >= 0) lease.waiters.splice(at, 1);
  }
}

/** One string per (prompt, llm_string), unambiguous: the prompt's length comes first. */
export function pairKey(prompt: string, llmString: string): string {
  return `${prompt.length}:${prompt}${llmString}`;
}

function checkLimit(value: number, name: string): number {
  if (!Number.isSafeInteger(value) || value < 1) throw new RangeError(`${name} must be a positive integer, got ${String(value)}`);
  return value;
}
