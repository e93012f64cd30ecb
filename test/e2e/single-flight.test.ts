import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { create, toBinary } from "@bufbuild/protobuf";
import type { Client } from "@grpc/grpc-js";
import {
  BatchLookupRequestSchema,
  CacheService,
  LookupRequestSchema,
  ReleaseLeaseRequestSchema,
} from "../../gen/llmcache/v1/cache_pb.js";
import { decodeLeasedLookupResponse } from "../../src/rpc/codec/lookup.js";
import { CacheClient, CacheError, MAX_LEASE_MS, type Generation, type LeaseStats } from "../../src/index.js";
import { callMetadata, openChannel } from "../../src/rpc/channel.js";
import { methodPath } from "../../src/rpc/service-definition.js";
import { callUnary } from "../../src/rpc/unary-call.js";
import { isCacheError } from "../helpers/assertions.js";
import { writeAuthFile } from "../helpers/auth-file.js";
import { startServerProcess, type ServerProcess } from "../helpers/server-process.js";
import { grantedLease, MetricsScraper, waitFor, watch } from "../helpers/single-flight.js";

const LLM = "fake-llm";
const ANSWER: Generation[] = [{ text: "Paris", generationInfo: { finish_reason: "stop" } }];
const LONG = { leaseMs: 30_000, waitMs: 30_000 };

let promptCount = 0;
/** A prompt no other test uses. */
const freshPrompt = (what: string) => `${what} #${++promptCount}`;

function diff(after: LeaseStats, before: LeaseStats): LeaseStats {
  const result = { ...after };
  for (const key of Object.keys(result) as (keyof LeaseStats)[]) result[key] -= before[key];
  return result;
}

const NO_LEASE_EVENTS: LeaseStats = { granted: 0, filled: 0, waitsServed: 0, waitsTimedOut: 0, expired: 0, released: 0, staleFillsRefused: 0 };

/** One unary call with hand-made request bytes and a deadline: what a client other than CacheClient might send. */
async function rawUnary(channel: Client, method: (typeof CacheService.method)[keyof typeof CacheService.method], request: Uint8Array, timeoutMs = 5_000) {
  return callUnary(channel, methodPath(method), Buffer.from(request), { timeoutMs, metadata: callMetadata({ address: "" }) });
}

describe("single flight against a server process", function () {
  this.timeout(60_000);

  let server: ServerProcess;
  let metrics: MetricsScraper;
  /** Auto-batching (the stream) and unary clients. */
  let batched: CacheClient;
  let batched2: CacheClient;
  let unary: CacheClient;
  let unary2: CacheClient;
  let channel: Client;

  before(async () => {
    server = await startServerProcess(["--metrics-port", "0"]);
    metrics = new MetricsScraper(server);
    batched = new CacheClient({ address: server.address });
    batched2 = new CacheClient({ address: server.address });
    unary = new CacheClient({ address: server.address, batching: false });
    unary2 = new CacheClient({ address: server.address, batching: false });
    channel = openChannel({ address: server.address });
  });

  after(async () => {
    channel?.close();
    for (const client of [batched, batched2, unary, unary2]) await client?.close();
    await server?.stop();
  });

  beforeEach(async () => {
    // Leases of an earlier test must not expire into this one's counts.
    await batched.aclear({ allNamespaces: true });
    await metrics.waitForWaiters(0);
    assert.equal(await metrics.value("llmcache_leases_outstanding"), 0, "no lease left over");
  });

  const leaseStats = async () => (await batched.astats()).total.leases;

  describe("grant, wait and fill", () => {
    for (const [name, clients] of [
      ["auto-batching clients (the stream)", () => [batched, batched2]],
      ["unary clients (batching: false)", () => [unary, unary2]],
      ["a mix of both", () => [batched, unary2]],
    ] as const) {
      it(`grants the first miss a lease and answers every waiter with its fill, at once (${name})`, async () => {
        const [holder, other] = clients();
        const prompt = freshPrompt("grant");
        const totalBefore = (await holder!.astats()).total;
        const before = await leaseStats();
        const found = await holder!.alookup(prompt, LLM, { lease: { leaseMs: 20_000, waitMs: 20_000 } });
        const lease = grantedLease(found);
        assert.equal(lease.leaseMs, 20_000);

        const waiters = [holder, other, other, holder].map((client) => watch(client!.alookup(prompt, LLM, { lease: LONG })));
        await metrics.waitForWaiters(4);
        assert.ok(waiters.every((waiter) => !waiter.settled), "they wait while the lease is held");
        assert.equal(await metrics.value("llmcache_leases_outstanding"), 1);

        await holder!.aupdate(prompt, LLM, ANSWER, { leaseToken: lease.token });
        const answers = await Promise.all(waiters.map((waiter) => waiter.promise));
        for (const answer of answers) assert.deepEqual(answer, { generations: ANSWER, lease: null });
        const totalAfter = (await holder!.astats()).total;
        assert.equal(totalAfter.misses - totalBefore.misses, 5, "each lookup counted one miss, the waiters' when they started waiting");
        assert.equal(totalAfter.hits - totalBefore.hits, 0, "a waiter served by the fill is not counted a hit too");
        assert.equal(await metrics.waiters(), 0);
        assert.equal(await metrics.value("llmcache_leases_outstanding"), 0);
        assert.deepEqual(await other!.alookup(prompt, LLM), ANSWER, "the fill is stored");
        assert.deepEqual(diff(await leaseStats(), before), { ...NO_LEASE_EVENTS, granted: 1, filled: 1, waitsServed: 4 });
      });
    }

    it("answers a lookup that will not wait with a plain miss while the lease is held", async () => {
      const prompt = freshPrompt("no wait");
      grantedLease(await batched.alookup(prompt, LLM, { lease: { leaseMs: 10_000 } }));
      for (const client of [batched, unary]) {
        assert.deepEqual(await client.alookup(prompt, LLM, { lease: { leaseMs: 10_000 } }), { generations: null, lease: null });
        assert.deepEqual(await client.alookup(prompt, LLM, { lease: { leaseMs: 10_000, waitMs: 0 } }), { generations: null, lease: null });
      }
      assert.equal(await batched.alookup(prompt, LLM), null, "a plain lookup is a plain miss");
    });

    it("answers a hit with no lease when the pair is stored", async () => {
      const prompt = freshPrompt("hit");
      await batched.aupdate(prompt, LLM, ANSWER);
      const before = await leaseStats();
      for (const client of [batched, unary]) {
        assert.deepEqual(await client.alookup(prompt, LLM, { lease: LONG }), { generations: ANSWER, lease: null });
      }
      assert.deepEqual(diff(await leaseStats(), before), NO_LEASE_EVENTS);
    });

    it("keeps the leases of namespaces apart", async () => {
      const prompt = freshPrompt("namespaces");
      const inA = grantedLease(await batched.alookup(prompt, LLM, { namespace: "a", lease: LONG }));
      const inB = grantedLease(await unary.alookup(prompt, LLM, { namespace: "b", lease: LONG }));
      assert.notEqual(inA.token, inB.token);
      const waitingInB = watch(batched2.alookup(prompt, LLM, { namespace: "b", lease: LONG }));
      await metrics.waitForWaiters(1);
      await batched.aupdate(prompt, LLM, ANSWER, { namespace: "a", leaseToken: inA.token });
      assert.deepEqual(await batched.alookup(prompt, LLM, { namespace: "a" }), ANSWER);
      assert.equal(await metrics.waiters(), 1, "a's fill does not answer b's waiter");
      assert.ok(!waitingInB.settled);
      assert.equal(await unary.areleaseLease(prompt, LLM, inB.token, { namespace: "a" }), false, "b's token is not a's lease");
      await unary.aupdate(prompt, LLM, [{ text: "b's" }], { namespace: "b", leaseToken: inB.token });
      assert.deepEqual(await waitingInB.promise, { generations: [{ text: "b's" }], lease: null });
      const stats = await batched.astats();
      assert.equal(stats.namespaces["a"]!.leases.filled, 1);
      assert.equal(stats.namespaces["b"]!.leases.waitsServed, 1);
    });
  });

  describe("when the lease ends without a fill", () => {
    it("gives the next lease to the first waiter on release, while the others keep waiting", async () => {
      const prompt = freshPrompt("release");
      const before = await leaseStats();
      const first = grantedLease(await unary.alookup(prompt, LLM, { lease: LONG }));
      // One at a time, so that the server's queue has them in this order.
      const waiters = [];
      for (const client of [batched, unary2, batched2]) {
        waiters.push(watch(client.alookup(prompt, LLM, { lease: { leaseMs: 15_000, waitMs: 30_000 } })));
        await metrics.waitForWaiters(waiters.length);
      }
      assert.equal(await unary.areleaseLease(prompt, LLM, first.token), true);
      const second = grantedLease(await waiters[0]!.promise);
      assert.notEqual(second.token, first.token);
      assert.equal(second.leaseMs, 15_000, "the new holder's own lease time");
      await metrics.waitForWaiters(2);
      assert.ok(!waiters[1]!.settled && !waiters[2]!.settled, "the others wait on");
      assert.equal(await unary.areleaseLease(prompt, LLM, first.token), false, "the released token is no longer the lease");

      await batched.aupdate(prompt, LLM, ANSWER, { leaseToken: second.token });
      assert.deepEqual(await waiters[1]!.promise, { generations: ANSWER, lease: null });
      assert.deepEqual(await waiters[2]!.promise, { generations: ANSWER, lease: null });
      assert.deepEqual(diff(await leaseStats(), before), { ...NO_LEASE_EVENTS, granted: 2, released: 1, filled: 1, waitsServed: 2 });
    });

    it("releases through the stream too, and refuses a token that is not the lease", async () => {
      const prompt = freshPrompt("release on the stream");
      const lease = grantedLease(await batched.alookup(prompt, LLM, { lease: LONG }));
      assert.equal(await batched.areleaseLease(prompt, LLM, `${lease.token}x`), false);
      assert.equal(await batched.areleaseLease(freshPrompt("other pair"), LLM, lease.token), false, "a token is its own pair's");
      assert.equal(await batched.areleaseLease(prompt, LLM, lease.token), true);
      assert.equal(await batched.areleaseLease(prompt, LLM, lease.token), false, "released once");
      grantedLease(await batched2.alookup(prompt, LLM, { lease: LONG }));
    });

    it("hands an expired lease to the first waiter within leaseMs plus a small bound, and refuses the late holder's fill", async () => {
      const prompt = freshPrompt("expiry");
      const before = await leaseStats();
      const started = performance.now();
      const first = grantedLease(await unary.alookup(prompt, LLM, { lease: { leaseMs: 600 } }));
      const next = await batched.alookup(prompt, LLM, { lease: { leaseMs: 30_000, waitMs: 20_000 } });
      const elapsed = performance.now() - started;
      const second = grantedLease(next);
      assert.ok(elapsed >= 550, `took over after ${elapsed} ms, before the 600 ms lease ran out`);
      assert.ok(elapsed < 600 + 1_500, `took over after ${elapsed} ms for a 600 ms lease`);

      // The first holder comes back late, while the second holds the lease: its fill is stale.
      assert.equal(await unary.aupdateIfAbsent(prompt, LLM, [{ text: "late" }], { leaseToken: first.token }), false);
      await unary.aupdate(prompt, LLM, [{ text: "late" }], { leaseToken: first.token });
      assert.equal(await batched.alookup(prompt, LLM), null, "the stale fills stored nothing");
      assert.equal(await unary.areleaseLease(prompt, LLM, first.token), false);
      await batched.aupdate(prompt, LLM, ANSWER, { leaseToken: second.token });
      assert.deepEqual(await unary.alookup(prompt, LLM), ANSWER);
      assert.deepEqual(diff(await leaseStats(), before), { ...NO_LEASE_EVENTS, granted: 2, expired: 1, staleFillsRefused: 2, filled: 1 });
    });

    it("answers a plain miss when the wait runs out, and leaves the lease to its holder", async () => {
      const prompt = freshPrompt("wait runs out");
      const before = await leaseStats();
      const lease = grantedLease(await batched.alookup(prompt, LLM, { lease: LONG }));
      for (const client of [batched2, unary]) {
        const started = performance.now();
        const found = await client.alookup(prompt, LLM, { lease: { leaseMs: 30_000, waitMs: 400 } });
        const elapsed = performance.now() - started;
        assert.deepEqual(found, { generations: null, lease: null });
        assert.ok(elapsed >= 350 && elapsed < 400 + 1_500, `answered after ${elapsed} ms for a 400 ms wait`);
      }
      assert.equal(await metrics.waiters(), 0);
      assert.equal(await batched.areleaseLease(prompt, LLM, lease.token), true, "the holder's lease is still current");
      assert.deepEqual(diff(await leaseStats(), before), { ...NO_LEASE_EVENTS, granted: 1, waitsTimedOut: 2, released: 1 });
    });
  });

  describe("stale tokens and other stores", () => {
    it("lets a stale token fill a pair with no entry and no lease", async () => {
      const prompt = freshPrompt("stale into empty");
      const lease = grantedLease(await batched.alookup(prompt, LLM, { lease: { leaseMs: 200 } }));
      await waitFor(async () => (await metrics.value("llmcache_leases_outstanding")) === 0, "the lease expired");
      assert.equal(await unary.aupdateIfAbsent(prompt, LLM, ANSWER, { leaseToken: lease.token }), true);
      assert.deepEqual(await batched.alookup(prompt, LLM), ANSWER);
    });

    it("never lets a stale token overwrite a newer value", async () => {
      const prompt = freshPrompt("stale over value");
      const before = await leaseStats();
      const lease = grantedLease(await batched.alookup(prompt, LLM, { lease: { leaseMs: 200 } }));
      await waitFor(async () => (await metrics.value("llmcache_leases_outstanding")) === 0, "the lease expired");
      await unary.aupdate(prompt, LLM, [{ text: "newer" }]);
      await batched.aupdate(prompt, LLM, [{ text: "older" }], { leaseToken: lease.token });
      assert.equal(await unary.aupdateIfAbsent(prompt, LLM, [{ text: "older" }], { leaseToken: lease.token }), false);
      assert.deepEqual(await unary.alookup(prompt, LLM), [{ text: "newer" }]);
      assert.deepEqual(diff(await leaseStats(), before), { ...NO_LEASE_EVENTS, granted: 1, expired: 1, staleFillsRefused: 2 });
    });

    it("ends the lease when anyone stores the pair without a token, answering the waiters with that value", async () => {
      const prompt = freshPrompt("store without token");
      const lease = grantedLease(await batched.alookup(prompt, LLM, { lease: LONG }));
      const waiters = [watch(batched2.alookup(prompt, LLM, { lease: LONG })), watch(unary.alookup(prompt, LLM, { lease: LONG }))];
      await metrics.waitForWaiters(2);
      await unary2.aupdate(prompt, LLM, [{ text: "from elsewhere" }]);
      for (const waiter of waiters) assert.deepEqual(await waiter.promise, { generations: [{ text: "from elsewhere" }], lease: null });
      assert.equal(await batched.areleaseLease(prompt, LLM, lease.token), false, "the lease ended");
      assert.equal(await batched.aupdateIfAbsent(prompt, LLM, ANSWER, { leaseToken: lease.token }), false, "its fill is stale");
      assert.deepEqual(await batched.alookup(prompt, LLM), [{ text: "from elsewhere" }]);
    });

    it("ends the lease on aupdateMany of the pair", async () => {
      const prompt = freshPrompt("batch update");
      const lease = grantedLease(await unary.alookup(prompt, LLM, { lease: LONG }));
      const waiter = watch(batched.alookup(prompt, LLM, { lease: LONG }));
      await metrics.waitForWaiters(1);
      await unary2.aupdateMany([
        [freshPrompt("unrelated"), LLM, []],
        [prompt, LLM, ANSWER],
      ]);
      assert.deepEqual(await waiter.promise, { generations: ANSWER, lease: null });
      assert.equal(await unary.areleaseLease(prompt, LLM, lease.token), false);
    });
  });

  describe("clear", () => {
    it("ends the leases it clears: the first waiter gets a new lease, the others wait on", async () => {
      const prompt = freshPrompt("clear");
      const first = grantedLease(await batched.alookup(prompt, LLM, { lease: LONG }));
      const waiters = [];
      for (const client of [unary, batched2]) {
        waiters.push(watch(client.alookup(prompt, LLM, { lease: LONG })));
        await metrics.waitForWaiters(waiters.length);
      }
      await unary2.aclear();
      const second = grantedLease(await waiters[0]!.promise);
      assert.notEqual(second.token, first.token);
      await metrics.waitForWaiters(1);
      assert.ok(!waiters[1]!.settled);
      assert.equal(await batched.areleaseLease(prompt, LLM, first.token), false, "the cleared lease is gone");
      assert.equal(await batched.aupdateIfAbsent(prompt, LLM, [{ text: "old" }], { leaseToken: first.token }), false, "its fill is stale");
      await unary.aupdate(prompt, LLM, ANSWER, { leaseToken: second.token });
      assert.deepEqual(await waiters[1]!.promise, { generations: ANSWER, lease: null });
    });

    it("of one namespace leaves other namespaces' leases held", async () => {
      const prompt = freshPrompt("clear one namespace");
      const inA = grantedLease(await batched.alookup(prompt, LLM, { namespace: "a", lease: LONG }));
      const inB = grantedLease(await batched.alookup(prompt, LLM, { namespace: "b", lease: LONG }));
      await unary.aclear({ namespace: "b" });
      assert.equal(await unary.areleaseLease(prompt, LLM, inB.token, { namespace: "b" }), false);
      assert.equal(await unary.areleaseLease(prompt, LLM, inA.token, { namespace: "a" }), true);
    });
  });

  describe("waiting lookups and the rest of the traffic", () => {
    for (const [name, clientOf] of [
      ["the auto-batching client's stream", () => batched],
      ["a unary client", () => unary],
    ] as const) {
      it(`do not hold up other operations on ${name}, and its own fill answers them`, async () => {
        const client = clientOf();
        const prompt = freshPrompt("busy client");
        const lease = grantedLease(await client.alookup(prompt, LLM, { lease: LONG }));
        const waiters = [watch(client.alookup(prompt, LLM, { lease: LONG })), watch(client.alookup(prompt, LLM, { lease: LONG }))];
        await metrics.waitForWaiters(2);

        const other = freshPrompt("other pair");
        const started = performance.now();
        assert.equal(await client.alookup(other, LLM), null);
        await client.aupdate(other, LLM, [{ text: "other" }]);
        assert.deepEqual(await client.alookup(other, LLM), [{ text: "other" }]);
        assert.equal(await client.aupdateIfAbsent(other, LLM, []), false);
        const third = grantedLease(await client.alookup(freshPrompt("third pair"), LLM, { lease: LONG }));
        assert.ok(third.token !== lease.token);
        assert.deepEqual(await client.alookupMany([[other, LLM], [prompt, LLM]]), [[{ text: "other" }], null]);
        assert.ok((await client.astats()).total.entries >= 1);
        const elapsed = performance.now() - started;
        assert.ok(elapsed < 2_000, `the other operations took ${elapsed} ms`);
        assert.ok(waiters.every((waiter) => !waiter.settled), "the waiting lookups still wait");

        await client.aupdate(prompt, LLM, ANSWER, { leaseToken: lease.token });
        for (const waiter of waiters) assert.deepEqual(await waiter.promise, { generations: ANSWER, lease: null });
      });
    }
  });

  describe("deadlines", () => {
    it("answers a plain miss shortly before a call deadline shorter than the wait (a raw call)", async () => {
      const prompt = freshPrompt("raw deadline");
      grantedLease(await batched.alookup(prompt, LLM, { lease: LONG }));
      const before = await leaseStats();
      const request = toBinary(LookupRequestSchema, create(LookupRequestSchema, { prompt, llmString: LLM, leaseMs: 10_000n, waitMs: 60_000n }));
      const started = performance.now();
      const reply = await rawUnary(channel, CacheService.method.lookup, request, 800);
      const elapsed = performance.now() - started;
      assert.deepEqual(decodeLeasedLookupResponse(reply), { generations: null, lease: null }, "OK and a plain miss, not DEADLINE_EXCEEDED");
      assert.ok(elapsed >= 500 && elapsed < 800, `answered after ${elapsed} ms for a deadline of 800 ms`);
      assert.deepEqual(diff(await leaseStats(), before), { ...NO_LEASE_EVENTS, waitsTimedOut: 1 });
      assert.equal(await metrics.waiters(), 0);
    });

    for (const [name, make] of [
      ["auto-batching", (address: string) => new CacheClient({ address, timeoutMs: 200 })],
      ["unary", (address: string) => new CacheClient({ address, timeoutMs: 200, batching: false })],
    ] as const) {
      it(`gives a waiting lookup its wait on top of a short timeoutMs (${name})`, async () => {
        const client = make(server.address);
        try {
          const prompt = freshPrompt("short timeout");
          grantedLease(await batched.alookup(prompt, LLM, { lease: LONG }));
          const started = performance.now();
          const found = await client.alookup(prompt, LLM, { lease: { leaseMs: 10_000, waitMs: 900 } });
          const elapsed = performance.now() - started;
          assert.deepEqual(found, { generations: null, lease: null }, "its wait ran out: a miss, not DEADLINE_EXCEEDED");
          assert.ok(elapsed >= 850 && elapsed < 900 + 1_500, `answered after ${elapsed} ms`);
          // And a fill within the wait is served although the wait is longer than timeoutMs.
          const filled = freshPrompt("short timeout, filled");
          const lease = grantedLease(await batched.alookup(filled, LLM, { lease: LONG }));
          const waiter = watch(client.alookup(filled, LLM, { lease: { leaseMs: 10_000, waitMs: 5_000 } }));
          await metrics.waitForWaiters(1);
          await new Promise((resolve) => setTimeout(resolve, 500));
          assert.ok(!waiter.settled, "still waiting after more than its timeoutMs");
          await batched.aupdate(filled, LLM, ANSWER, { leaseToken: lease.token });
          assert.deepEqual(await waiter.promise, { generations: ANSWER, lease: null });
        } finally {
          await client.close();
        }
      });
    }
  });

  describe("cancellation", () => {
    /** A lease held by another client, and a lookup of `client` waiting on it, aborted: then `check`. */
    async function cancelledWaiter(client: CacheClient, check: (prompt: string, token: string) => Promise<void>) {
      const prompt = freshPrompt("cancel");
      const lease = grantedLease(await batched2.alookup(prompt, LLM, { lease: LONG }));
      const controller = new AbortController();
      const waiter = watch(client.alookup(prompt, LLM, { lease: { leaseMs: 10_000, waitMs: 20_000 }, signal: controller.signal }));
      try {
        await metrics.waitForWaiters(1);
        const started = performance.now();
        controller.abort();
        await assert.rejects(waiter.promise, isCacheError("CANCELLED", /^Lookup failed: CANCELLED/));
        assert.ok(performance.now() - started < 1_000, "rejected at once");
        await check(prompt, lease.token);
      } finally {
        // Whatever happened, a store ends the pair's lease and answers any waiter the server still holds.
        await batched2.aupdate(prompt, LLM, ANSWER);
      }
    }

    for (const [name, clientOf] of [
      ["a unary client", () => unary],
      ["the auto-batching client's stream", () => batched],
    ] as const) {
      it(`rejects an aborted waiting lookup with CANCELLED, and the server forgets the waiter (${name})`, async () => {
        await cancelledWaiter(clientOf(), async () => {
          await metrics.waitForWaiters(0, 3_000);
        });
      });

      it(`does not make the next caller wait out a lease handed to a cancelled lookup (${name})`, async () => {
        await cancelledWaiter(clientOf(), async (prompt, token) => {
          assert.equal(await batched2.areleaseLease(prompt, LLM, token), true);
          // No one waits any more: the next caller gets the lease promptly, not after the cancelled lookup's 10 s lease.
          const started = performance.now();
          const next = await unary2.alookup(prompt, LLM, { lease: { leaseMs: 30_000, waitMs: 8_000 } });
          const elapsed = performance.now() - started;
          grantedLease(next);
          assert.ok(elapsed < 1_500, `granted after ${elapsed} ms`);
        });
      });
    }

    it("counts a cancelled waiting unary lookup as CANCELLED, not as an INTERNAL failure the server logs", async () => {
      const internal = () => metrics.optionalValue("llmcache_calls_total", '{method="Lookup",code="INTERNAL"}');
      const internalBefore = await internal();
      const cancelledBefore = await metrics.optionalValue("llmcache_calls_total", '{method="Lookup",code="CANCELLED"}');
      const logBefore = server.stderr().length;
      await cancelledWaiter(unary, async () => {
        await metrics.waitForWaiters(0, 3_000);
        await waitFor(
          async () => (await metrics.optionalValue("llmcache_calls_total", '{method="Lookup",code="CANCELLED"}')) > cancelledBefore || (await internal()) > internalBefore,
          "the server counted the call's end",
        );
      });
      assert.equal(await internal(), internalBefore, "no Lookup ended INTERNAL");
      assert.equal(await metrics.optionalValue("llmcache_calls_total", '{method="Lookup",code="CANCELLED"}'), cancelledBefore + 1);
      assert.doesNotMatch(server.stderr().slice(logBefore), /"msg":"call failed"/, "a caller's cancellation is not logged as a failure");
    });

    it("stops getOrCompute's wait with CANCELLED, without computing", async () => {
      const prompt = freshPrompt("cancel getOrCompute");
      grantedLease(await batched2.alookup(prompt, LLM, { lease: LONG }));
      const controller = new AbortController();
      let computed = 0;
      const call = watch(unary.getOrCompute(prompt, LLM, () => (computed++, ANSWER), { signal: controller.signal }));
      await metrics.waitForWaiters(1);
      controller.abort();
      await assert.rejects(call.promise, isCacheError("CANCELLED", /CANCELLED/));
      assert.equal(computed, 0);
      await metrics.waitForWaiters(0, 3_000);
    });
  });

  describe("getOrCompute", () => {
    it("makes one model call for a burst of identical calls over several clients, and every caller gets its answer", async () => {
      const prompt = freshPrompt("burst");
      const before = await leaseStats();
      let calls = 0;
      const model = async () => {
        calls++;
        await new Promise((resolve) => setTimeout(resolve, 300));
        return [{ text: "the one answer" }];
      };
      const clients = [batched, batched2, unary, unary2];
      const results = await Promise.all(Array.from({ length: 24 }, (_, i) => clients[i % 4]!.getOrCompute(prompt, LLM, model, { leaseMs: 10_000, waitMs: 10_000 })));
      assert.equal(calls, 1);
      for (const result of results) assert.deepEqual(result, [{ text: "the one answer" }]);
      assert.deepEqual(await unary.alookup(prompt, LLM), [{ text: "the one answer" }]);
      const stats = diff(await leaseStats(), before);
      assert.equal(stats.granted, 1);
      assert.equal(stats.filled, 1);
      assert.equal(stats.waitsServed, 23);
    });

    it("hands over when the model call throws: its caller gets the error, one more call serves the others", async () => {
      const prompt = freshPrompt("throwing model");
      let calls = 0;
      const model = async () => {
        const call = ++calls;
        await new Promise((resolve) => setTimeout(resolve, 200));
        if (call === 1) throw new Error("the model failed");
        return [{ text: "second try" }];
      };
      const clients = [batched, unary, batched2, unary2];
      const started = performance.now();
      const outcomes = await Promise.allSettled(Array.from({ length: 12 }, (_, i) => clients[i % 4]!.getOrCompute(prompt, LLM, model, { leaseMs: 10_000, waitMs: 10_000 })));
      assert.ok(performance.now() - started < 5_000, "nobody hung");
      assert.equal(calls, 2);
      const rejected = outcomes.filter((outcome) => outcome.status === "rejected");
      assert.equal(rejected.length, 1);
      assert.equal(((rejected[0] as PromiseRejectedResult).reason as Error).message, "the model failed");
      for (const outcome of outcomes.filter((outcome) => outcome.status === "fulfilled")) assert.deepEqual(outcome.value, [{ text: "second try" }]);
    });

    it("takes over from a holder that never fills, once its lease expires", async () => {
      const prompt = freshPrompt("dead holder");
      const started = performance.now();
      grantedLease(await unary2.alookup(prompt, LLM, { lease: { leaseMs: 700 } }));
      let calls = 0;
      const result = await batched.getOrCompute(prompt, LLM, () => (calls++, ANSWER), { leaseMs: 10_000, waitMs: 20_000 });
      const elapsed = performance.now() - started;
      assert.deepEqual(result, ANSWER);
      assert.equal(calls, 1);
      assert.ok(elapsed >= 650 && elapsed < 700 + 1_500, `took over after ${elapsed} ms for a 700 ms lease`);
    });

    it("stores with the namespace and TTL it is given", async () => {
      const prompt = freshPrompt("options");
      await unary.getOrCompute(prompt, LLM, () => ANSWER, { namespace: "ns", ttlMs: 300, timeoutMs: 2_000 });
      assert.equal(await unary.alookup(prompt, LLM), null);
      assert.deepEqual(await unary.alookup(prompt, LLM, { namespace: "ns" }), ANSWER);
      await waitFor(async () => (await unary.alookup(prompt, LLM, { namespace: "ns" })) === null, "the entry expired", 3_000);
    });
  });

  describe("the blocking lookup", () => {
    it("takes a lease, answers a plain miss when it will not wait, and releases", () => {
      const prompt = freshPrompt("blocking");
      const lease = grantedLease(unary.lookup(prompt, LLM, { lease: LONG }));
      assert.deepEqual(batched.lookup(prompt, LLM, { lease: { leaseMs: 1_000 } }), { generations: null, lease: null });
      assert.equal(batched.releaseLease(prompt, LLM, lease.token), true);
      assert.equal(batched.releaseLease(prompt, LLM, lease.token), false);
      const again = grantedLease(batched.lookup(prompt, LLM, { lease: LONG }));
      unary.update(prompt, LLM, ANSWER, { leaseToken: again.token });
      assert.deepEqual(unary.lookup(prompt, LLM, { lease: LONG }), { generations: ANSWER, lease: null });
      assert.equal(unary.updateIfAbsent(prompt, LLM, ANSWER, { leaseToken: again.token }), false, "its lease ended with the fill");
    });

    it("waits, blocking, until an expired lease passes to it", () => {
      const prompt = freshPrompt("blocking expiry");
      const started = performance.now();
      grantedLease(unary.lookup(prompt, LLM, { lease: { leaseMs: 500 } }));
      const next = unary.lookup(prompt, LLM, { lease: { leaseMs: 10_000, waitMs: 20_000 } });
      const elapsed = performance.now() - started;
      grantedLease(next);
      assert.ok(elapsed >= 450 && elapsed < 500 + 1_500, `took over after ${elapsed} ms`);
    });

    it("waits, blocking, for another process's fill and gets the hit", async () => {
      const prompt = freshPrompt("blocking fill");
      const lease = grantedLease(await batched.alookup(prompt, LLM, { lease: LONG }));
      // Another process fills the pair in a while: this thread will be blocked meanwhile.
      const filler = spawn(
        process.execPath,
        [
          "--input-type=module",
          "-e",
          `const { CacheClient } = await import(${JSON.stringify(new URL("../../src/index.js", import.meta.url).href)});
           const [address, prompt, llm, token] = process.argv.slice(1);
           await new Promise((resolve) => setTimeout(resolve, 800));
           const client = new CacheClient({ address, batching: false });
           await client.aupdate(prompt, llm, [{ text: "from the filler" }], { leaseToken: token });
           await client.close();`,
          server.address,
          prompt,
          LLM,
          lease.token,
        ],
        { stdio: ["ignore", "ignore", "inherit"] },
      );
      const exited = new Promise<number | null>((resolve) => filler.once("exit", resolve));
      const started = performance.now();
      const found = unary.lookup(prompt, LLM, { lease: { leaseMs: 10_000, waitMs: 20_000 } });
      const elapsed = performance.now() - started;
      assert.deepEqual(found, { generations: [{ text: "from the filler" }], lease: null });
      assert.ok(elapsed < 15_000, `answered after ${elapsed} ms`);
      assert.equal(await exited, 0);
    });
  });

  describe("statistics and metrics", () => {
    it("count every lease event alike in stats() and llmcache_lease_events_total", async () => {
      const prompt = freshPrompt("counts");
      const notStoredBefore = (await batched.astats()).total.updatesNotStored;
      const before = await leaseStats();
      // granted, and a wait that times out
      const first = grantedLease(await batched.alookup(prompt, LLM, { lease: LONG }));
      assert.deepEqual(await unary.alookup(prompt, LLM, { lease: { leaseMs: 10_000, waitMs: 100 } }), { generations: null, lease: null });
      // released, and granted again to a waiter, which fills and serves another waiter
      const waiter = watch(unary.alookup(prompt, LLM, { lease: LONG }));
      await metrics.waitForWaiters(1);
      await batched.areleaseLease(prompt, LLM, first.token);
      const second = grantedLease(await waiter.promise);
      const served = watch(batched2.alookup(prompt, LLM, { lease: LONG }));
      await metrics.waitForWaiters(1);
      await unary.aupdate(prompt, LLM, ANSWER, { leaseToken: second.token });
      await served.promise;
      // a stale fill refused
      assert.equal(await batched.aupdateIfAbsent(prompt, LLM, ANSWER, { leaseToken: first.token }), false);
      // expired
      grantedLease(await batched.alookup(freshPrompt("expires"), LLM, { lease: { leaseMs: 100 } }));
      await waitFor(async () => (await leaseStats()).expired > before.expired, "the lease expired");

      const after = await leaseStats();
      assert.deepEqual(diff(after, before), { granted: 3, filled: 1, waitsServed: 1, waitsTimedOut: 1, expired: 1, released: 1, staleFillsRefused: 1 });
      const labels: Record<keyof LeaseStats, string> = {
        granted: "granted",
        filled: "filled",
        waitsServed: "waits_served",
        waitsTimedOut: "waits_timed_out",
        expired: "expired",
        released: "released",
        staleFillsRefused: "stale_fills_refused",
      };
      for (const [event, label] of Object.entries(labels) as [keyof LeaseStats, string][]) {
        assert.equal(await metrics.value("llmcache_lease_events_total", `{event="${label}"}`), after[event], `the ${label} counter`);
      }
      assert.equal(await metrics.value("llmcache_leases_outstanding"), 0);
      assert.equal(await metrics.waiters(), 0);
      assert.equal((await batched.astats()).total.updatesNotStored, notStoredBefore + 1, "the refused stale fill is an update not stored too");
    });
  });

  describe("refused requests", () => {
    it("are refused by CacheClient before they are sent", async () => {
      const prompt = freshPrompt("refused");
      const before = await leaseStats();
      const rejects = (call: () => Promise<unknown>, name: string, message: RegExp) => assert.rejects(call(), { name, message });
      for (const client of [batched, unary]) {
        await rejects(() => client.alookup(prompt, LLM, { bypass: true, lease: { leaseMs: 10 } }), "TypeError", /lease and bypass together/);
        await rejects(() => client.alookup(prompt, LLM, { lease: { leaseMs: 0 } }), "RangeError", /lease\.leaseMs must be an integer number of milliseconds from 1 to 3600000, got number 0/);
        await rejects(() => client.alookup(prompt, LLM, { lease: { leaseMs: MAX_LEASE_MS + 1 } }), "RangeError", /lease\.leaseMs .* got number 3600001/);
        await rejects(() => client.alookup(prompt, LLM, { lease: { leaseMs: 10, waitMs: MAX_LEASE_MS + 1 } }), "RangeError", /lease\.waitMs .* got number 3600001/);
        await rejects(() => client.alookupMany([[prompt, LLM]], { lease: { leaseMs: 10 } }), "TypeError", /lease is not allowed in alookupMany/);
        await rejects(() => client.aupdate(prompt, LLM, ANSWER, { leaseToken: "" }), "TypeError", /leaseToken must not be empty/);
        await rejects(() => client.areleaseLease(prompt, LLM, ""), "TypeError", /token must be the non-empty token of a lease/);
      }
      assert.throws(() => unary.lookup(prompt, LLM, { bypass: true, lease: { leaseMs: 10 } }), { name: "TypeError" });
      assert.deepEqual(diff(await leaseStats(), before), NO_LEASE_EVENTS, "nothing reached the server's leases");
      assert.equal(await batched.alookup(prompt, LLM), null, "nothing was stored");
    });

    it("are refused by the server with INVALID_ARGUMENT when sent raw", async () => {
      const lookup = (fields: object) => toBinary(LookupRequestSchema, create(LookupRequestSchema, { prompt: "p", llmString: LLM, ...fields }));
      const cases: [string, Promise<Buffer>, RegExp][] = [
        ["wait_ms without lease_ms", rawUnary(channel, CacheService.method.lookup, lookup({ waitMs: 100n })), /wait_ms needs lease_ms/],
        ["lease_ms with bypass", rawUnary(channel, CacheService.method.lookup, lookup({ leaseMs: 100n, bypass: true })), /lease_ms with bypass/],
        ["lease_ms past an hour", rawUnary(channel, CacheService.method.lookup, lookup({ leaseMs: BigInt(MAX_LEASE_MS + 1) })), /lease_ms is 3600001, over the largest allowed/],
        ["wait_ms past an hour", rawUnary(channel, CacheService.method.lookup, lookup({ leaseMs: 1n, waitMs: BigInt(MAX_LEASE_MS + 1) })), /wait_ms is 3600001/],
        [
          "a lease in BatchLookup",
          rawUnary(channel, CacheService.method.batchLookup, toBinary(BatchLookupRequestSchema, create(BatchLookupRequestSchema, { lookups: [{ prompt: "p", leaseMs: 10n }] }))),
          /lease_ms is not allowed in a batch/,
        ],
        [
          "ReleaseLease without a token",
          rawUnary(channel, CacheService.method.releaseLease, toBinary(ReleaseLeaseRequestSchema, create(ReleaseLeaseRequestSchema, { prompt: "p", llmString: LLM }))),
          /lease_token is empty/,
        ],
      ];
      for (const [name, call, message] of cases) {
        await assert.rejects(call, (error: unknown) => {
          assert.ok(error instanceof CacheError, `${name}: a CacheError, got ${error}`);
          assert.equal(error.code, "INVALID_ARGUMENT", name);
          assert.match(error.message, message, name);
          return true;
        });
      }
      assert.equal(await metrics.value("llmcache_leases_outstanding"), 0, "none of them took a lease");
    });

    it("accepts the longest lease and wait", async () => {
      const prompt = freshPrompt("longest");
      const lease = grantedLease(await unary.alookup(prompt, LLM, { lease: { leaseMs: MAX_LEASE_MS, waitMs: MAX_LEASE_MS } }));
      assert.equal(lease.leaseMs, MAX_LEASE_MS);
      assert.equal(await unary.areleaseLease(prompt, LLM, lease.token), true);
    });
  });

  describe("a server with waiter limits", () => {
    let limited: ServerProcess;
    let client: CacheClient;
    let limitedMetrics: MetricsScraper;
    before(async () => {
      limited = await startServerProcess(["--max-lease-waiters", "3", "--max-lease-waiters-per-pair", "2", "--metrics-port", "0"]);
      client = new CacheClient({ address: limited.address });
      limitedMetrics = new MetricsScraper(limited);
    });
    after(async () => {
      await client?.close();
      await limited?.stop();
    });

    it("refuses a wait past each limit with RESOURCE_EXHAUSTED naming its flag, and frees the places after the fill", async () => {
      const unaryClient = new CacheClient({ address: limited.address, batching: false });
      try {
        const p = grantedLease(await client.alookup("p", LLM, { lease: LONG }));
        const q = grantedLease(await client.alookup("q", LLM, { lease: LONG }));
        const waiting = [watch(client.alookup("p", LLM, { lease: LONG })), watch(unaryClient.alookup("p", LLM, { lease: LONG }))];
        await limitedMetrics.waitForWaiters(2);
        for (const over of [client, unaryClient]) {
          await assert.rejects(over.alookup("p", LLM, { lease: LONG }), isCacheError("RESOURCE_EXHAUSTED", /\(--max-lease-waiters-per-pair\)/));
        }
        waiting.push(watch(client.alookup("q", LLM, { lease: LONG })));
        await limitedMetrics.waitForWaiters(3);
        for (const over of [client, unaryClient]) {
          await assert.rejects(over.alookup("q", LLM, { lease: LONG }), isCacheError("RESOURCE_EXHAUSTED", /\(--max-lease-waiters\)/));
        }
        assert.deepEqual(await client.alookup("q", LLM, { lease: { leaseMs: 1_000 } }), { generations: null, lease: null }, "a lookup that will not wait is not refused");
        await client.aupdate("p", LLM, ANSWER, { leaseToken: p.token });
        await client.aupdate("q", LLM, ANSWER, { leaseToken: q.token });
        for (const waiter of waiting) assert.deepEqual(await waiter.promise, { generations: ANSWER, lease: null });
        // The places are free again.
        await client.aclear();
        grantedLease(await client.alookup("p", LLM, { lease: LONG }));
        const again = [watch(client.alookup("p", LLM, { lease: LONG })), watch(unaryClient.alookup("p", LLM, { lease: LONG }))];
        await limitedMetrics.waitForWaiters(2);
        await client.aupdate("p", LLM, ANSWER);
        for (const waiter of again) assert.deepEqual(await waiter.promise, { generations: ANSWER, lease: null });
      } finally {
        await unaryClient.close();
      }
    });
  });

  describe("a server with tokens", () => {
    let secured: ServerProcess;
    const WRITER = "token-of-the-writer";
    const READER = "token-of-the-reader";
    before(async () => {
      const authFile = writeAuthFile([
        { name: "writer", token: WRITER, read: ["team"], write: ["team"], stats: true },
        { name: "reader", token: READER, read: ["team"] },
      ]);
      secured = await startServerProcess(["--auth-file", authFile]);
    });
    after(() => secured?.stop());

    it("grants leases only to a token that may write the namespace", async () => {
      const clients = [true, false].flatMap((batching) => [
        new CacheClient({ address: secured.address, token: WRITER, namespace: "team", batching }),
        new CacheClient({ address: secured.address, token: READER, namespace: "team", batching }),
      ]);
      try {
        for (let i = 0; i < clients.length; i += 2) {
          const [writer, reader] = [clients[i]!, clients[i + 1]!];
          const prompt = freshPrompt("auth");
          await assert.rejects(
            reader.alookup(prompt, LLM, { lease: { leaseMs: 1_000 } }),
            isCacheError("PERMISSION_DENIED", /token "reader" may not take a lease \(which needs the right to write\) in namespace "team"/),
          );
          assert.equal(await reader.alookup(prompt, LLM), null, "a plain lookup is allowed");
          const lease = grantedLease(await writer.alookup(prompt, LLM, { lease: LONG }));
          await assert.rejects(reader.areleaseLease(prompt, LLM, lease.token), isCacheError("PERMISSION_DENIED", /may not write namespace "team"/));
          await assert.rejects(reader.aupdate(prompt, LLM, ANSWER, { leaseToken: lease.token }), isCacheError("PERMISSION_DENIED", /may not write/));
          assert.equal(await writer.areleaseLease(prompt, LLM, lease.token), true, "the reader's attempts did not touch the lease");
          await assert.rejects(writer.alookup(prompt, LLM, { namespace: "elsewhere", lease: LONG }), isCacheError("PERMISSION_DENIED", /namespace "elsewhere"/));
        }
      } finally {
        for (const client of clients) await client.close();
      }
    });
  });

  describe("shutdown", () => {
    it("answers waiting lookups UNAVAILABLE at once, well before the grace period ends", async () => {
      const stopping = await startServerProcess(["--shutdown-grace", "30s", "--metrics-port", "0"]);
      const clients = [new CacheClient({ address: stopping.address }), new CacheClient({ address: stopping.address, batching: false })];
      try {
        const stoppingMetrics = new MetricsScraper(stopping);
        grantedLease(await clients[0]!.alookup("p", LLM, { lease: LONG }));
        const waiters = [0, 1, 0, 1].map((i) => watch(clients[i]!.alookup("p", LLM, { lease: { leaseMs: 60_000, waitMs: 60_000 } })));
        await stoppingMetrics.waitForWaiters(4);
        const started = performance.now();
        stopping.child.kill("SIGTERM");
        for (const waiter of waiters) await assert.rejects(waiter.promise, isCacheError("UNAVAILABLE", /the server is shutting down/));
        const answered = performance.now() - started;
        assert.ok(answered < 5_000, `the waiters were answered after ${answered} ms`);
        const exit = await stopping.exited();
        const exitedAfter = performance.now() - started;
        assert.equal(exit.code, 0);
        assert.ok(exitedAfter < 10_000, `the server exited after ${exitedAfter} ms, with a grace period of 30 s`);
      } finally {
        for (const client of clients) await client.close();
        await stopping.stop("SIGKILL");
      }
    });
  });
});
