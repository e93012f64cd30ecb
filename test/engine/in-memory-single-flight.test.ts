import assert from "node:assert/strict";
import { setImmediate as nextTurn, setTimeout as sleep } from "node:timers/promises";
import { InMemoryCache, MAX_LEASE_MS, TooManyLeaseWaitersError, type Generation, type LeasedLookup, type LeaseStats } from "../../src/index.js";
import { deferred, waitFor, watch } from "../helpers/single-flight.js";

const LLM = "llm";
const ANSWER: Generation[] = [{ text: "42" }];

/** Lets every promise that can settle now settle. */
async function settle(): Promise<void> {
  for (let i = 0; i < 5; i++) await nextTurn();
}

function leases(cache: InMemoryCache, namespace?: string): LeaseStats {
  const report = cache.stats();
  return namespace === undefined ? report.total.leases : report.namespaces[namespace]!.leases;
}

function granted(found: LeasedLookup) {
  assert.equal(found.generations, null, "a miss");
  assert.ok(found.lease, `a lease, got ${JSON.stringify(found)}`);
  assert.equal(typeof found.lease.token, "string");
  assert.ok(found.lease.token.length > 0);
  return found.lease;
}

describe("InMemoryCache's single flight", () => {
  describe("a lookup with a lease", () => {
    it("grants a lease on a miss, answers a plain miss to the next caller that will not wait, and a hit once filled", async () => {
      const cache = new InMemoryCache();
      const lease = granted(await cache.alookup("p", LLM, { lease: { leaseMs: 30_000 } }));
      assert.equal(lease.leaseMs, 30_000);
      assert.deepEqual(await cache.alookup("p", LLM, { lease: { leaseMs: 30_000, waitMs: 0 } }), { generations: null, lease: null });
      await cache.aupdate("p", LLM, ANSWER, { leaseToken: lease.token });
      assert.deepEqual(await cache.alookup("p", LLM, { lease: { leaseMs: 30_000 } }), { generations: ANSWER, lease: null });
      assert.deepEqual(await cache.alookup("p", LLM), ANSWER, "a plain lookup hits too");
      assert.deepEqual(leases(cache), { granted: 1, filled: 1, waitsServed: 0, waitsTimedOut: 0, expired: 0, released: 0, staleFillsRefused: 0 });
    });

    it("gives each grant a different token, and a lease per pair and per namespace", async () => {
      const cache = new InMemoryCache();
      const tokens = new Set<string>();
      for (const [prompt, namespace] of [["p", "a"], ["p", "b"], ["q", "a"], ["p", ""]] as const) {
        tokens.add(granted(await cache.alookup(prompt, LLM, { namespace, lease: { leaseMs: 1_000 } })).token);
      }
      assert.equal(tokens.size, 4);
      assert.equal(leases(cache, "a").granted, 2);
      assert.equal(leases(cache, "b").granted, 1);
    });

    it("makes the lookups that wait get the holder's fill, all at once", async () => {
      const cache = new InMemoryCache();
      const lease = granted(await cache.alookup("p", LLM, { lease: { leaseMs: 30_000 } }));
      const waiters = Array.from({ length: 5 }, () => watch(cache.alookup("p", LLM, { lease: { leaseMs: 30_000, waitMs: 30_000 } })));
      await settle();
      assert.ok(waiters.every((waiter) => !waiter.settled), "they wait while the lease is held");
      await cache.aupdate("p", LLM, ANSWER, { leaseToken: lease.token });
      await settle();
      for (const waiter of waiters) assert.deepEqual(waiter.value, { generations: ANSWER, lease: null });
      // Each waiter has its own copy.
      waiters[0]!.value!.generations![0]!.text = "changed";
      assert.deepEqual(waiters[1]!.value!.generations, ANSWER);
      assert.deepEqual(cache.lookup("p", LLM), ANSWER);
      const stats = leases(cache);
      assert.equal(stats.granted, 1);
      assert.equal(stats.filled, 1);
      assert.equal(stats.waitsServed, 5);
    });

    it("answers a waiting lookup a plain miss when its wait runs out, and the lease stays", async () => {
      const cache = new InMemoryCache();
      const lease = granted(await cache.alookup("p", LLM, { lease: { leaseMs: 30_000 } }));
      const started = performance.now();
      const found = await cache.alookup("p", LLM, { lease: { leaseMs: 30_000, waitMs: 150 } });
      const elapsed = performance.now() - started;
      assert.deepEqual(found, { generations: null, lease: null });
      assert.ok(elapsed >= 140 && elapsed < 150 + 1_500, `waited ${elapsed} ms for a 150 ms wait`);
      assert.equal(leases(cache).waitsTimedOut, 1);
      assert.equal(cache.releaseLease("p", LLM, lease.token), true, "the holder's lease is still current");
    });

    it("hands the lease to the first waiter when the holder releases it; the others wait on for its fill", async () => {
      const cache = new InMemoryCache();
      const first = granted(await cache.alookup("p", LLM, { lease: { leaseMs: 30_000 } }));
      const waiters = [0, 1, 2].map(() => watch(cache.alookup("p", LLM, { lease: { leaseMs: 20_000, waitMs: 30_000 } })));
      await settle();
      assert.equal(cache.releaseLease("p", LLM, first.token), true);
      await settle();
      assert.ok(waiters[0]!.settled, "the first waiter is answered");
      const second = granted(waiters[0]!.value!);
      assert.notEqual(second.token, first.token);
      assert.equal(second.leaseMs, 20_000, "the next lease lasts what its new holder asked for");
      assert.ok(!waiters[1]!.settled && !waiters[2]!.settled, "the others wait on");
      assert.equal(cache.releaseLease("p", LLM, first.token), false, "the old token is no longer the lease");
      await cache.aupdate("p", LLM, ANSWER, { leaseToken: second.token });
      await settle();
      assert.deepEqual(waiters[1]!.value, { generations: ANSWER, lease: null });
      assert.deepEqual(waiters[2]!.value, { generations: ANSWER, lease: null });
      assert.deepEqual(leases(cache), { granted: 2, filled: 1, waitsServed: 2, waitsTimedOut: 0, expired: 0, released: 1, staleFillsRefused: 0 });
    });

    it("hands an expired lease to the first waiter within leaseMs, and refuses the late holder's fill", async () => {
      const cache = new InMemoryCache();
      const started = performance.now();
      const first = granted(await cache.alookup("p", LLM, { lease: { leaseMs: 120 } }));
      const next = await cache.alookup("p", LLM, { lease: { leaseMs: 30_000, waitMs: 10_000 } });
      const elapsed = performance.now() - started;
      const second = granted(next);
      assert.ok(elapsed >= 110 && elapsed < 120 + 1_500, `took over after ${elapsed} ms for a 120 ms lease`);
      assert.equal(leases(cache).expired, 1);
      // The first holder comes back late: its token is stale while the second holds the lease.
      assert.equal(await cache.aupdateIfAbsent("p", LLM, [{ text: "late" }], { leaseToken: first.token }), false);
      assert.equal(cache.lookup("p", LLM), null, "nothing was stored");
      assert.equal(leases(cache).staleFillsRefused, 1);
      assert.equal(cache.releaseLease("p", LLM, first.token), false);
      await cache.aupdate("p", LLM, ANSWER, { leaseToken: second.token });
      assert.deepEqual(cache.lookup("p", LLM), ANSWER);
    });

    it("lets a stale token fill an empty pair that no one leases, but never overwrite a value", async () => {
      const cache = new InMemoryCache();
      const stale = granted(await cache.alookup("p", LLM, { lease: { leaseMs: 30 } }));
      await waitFor(() => leases(cache).expired === 1, "the lease expired");
      assert.equal(await cache.aupdateIfAbsent("p", LLM, ANSWER, { leaseToken: stale.token }), true, "stored into the empty, unleased pair");
      assert.deepEqual(cache.lookup("p", LLM), ANSWER);

      const other = granted(await cache.alookup("q", LLM, { lease: { leaseMs: 30 } }));
      await waitFor(() => leases(cache).expired === 2, "the second lease expired");
      cache.update("q", LLM, [{ text: "newer" }]);
      assert.equal(cache.updateIfAbsent("q", LLM, [{ text: "older" }], { leaseToken: other.token }), false);
      cache.update("q", LLM, [{ text: "older" }], { leaseToken: other.token });
      assert.deepEqual(cache.lookup("q", LLM), [{ text: "newer" }], "the stale fill never overwrote the newer value");
      assert.equal(leases(cache).staleFillsRefused, 2);
      assert.equal(cache.stats().total.updatesNotStored, 2, "each refused stale fill is an update not stored");
    });

    it("ends the lease when anyone stores the pair, answering its waiters", async () => {
      const cache = new InMemoryCache();
      const lease = granted(await cache.alookup("p", LLM, { lease: { leaseMs: 30_000 } }));
      const waiter = watch(cache.alookup("p", LLM, { lease: { leaseMs: 30_000, waitMs: 30_000 } }));
      await settle();
      cache.update("p", LLM, [{ text: "from elsewhere" }]);
      await settle();
      assert.deepEqual(waiter.value, { generations: [{ text: "from elsewhere" }], lease: null });
      assert.equal(cache.releaseLease("p", LLM, lease.token), false, "the lease ended");
      assert.equal(cache.updateIfAbsent("p", LLM, ANSWER, { leaseToken: lease.token }), false, "its token is stale now");
      assert.deepEqual(cache.lookup("p", LLM), [{ text: "from elsewhere" }]);
    });

    it("ends the lease on a no_store fill with the current token: the next waiter takes over", async () => {
      const cache = new InMemoryCache();
      const lease = granted(await cache.alookup("p", LLM, { lease: { leaseMs: 30_000 } }));
      const waiter = watch(cache.alookup("p", LLM, { lease: { leaseMs: 30_000, waitMs: 30_000 } }));
      await settle();
      assert.equal(cache.updateIfAbsent("p", LLM, ANSWER, { leaseToken: lease.token, noStore: true }), false);
      await settle();
      assert.ok(waiter.settled);
      granted(waiter.value!);
    });

    it("is a hit, with no lease taken, when the pair is stored", async () => {
      const cache = new InMemoryCache();
      cache.update("p", LLM, ANSWER);
      assert.deepEqual(await cache.alookup("p", LLM, { lease: { leaseMs: 100, waitMs: 100 } }), { generations: ANSWER, lease: null });
      assert.deepEqual(cache.lookup("p", LLM, { lease: { leaseMs: 100 } }), { generations: ANSWER, lease: null });
      assert.equal(leases(cache).granted, 0);
    });

    it("refuses bad options: lease with bypass, times out of range", async () => {
      const cache = new InMemoryCache();
      await assert.rejects(cache.alookup("p", LLM, { bypass: true, lease: { leaseMs: 100 } }), { name: "TypeError", message: /lease and bypass together/ });
      assert.throws(() => cache.lookup("p", LLM, { bypass: true, lease: { leaseMs: 100 } }), { name: "TypeError" });
      for (const leaseMs of [0, -1, 1.5, MAX_LEASE_MS + 1, Number.NaN]) {
        await assert.rejects(cache.alookup("p", LLM, { lease: { leaseMs } }), { name: "RangeError", message: /lease\.leaseMs must be an integer/ });
      }
      for (const waitMs of [-1, 2.5, MAX_LEASE_MS + 1]) {
        await assert.rejects(cache.alookup("p", LLM, { lease: { leaseMs: 10, waitMs } }), { name: "RangeError", message: /lease\.waitMs must be an integer/ });
      }
      await assert.rejects(cache.alookup("p", LLM, { lease: null as never }), { name: "TypeError", message: /lease must be an object/ });
      assert.throws(() => cache.update("p", LLM, ANSWER, { leaseToken: "" }), { name: "TypeError", message: /leaseToken must not be empty/ });
      assert.throws(() => cache.releaseLease("p", LLM, ""), { name: "TypeError" });
      assert.equal(leases(cache).granted, 0, "nothing was granted by a refused lookup");
      // The longest lease and wait are allowed.
      granted(await cache.alookup("p", LLM, { lease: { leaseMs: MAX_LEASE_MS, waitMs: MAX_LEASE_MS } }));
    });
  });

  describe("the synchronous lookup with a lease", () => {
    it("grants a lease, never waits for another's, and hits once filled", () => {
      const cache = new InMemoryCache();
      const lease = granted(cache.lookup("p", LLM, { lease: { leaseMs: 30_000 } }));
      const started = performance.now();
      assert.deepEqual(cache.lookup("p", LLM, { lease: { leaseMs: 30_000, waitMs: 60_000 } }), { generations: null, lease: null });
      assert.ok(performance.now() - started < 1_000, "it did not wait");
      assert.equal(leases(cache).waitsTimedOut, 0, "it never waited, so no wait timed out");
      cache.update("p", LLM, ANSWER, { leaseToken: lease.token });
      assert.deepEqual(cache.lookup("p", LLM, { lease: { leaseMs: 30_000 } }), { generations: ANSWER, lease: null });
      assert.equal(leases(cache).filled, 1);
    });

    it("takes a lease an async caller then waits on", async () => {
      const cache = new InMemoryCache();
      const lease = granted(cache.lookup("p", LLM, { lease: { leaseMs: 30_000 } }));
      const waiter = watch(cache.alookup("p", LLM, { lease: { leaseMs: 30_000, waitMs: 30_000 } }));
      await settle();
      assert.ok(!waiter.settled);
      assert.equal(cache.releaseLease("p", LLM, lease.token), true);
      await settle();
      granted(waiter.value!);
    });
  });

  describe("clear", () => {
    it("ends the leases it clears: the first waiter gets a new lease, the old token is stale", async () => {
      const cache = new InMemoryCache();
      cache.update("p", LLM, [{ text: "old" }], { namespace: "other" });
      const first = granted(await cache.alookup("p", LLM, { lease: { leaseMs: 30_000 } }));
      const waiters = [0, 1].map(() => watch(cache.alookup("p", LLM, { lease: { leaseMs: 30_000, waitMs: 30_000 } })));
      await settle();
      await cache.aclear();
      await settle();
      const second = granted(waiters[0]!.value!);
      assert.notEqual(second.token, first.token);
      assert.ok(!waiters[1]!.settled, "the second waiter waits on the new lease");
      assert.equal(cache.releaseLease("p", LLM, first.token), false);
      assert.equal(cache.updateIfAbsent("p", LLM, ANSWER, { leaseToken: first.token }), false, "the cleared lease's fill is stale");
      cache.update("p", LLM, ANSWER, { leaseToken: second.token });
      await settle();
      assert.deepEqual(waiters[1]!.value, { generations: ANSWER, lease: null });
      assert.deepEqual(cache.lookup("p", LLM, { namespace: "other" }), [{ text: "old" }], "another namespace was not cleared");
    });

    it("of one namespace leaves the leases of others alone; allNamespaces ends them all", async () => {
      const cache = new InMemoryCache();
      const inA = granted(await cache.alookup("p", LLM, { namespace: "a", lease: { leaseMs: 30_000 } }));
      const inB = granted(await cache.alookup("p", LLM, { namespace: "b", lease: { leaseMs: 30_000 } }));
      const inC = granted(await cache.alookup("p", LLM, { namespace: "c", lease: { leaseMs: 30_000 } }));
      cache.clear({ namespace: "b" });
      assert.equal(cache.releaseLease("p", LLM, inB.token, { namespace: "b" }), false, "b's lease ended");
      assert.equal(cache.releaseLease("p", LLM, inA.token, { namespace: "a" }), true, "a's lease is still held");
      cache.clear({ allNamespaces: true });
      assert.equal(cache.releaseLease("p", LLM, inC.token, { namespace: "c" }), false, "c's lease ended");
    });
  });

  describe("cancellation", () => {
    it("rejects a waiting lookup with the signal's reason and forgets it", async () => {
      const cache = new InMemoryCache({ maxWaitersPerPair: 1 });
      const lease = granted(await cache.alookup("p", LLM, { lease: { leaseMs: 30_000 } }));
      const controller = new AbortController();
      const waiter = watch(cache.alookup("p", LLM, { lease: { leaseMs: 30_000, waitMs: 30_000 }, signal: controller.signal }));
      await settle();
      await assert.rejects(cache.alookup("p", LLM, { lease: { leaseMs: 1, waitMs: 30_000 } }), TooManyLeaseWaitersError, "the one place is taken");
      controller.abort(new Error("no longer needed"));
      await settle();
      assert.ok(waiter.settled);
      assert.equal((waiter.error as Error).message, "no longer needed");
      // Forgotten: its place is free again, and the release gives the lease to the new waiter, not to it.
      const next = watch(cache.alookup("p", LLM, { lease: { leaseMs: 30_000, waitMs: 30_000 } }));
      await settle();
      assert.ok(!next.settled);
      assert.equal(cache.releaseLease("p", LLM, lease.token), true);
      await settle();
      granted(next.value!);
      assert.equal(leases(cache).waitsTimedOut, 0);
    });

    it("rejects at once with a signal already aborted", async () => {
      const cache = new InMemoryCache();
      granted(await cache.alookup("p", LLM, { lease: { leaseMs: 30_000 } }));
      await assert.rejects(cache.alookup("p", LLM, { lease: { leaseMs: 30_000, waitMs: 30_000 }, signal: AbortSignal.abort() }), { name: "AbortError" });
    });

    it("stops getOrCompute's wait, without computing", async () => {
      const cache = new InMemoryCache();
      const lease = granted(await cache.alookup("p", LLM, { lease: { leaseMs: 30_000 } }));
      const controller = new AbortController();
      let computed = 0;
      const call = watch(cache.getOrCompute("p", LLM, () => (computed++, ANSWER), { signal: controller.signal }));
      await settle();
      assert.ok(!call.settled);
      controller.abort();
      await settle();
      assert.ok(call.settled);
      assert.equal((call.error as Error).name, "AbortError");
      assert.equal(computed, 0);
      assert.equal(cache.releaseLease("p", LLM, lease.token), true, "the lease was not touched");
    });
  });

  describe("waiter limits", () => {
    it("refuses a wait past the per-pair and the total limits with TooManyLeaseWaitersError, and not a lookup that would not wait", async () => {
      const cache = new InMemoryCache({ maxWaiters: 3, maxWaitersPerPair: 2 });
      const p = granted(await cache.alookup("p", LLM, { lease: { leaseMs: 30_000 } }));
      const q = granted(await cache.alookup("q", LLM, { lease: { leaseMs: 30_000 } }));
      const wait = { leaseMs: 30_000, waitMs: 30_000 };
      const waiting = [watch(cache.alookup("p", LLM, { lease: wait })), watch(cache.alookup("p", LLM, { lease: wait }))];
      await assert.rejects(cache.alookup("p", LLM, { lease: wait }), (error: unknown) => {
        assert.ok(error instanceof TooManyLeaseWaitersError);
        assert.equal(error.limit, "maxWaitersPerPair");
        assert.equal(error.value, 2);
        return true;
      });
      waiting.push(watch(cache.alookup("q", LLM, { lease: wait })));
      await assert.rejects(cache.alookup("q", LLM, { lease: wait }), (error: unknown) => {
        assert.ok(error instanceof TooManyLeaseWaitersError);
        assert.equal(error.limit, "maxWaiters");
        assert.equal(error.value, 3);
        return true;
      });
      assert.deepEqual(await cache.alookup("q", LLM, { lease: { leaseMs: 30_000 } }), { generations: null, lease: null }, "no wait, no limit");
      cache.update("p", LLM, ANSWER, { leaseToken: p.token });
      cache.update("q", LLM, ANSWER, { leaseToken: q.token });
      await settle();
      for (const waiter of waiting) assert.deepEqual(waiter.value, { generations: ANSWER, lease: null });
      // The places are free again.
      cache.clear();
      granted(await cache.alookup("p", LLM, { lease: { leaseMs: 30_000 } }));
      const again = [0, 1].map(() => watch(cache.alookup("p", LLM, { lease: wait })));
      await settle();
      assert.ok(again.every((waiter) => !waiter.settled));
      cache.update("p", LLM, ANSWER);
      await settle();
      assert.ok(again.every((waiter) => waiter.settled && waiter.error === undefined));
    });
  });

  describe("getOrCompute", () => {
    it("coalesces concurrent callers: compute runs once, every caller gets its result", async () => {
      const cache = new InMemoryCache();
      let computed = 0;
      const release = deferred<void>();
      const compute = async () => {
        computed++;
        await release.promise;
        return [{ text: "computed once" }];
      };
      const calls = Array.from({ length: 20 }, () => watch(cache.getOrCompute("p", LLM, compute)));
      await settle();
      assert.equal(computed, 1, "one compute while the others wait");
      assert.ok(calls.every((call) => !call.settled));
      release.resolve();
      const results = await Promise.all(calls.map((call) => call.promise));
      for (const result of results) assert.deepEqual(result, [{ text: "computed once" }]);
      assert.equal(computed, 1);
      assert.deepEqual(cache.lookup("p", LLM), [{ text: "computed once" }]);
      const stats = leases(cache);
      assert.equal(stats.granted, 1);
      assert.equal(stats.filled, 1);
      assert.equal(stats.waitsServed, 19);
      // Later calls hit without computing.
      assert.deepEqual(await cache.getOrCompute("p", LLM, compute), [{ text: "computed once" }]);
      assert.equal(computed, 1);
    });

    it("hands over to the next caller when compute throws: its caller gets the error, the others the second result", async () => {
      const cache = new InMemoryCache();
      let computed = 0;
      const compute = async () => {
        computed++;
        await nextTurn();
        if (computed === 1) throw new Error("the model failed");
        return [{ text: `attempt ${computed}` }];
      };
      const calls = Array.from({ length: 6 }, () => watch(cache.getOrCompute("p", LLM, compute)));
      const outcomes = await Promise.allSettled(calls.map((call) => call.promise));
      assert.equal(computed, 2);
      assert.equal(outcomes[0]!.status, "rejected");
      assert.equal(((outcomes[0] as PromiseRejectedResult).reason as Error).message, "the model failed");
      for (const outcome of outcomes.slice(1)) assert.deepEqual(outcome, { status: "fulfilled", value: [{ text: "attempt 2" }] });
      const stats = leases(cache);
      assert.equal(stats.granted, 2);
      assert.equal(stats.released, 1);
      assert.equal(stats.filled, 1);
      assert.equal(stats.waitsServed, 4);
    });

    it("takes over when the holder never fills: the lease expires and the next caller computes", async () => {
      const cache = new InMemoryCache();
      granted(await cache.alookup("p", LLM, { lease: { leaseMs: 100 } }));
      let computed = 0;
      const started = performance.now();
      const result = await cache.getOrCompute("p", LLM, () => (computed++, ANSWER), { leaseMs: 5_000, waitMs: 10_000 });
      const elapsed = performance.now() - started;
      assert.deepEqual(result, ANSWER);
      assert.equal(computed, 1);
      assert.ok(elapsed < 100 + 1_500, `took over after ${elapsed} ms`);
      assert.equal(leases(cache).expired, 1);
    });

    it("computes on its own when its wait runs out, and the slow holder's fill is then refused as stale", async () => {
      const cache = new InMemoryCache();
      const slow = deferred<Generation[]>();
      const holder = cache.getOrCompute("p", LLM, () => slow.promise, { leaseMs: 30_000 });
      await settle();
      const impatient = await cache.getOrCompute("p", LLM, () => [{ text: "impatient" }], { waitMs: 50 });
      assert.deepEqual(impatient, [{ text: "impatient" }]);
      assert.deepEqual(cache.lookup("p", LLM), [{ text: "impatient" }]);
      slow.resolve([{ text: "slow" }]);
      assert.deepEqual(await holder, [{ text: "slow" }], "the holder's caller still gets its own result");
      assert.deepEqual(cache.lookup("p", LLM), [{ text: "impatient" }], "the stale fill did not overwrite");
      const stats = leases(cache);
      assert.equal(stats.waitsTimedOut, 1);
      assert.equal(stats.staleFillsRefused, 1);
    });

    it("uses the namespace and TTL it is given", async () => {
      const cache = new InMemoryCache();
      await cache.getOrCompute("p", LLM, () => ANSWER, { namespace: "ns", ttlMs: 80 });
      assert.equal(cache.lookup("p", LLM), null, "not in the default namespace");
      assert.deepEqual(cache.lookup("p", LLM, { namespace: "ns" }), ANSWER);
      await sleep(200);
      assert.equal(cache.lookup("p", LLM, { namespace: "ns" }), null, "expired after its TTL");
      assert.equal(leases(cache, "ns").filled, 1);
    });

    it("refuses a compute that is not a function", async () => {
      const cache = new InMemoryCache();
      await assert.rejects(cache.getOrCompute("p", LLM, "not a function" as never), { name: "TypeError", message: /compute must be a function/ });
      assert.equal(leases(cache).granted, 0);
    });

    it("refuses options it does not know, its own and a lease's, rather than keep the default of a misspelt one", async () => {
      const cache = new InMemoryCache();
      await assert.rejects(cache.getOrCompute("p", LLM, () => ANSWER, { waitMS: 5_000 } as never), {
        name: "TypeError",
        message: "unknown option waitMS (the options are namespace, ttlMs, leaseMs, waitMs, timeoutMs, signal)",
      });
      await assert.rejects(cache.alookup("p", LLM, { lease: { leaseMs: 1_000, waitMS: 5_000 } as never }), {
        name: "TypeError",
        message: "unknown option waitMS (the options are leaseMs, waitMs)",
      });
      assert.equal(leases(cache).granted, 0, "nothing was looked up");
    });
  });
});
