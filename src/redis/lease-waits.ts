import { TooManyLeaseWaitersError } from "../engine/too-many-lease-waiters-error.js";
import type { WaiterLimits } from "../engine/leases.js";
import { ALL_LEASES } from "./keys.js";

/** What looking at a leased pair again finds. */
export type LeaseCheck<V> = { kind: "hit"; value: V } | { kind: "lease"; token: string } | { kind: "held"; pttlMs: number };

/** How a wait ends: with what the last look found, or with nothing (it ran out). */
export type WaitOutcome<V> = Exclude<LeaseCheck<V>, { kind: "held" }> | { kind: "timeout" };

interface Waiter {
  /** Looks again: a hit, a lease granted to this waiter, or still held. */
  check: () => Promise<LeaseCheck<unknown>>;
  checking: boolean;
  /** Looks again when this fires, in case the lease ended with no message (it expired). */
  recheck: NodeJS.Timeout | undefined;
  settle(outcome: WaitOutcome<unknown> | Error): void;
}

/** A look again at a leased pair comes this long after its lease would expire, so that Redis has removed it. */
const EXPIRY_SLACK_MS = 5;

/**
 * Lookups in this replica waiting for a pair's lease, held by a caller of
 * any replica, to end. They look again when a message on the leases
 * channel says the lease ended (a fill, a release or a clear, on any
 * replica), and when it would have expired; each look runs the same
 * script as the lookup, so the first to find the pair still empty takes
 * the next lease. A wait costs timers and a closure, no Redis traffic
 * while the lease is held.
 */
export class LeaseWaits {
  readonly limits: WaiterLimits;
  readonly #byLease = new Map<string, Set<Waiter>>();
  #waiting = 0;
  #closedWith: Error | undefined;

  constructor(limits: WaiterLimits) {
    this.limits = limits;
  }

  get waiting(): number {
    return this.#waiting;
  }

  /**
   * Waits up to `waitMs` for the lease at `leaseKey` (which expires in
   * `pttlMs`) to end; throws TooManyLeaseWaitersError past a limit.
   */
  wait<V>(leaseKey: string, pttlMs: number, waitMs: number, check: () => Promise<LeaseCheck<V>>, signal?: AbortSignal): Promise<WaitOutcome<V>> {
    if (this.#closedWith) return Promise.reject(this.#closedWith);
    const waiters = this.#byLease.get(leaseKey) ?? new Set<Waiter>();
    if (this.#waiting >= this.limits.maxWaiters) throw new TooManyLeaseWaitersError("maxWaiters", this.limits.maxWaiters);
    if (waiters.size >= this.limits.maxWaitersPerPair) throw new TooManyLeaseWaitersError("maxWaitersPerPair", this.limits.maxWaitersPerPair);
    if (signal?.aborted) return Promise.reject(signal.reason);
    this.#byLease.set(leaseKey, waiters);
    return new Promise<WaitOutcome<V>>((resolve, reject) => {
      const onAbort = () => waiter.settle(signal!.reason instanceof Error ? signal!.reason : new Error(String(signal!.reason)));
      const deadline = setTimeout(() => waiter.settle({ kind: "timeout" }), waitMs);
      const waiter: Waiter = {
        check: check as () => Promise<LeaseCheck<unknown>>,
        checking: false,
        recheck: undefined,
        settle: (outcome) => {
          if (!waiters.delete(waiter)) return;
          if (waiters.size === 0 && this.#byLease.get(leaseKey) === waiters) this.#byLease.delete(leaseKey);
          this.#waiting--;
          clearTimeout(deadline);
          clearTimeout(waiter.recheck);
          signal?.removeEventListener("abort", onAbort);
          if (outcome instanceof Error) reject(outcome);
          else resolve(outcome as WaitOutcome<V>);
        },
      };
      waiters.add(waiter);
      this.#waiting++;
      this.#recheckAfter(waiter, pttlMs);
      signal?.addEventListener("abort", onAbort, { once: true });
    });
  }

  /** A lease ended (its key, as the leases channel carries it), or with ALL_LEASES many did: its waiters look again. */
  wake(leaseKey: string): void {
    const groups = leaseKey === ALL_LEASES ? [...this.#byLease.values()] : [this.#byLease.get(leaseKey)];
    for (const waiters of groups) for (const waiter of [...(waiters ?? [])]) this.#look(waiter);
  }

  /** Fails every wait with `error`; later waits reject with it. */
  close(error: Error): void {
    this.#closedWith = error;
    for (const waiters of [...this.#byLease.values()]) for (const waiter of [...waiters]) waiter.settle(error);
  }

  #recheckAfter(waiter: Waiter, pttlMs: number): void {
    clearTimeout(waiter.recheck);
    // PTTL is -1 for a lease with no expiry (never made so) and -2 for one just gone: look again soon.
    waiter.recheck = setTimeout(() => this.#look(waiter), Math.max(pttlMs, 0) + EXPIRY_SLACK_MS);
  }

  #look(waiter: Waiter): void {
    if (waiter.checking) return;
    waiter.checking = true;
    waiter.check().then(
      (found) => {
        waiter.checking = false;
        if (found.kind === "held") this.#recheckAfter(waiter, found.pttlMs);
        else waiter.settle(found);
      },
      (error: unknown) => {
        waiter.checking = false;
        waiter.settle(error instanceof Error ? error : new Error(String(error)));
      },
    );
  }
}
