import assert from "node:assert/strict";
import fc from "fast-check";
import { LeaseTable, type LeasedLookup } from "../../src/engine/leases.js";
import { newLeaseStats, type LeaseEvent, type LeaseStats } from "../../src/engine/stats.js";
import { TooManyLeaseWaitersError } from "../../src/engine/too-many-lease-waiters-error.js";
import { FakeTimers } from "../helpers/fake-timers.js";

/**
 * The lease table against a reference model of single flight, driven by
 * fast-check with random interleavings of lookups that ask for leases and
 * waits, fills with the current token, a stale one or none, releases,
 * expiries, cancelled waits and clears, on a fake clock.
 *
 * The model is the rules written plainly: one record per pair of
 * its value, its lease and the queue of lookups waiting on it. Operations
 * happen at even times and leases last even times while waits last odd
 * ones, so an expiry and a wait's end never fall on the same instant and
 * the model need not know in which order the table's timers fire.
 */

const NAMESPACES = ["a", "b"];
const PROMPTS = ["p", "q"];
const LLM = "llm";
const MAX_WAITERS = 5;
const MAX_WAITERS_PER_PAIR = 3;

type Step =
  | { op: "lookup"; namespace: string; prompt: string; leaseMs: number; waitMs: number }
  | { op: "fill"; namespace: string; prompt: string; token: "current" | "stale" | "none" }
  | { op: "release"; namespace: string; prompt: string; token: "current" | "stale" }
  | { op: "abort"; which: number }
  | { op: "clear"; namespace: string | undefined }
  | { op: "advance"; ms: number };

/** How a lookup ended, in terms both sides can state. */
type Outcome =
  | { kind: "hit"; value: number }
  | { kind: "lease"; holder: number }
  | { kind: "miss" }
  | { kind: "refused" }
  | { kind: "aborted" };

interface ModelWaiter {
  lookup: number;
  leaseMs: number;
  deadline: number;
}

interface ModelPair {
  value: number | undefined;
  valueExpiresAt: number;
  lease: { holder: number; expiresAt: number; waiters: ModelWaiter[] } | undefined;
  /** Lookups that were granted a lease on this pair, oldest first. */
  holders: number[];
}

class Model {
  now = 0;
  readonly pairs = new Map<string, ModelPair>();
  readonly outcomes = new Map<number, Outcome>();
  readonly counts: LeaseStats = newLeaseStats();
  waiting = 0;

  pair(namespace: string, prompt: string): ModelPair {
    const key = `${namespace}/${prompt}`;
    let pair = this.pairs.get(key);
    if (!pair) this.pairs.set(key, (pair = { value: undefined, valueExpiresAt: Infinity, lease: undefined, holders: [] }));
    return pair;
  }

  lookup(id: number, namespace: string, prompt: string, leaseMs: number, waitMs: number): void {
    const pair = this.pair(namespace, prompt);
    if (pair.value !== undefined) return this.#answer(id, { kind: "hit", value: pair.value });
    if (!pair.lease) return this.#grant(pair, id, leaseMs);
    if (waitMs === 0) return this.#answer(id, { kind: "miss" });
    if (this.waiting >= MAX_WAITERS || pair.lease.waiters.length >= MAX_WAITERS_PER_PAIR) return this.#answer(id, { kind: "refused" });
    pair.lease.waiters.push({ lookup: id, leaseMs, deadline: this.now + waitMs });
    this.waiting++;
  }

  /** Returns whether the fill stored its value. */
  fill(namespace: string, prompt: string, token: number | undefined, stale: boolean, value: number): boolean {
    const pair = this.pair(namespace, prompt);
    const current = token !== undefined && !stale;
    if (stale && (pair.lease || pair.value !== undefined)) {
      this.counts.staleFillsRefused++;
      return false;
    }
    pair.value = value;
    if (current) this.counts.filled++;
    if (pair.lease) this.#end(pair);
    return true;
  }

  release(namespace: string, prompt: string, current: boolean): boolean {
    const pair = this.pair(namespace, prompt);
    if (!current || !pair.lease) return false;
    this.counts.released++;
    this.#end(pair);
    return true;
  }

  abort(id: number): void {
    for (const pair of this.pairs.values()) {
      const waiters = pair.lease?.waiters ?? [];
      const at = waiters.findIndex((waiter) => waiter.lookup === id);
      if (at < 0) continue;
      waiters.splice(at, 1);
      this.waiting--;
      this.#answer(id, { kind: "aborted" });
    }
  }

  clear(namespace: string | undefined): void {
    for (const [key, pair] of this.pairs) {
      if (namespace !== undefined && !key.startsWith(`${namespace}/`)) continue;
      pair.value = undefined;
    }
    for (const [key, pair] of this.pairs) {
      if (namespace !== undefined && !key.startsWith(`${namespace}/`)) continue;
      if (pair.lease) this.#end(pair);
    }
  }

  advance(ms: number): void {
    const until = this.now + ms;
    for (;;) {
      let next: { at: number; run: () => void } | undefined;
      for (const pair of this.pairs.values()) {
        const lease = pair.lease;
        if (!lease) continue;
        if (lease.expiresAt <= until && (!next || lease.expiresAt < next.at)) {
          next = {
            at: lease.expiresAt,
            run: () => {
              this.counts.expired++;
              this.#end(pair);
            },
          };
        }
        for (const waiter of lease.waiters) {
          if (waiter.deadline <= until && (!next || waiter.deadline < next.at)) {
            next = {
              at: waiter.deadline,
              run: () => {
                lease.waiters.splice(lease.waiters.indexOf(waiter), 1);
                this.waiting--;
                this.counts.waitsTimedOut++;
                this.#answer(waiter.lookup, { kind: "miss" });
              },
            };
          }
        }
      }
      if (!next) break;
      this.now = next.at;
      next.run();
    }
    this.now = until;
  }

  #grant(pair: ModelPair, id: number, leaseMs: number): void {
    pair.lease = { holder: id, expiresAt: this.now + leaseMs, waiters: [] };
    pair.holders.push(id);
    this.counts.granted++;
    this.#answer(id, { kind: "lease", holder: id });
  }

  /** The lease ends: its waiters, in order, get the value, or the first the next lease and the rest wait on. */
  #end(pair: ModelPair): void {
    const waiters = pair.lease!.waiters;
    pair.lease = undefined;
    for (const waiter of waiters) {
      if (pair.value !== undefined) {
        this.waiting--;
        this.counts.waitsServed++;
        this.#answer(waiter.lookup, { kind: "hit", value: pair.value });
      } else if (pair.lease === undefined) {
        this.waiting--;
        this.#grant(pair, waiter.lookup, waiter.leaseMs);
      } else {
        (pair.lease as NonNullable<ModelPair["lease"]>).waiters.push(waiter);
      }
    }
  }

  #answer(id: number, outcome: Outcome): void {
    assert.ok(!this.outcomes.has(id), `lookup ${id} answered twice by the model`);
    this.outcomes.set(id, outcome);
  }
}

/** The table under test, with the plainest store around it: a Map from pair to value. */
class Subject {
  readonly timers = new FakeTimers();
  readonly counts: LeaseStats = newLeaseStats();
  readonly table = new LeaseTable({
    timers: this.timers,
    maxWaiters: MAX_WAITERS,
    maxWaitersPerPair: MAX_WAITERS_PER_PAIR,
    count: (_namespace, event: LeaseEvent) => this.counts[event]++,
  });
  readonly values = new Map<string, number>();
  readonly outcomes = new Map<number, Outcome>();
  /** The token each lookup was granted. */
  readonly tokens = new Map<number, string>();
  readonly aborts = new Map<number, AbortController>();

  lookup(id: number, namespace: string, prompt: string, leaseMs: number, waitMs: number): void {
    const key = `${namespace}/${prompt}`;
    const stored = this.values.get(key);
    if (stored !== undefined) {
      this.outcomes.set(id, { kind: "hit", value: stored });
      return;
    }
    const abort = new AbortController();
    this.aborts.set(id, abort);
    let result: LeasedLookup<number> | Promise<LeasedLookup<number>>;
    try {
      result = this.table.afterMiss(namespace, prompt, LLM, () => this.values.get(key), { leaseMs, waitMs, signal: abort.signal });
    } catch (error) {
      assert.ok(error instanceof TooManyLeaseWaitersError, String(error));
      this.outcomes.set(id, { kind: "refused" });
      return;
    }
    const record = (outcome: LeasedLookup<number>) => {
      if (outcome.kind === "lease") this.tokens.set(id, outcome.lease.token);
      this.outcomes.set(
        id,
        outcome.kind === "hit" ? { kind: "hit", value: outcome.value } : outcome.kind === "lease" ? { kind: "lease", holder: id } : { kind: "miss" },
      );
    };
    if (result instanceof Promise) result.then(record, () => this.outcomes.set(id, { kind: "aborted" }));
    else record(result);
  }

  fill(namespace: string, prompt: string, token: string | undefined, value: number): boolean {
    const key = `${namespace}/${prompt}`;
    return this.table.fill(
      namespace,
      prompt,
      LLM,
      token,
      () => this.values.has(key),
      () => {
        this.values.set(key, value);
        return true;
      },
    );
  }

  clear(namespace: string | undefined): void {
    for (const key of [...this.values.keys()]) if (namespace === undefined || key.startsWith(`${namespace}/`)) this.values.delete(key);
    this.table.clear(namespace);
  }
}

const pairArbitraries = { namespace: fc.constantFrom(...NAMESPACES), prompt: fc.constantFrom(...PROMPTS) };
const stepArbitrary: fc.Arbitrary<Step> = fc.oneof(
  { weight: 4, arbitrary: fc.record({ op: fc.constant("lookup" as const), ...pairArbitraries, leaseMs: fc.constantFrom(10, 20, 40), waitMs: fc.constantFrom(0, 5, 15, 35, 75) }) },
  { weight: 2, arbitrary: fc.record({ op: fc.constant("fill" as const), ...pairArbitraries, token: fc.constantFrom("current" as const, "stale" as const, "none" as const) }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant("release" as const), ...pairArbitraries, token: fc.constantFrom("current" as const, "stale" as const) }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant("abort" as const), which: fc.nat(40) }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant("clear" as const), namespace: fc.constantFrom(undefined, ...NAMESPACES) }) },
  { weight: 3, arbitrary: fc.record({ op: fc.constant("advance" as const), ms: fc.integer({ min: 1, max: 25 }).map((half) => half * 2) }) },
);

/** Lets the promises of waits settled by the last step run their callbacks. */
const settle = () => new Promise<void>((resolve) => setImmediate(resolve));

describe("LeaseTable against its reference model", () => {
  it("agrees on every lookup's outcome, every fill and release, and every count", async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(stepArbitrary, { minLength: 1, maxLength: 60 }), async (steps) => {
        const model = new Model();
        const subject = new Subject();
        let lookups = 0;
        let fills = 0;
        for (const step of steps) {
          switch (step.op) {
            case "lookup": {
              const id = ++lookups;
              model.lookup(id, step.namespace, step.prompt, step.leaseMs, step.waitMs);
              subject.lookup(id, step.namespace, step.prompt, step.leaseMs, step.waitMs);
              break;
            }
            case "fill": {
              const value = ++fills;
              const pair = model.pair(step.namespace, step.prompt);
              const { token, stale } = chooseToken(step.token, pair, subject);
              assert.equal(subject.fill(step.namespace, step.prompt, token, value), model.fill(step.namespace, step.prompt, token === undefined ? undefined : 0, stale, value), `fill ${JSON.stringify(step)}`);
              break;
            }
            case "release": {
              const pair = model.pair(step.namespace, step.prompt);
              const { token, stale } = chooseToken(step.token, pair, subject);
              assert.equal(subject.table.release(step.namespace, step.prompt, LLM, token ?? "never-granted"), model.release(step.namespace, step.prompt, token !== undefined && !stale));
              break;
            }
            case "abort":
              model.abort(step.which);
              subject.aborts.get(step.which)?.abort(new Error("aborted"));
              break;
            case "clear":
              model.clear(step.namespace);
              subject.clear(step.namespace);
              break;
            case "advance":
              model.advance(step.ms);
              subject.timers.advance(step.ms);
              break;
          }
          await settle();
          assert.deepEqual(subject.outcomes, model.outcomes, `after ${JSON.stringify(step)}`);
          assert.deepEqual(subject.counts, model.counts, `counts after ${JSON.stringify(step)}`);
          assert.equal(subject.table.waiting, model.waiting);
          assert.equal(subject.table.outstanding, [...model.pairs.values()].filter((pair) => pair.lease).length);
        }
        // Every wait ends: once the longest wait has passed, every lookup has its answer and no timer is left but leases'.
        model.advance(200);
        subject.timers.advance(200);
        await settle();
        assert.deepEqual(subject.outcomes, model.outcomes);
        assert.equal(subject.outcomes.size, lookups);
        assert.equal(subject.timers.pending, 0);
      }),
      { numRuns: 400 },
    );
  });
});

/**
 * The token a step names: the pair's current lease's, a stale one (the
 * pair's most recent lease that is no longer current, else one never
 * granted) or none.
 */
function chooseToken(which: "current" | "stale" | "none", pair: ModelPair, subject: Subject): { token: string | undefined; stale: boolean } {
  if (which === "none") return { token: undefined, stale: false };
  if (which === "current" && pair.lease) return { token: subject.tokens.get(pair.lease.holder)!, stale: false };
  const ended = pair.holders.filter((holder) => holder !== pair.lease?.holder).at(-1);
  return { token: ended === undefined ? "never-granted" : subject.tokens.get(ended)!, stale: true };
}
