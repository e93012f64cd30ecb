import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { CacheClient, type Generation } from "../../src/index.js";
import { isCacheError } from "../helpers/assertions.js";
import { redisServers } from "../helpers/redis-servers.js";
import { startServerProcess, type ServerProcess } from "../helpers/server-process.js";
import { MetricsScraper } from "../helpers/single-flight.js";
import { closedPort, startStalledGrpcServer } from "../helpers/stalled-server.js";

const KEYS = Array.from({ length: 40 }, (_, i) => `prompt ${i}`);
const answerOf = (i: number): Generation[] => [{ text: `answer ${i}` }];

/** The one TypeError `address` gets, for assert.throws. */
const addressError = (message: string) => ({ name: "TypeError", message });

/** The lookups this replica answered with a hit: its own count, even on Redis (see README, Statistics). */
function hitsServedBy(server: ServerProcess): Promise<number> {
  return new MetricsScraper(server).optionalValue("llmcache_hits_total");
}

/** The lookups a replica counted, hits and misses, through a client of its own. */
async function lookupsCountedBy(server: ServerProcess): Promise<number> {
  const client = new CacheClient({ address: server.address });
  try {
    const { total } = await client.astats();
    return total.hits + total.misses;
  } finally {
    await client.close();
  }
}

/** Whether a child process has died, read while this thread blocks and cannot hear of it: gone, or a zombie not yet reaped. */
function isGone(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3) === "Z";
  } catch {
    return true;
  }
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe("CacheClient with several replicas", function () {
  this.timeout(30_000);

  describe("the address option", () => {
    const addressesOf = async (address: string | readonly string[]) => {
      const client = new CacheClient({ address });
      await client.close();
      return { address: client.address, addresses: client.addresses };
    };

    it("takes several host:port separated by commas", async () => {
      assert.deepEqual(await addressesOf("10.0.0.1:50051,10.0.0.2:50051,[::1]:50052"), {
        address: "10.0.0.1:50051,10.0.0.2:50051,[::1]:50052",
        addresses: ["10.0.0.1:50051", "10.0.0.2:50051", "[::1]:50052"],
      });
    });

    it("takes an array of host:port, and gives them back joined with commas as `address`", async () => {
      assert.deepEqual(await addressesOf(["cache-a.internal:50051", "cache-b.internal:50051"]), {
        address: "cache-a.internal:50051,cache-b.internal:50051",
        addresses: ["cache-a.internal:50051", "cache-b.internal:50051"],
      });
    });

    it("keeps one address (a unix: socket too), and the default, as they were", async () => {
      assert.deepEqual(await addressesOf("127.0.0.1:6000"), { address: "127.0.0.1:6000", addresses: ["127.0.0.1:6000"] });
      assert.deepEqual(await addressesOf("unix:/run/llmcache.sock"), { address: "unix:/run/llmcache.sock", addresses: ["unix:/run/llmcache.sock"] });
      const byDefault = new CacheClient();
      await byDefault.close();
      assert.deepEqual(byDefault.addresses, ["127.0.0.1:50051"]);
    });

    it("refuses an empty list", () => {
      const message = "address must name at least one host:port, got an empty list";
      assert.throws(() => new CacheClient({ address: [] }), addressError(message));
      assert.throws(() => new CacheClient({ address: "" }), addressError(message));
    });

    it("refuses an empty item", () => {
      assert.throws(
        () => new CacheClient({ address: "10.0.0.1:50051,,10.0.0.2:50051" }),
        addressError('address must not have an empty item, got "10.0.0.1:50051,,10.0.0.2:50051"'),
      );
      assert.throws(
        () => new CacheClient({ address: ["10.0.0.1:50051", ""] }),
        addressError('address must not have an empty item, got ["10.0.0.1:50051",""]'),
      );
    });

    it("refuses a replica named twice", () => {
      assert.throws(
        () => new CacheClient({ address: "10.0.0.1:50051,10.0.0.2:50051,10.0.0.1:50051" }),
        addressError("address must not name a replica twice, got 10.0.0.1:50051 twice"),
      );
    });

    it("refuses an item that is not host:port", () => {
      const notHostPort = (got: string) =>
        addressError(`address items must be host:port (such as "10.0.0.1:50051", "[::1]:50051" or "dns:///cache.internal:50051"), got ${got}`);
      assert.throws(() => new CacheClient({ address: "cache.internal" }), notHostPort('"cache.internal"'));
      assert.throws(() => new CacheClient({ address: "10.0.0.1:50051,10.0.0.2" }), notHostPort('"10.0.0.2"'));
      assert.throws(() => new CacheClient({ address: "10.0.0.1:0" }), notHostPort('"10.0.0.1:0"'));
      assert.throws(() => new CacheClient({ address: "10.0.0.1:65536" }), notHostPort('"10.0.0.1:65536"'));
      assert.throws(() => new CacheClient({ address: "::1:50051" }), notHostPort('"::1:50051"'));
      assert.throws(() => new CacheClient({ address: "10.0.0.1:50051, 10.0.0.2:50051" }), notHostPort('" 10.0.0.2:50051"'));
      assert.throws(() => new CacheClient({ address: ["10.0.0.1:50051,10.0.0.2:50051"] }), notHostPort('"10.0.0.1:50051,10.0.0.2:50051"'));
      assert.throws(() => new CacheClient({ address: ["10.0.0.1:50051", 50051 as unknown as string] }), notHostPort("50051"));
      assert.throws(() => new CacheClient({ address: "dns:///cache.internal" }), notHostPort('"dns:///cache.internal"'));
      assert.throws(() => new CacheClient({ address: "dns:///cache.internal:0" }), notHostPort('"dns:///cache.internal:0"'));
      assert.throws(() => new CacheClient({ address: "dns://10.0.0.53/cache.internal" }), notHostPort('"dns://10.0.0.53/cache.internal"'));
      assert.throws(() => new CacheClient({ address: "dns:" }), notHostPort('"dns:"'));
    });

    it("takes a gRPC dns target as one address", async () => {
      const targets = ["dns:///cache.internal:50051", "dns://10.0.0.53:53/cache:1", "dns:cache:2"];
      assert.deepEqual(await addressesOf(targets.join(",")), { address: targets.join(","), addresses: targets });
    });

    it("refuses what is neither a string nor an array", () => {
      assert.throws(
        () => new CacheClient({ address: 50051 as unknown as string }),
        addressError('address must be "host:port", several of them separated by commas, or an array of them, got 50051'),
      );
    });
  });

  describe("with two servers of their own", () => {
    let servers: ServerProcess[];
    before(async () => {
      servers = await Promise.all([startServerProcess(), startServerProcess()]);
    });
    after(() => Promise.all(servers.map((server) => server.stop())));

    describe("spreading calls", () => {
      for (const kind of ["batched", "unary", "blocking"] as const) {
        it(`sends ${kind} lookups to both replicas`, async () => {
          const before = await Promise.all(servers.map(lookupsCountedBy));
          const client = new CacheClient({ address: servers.map((server) => server.address), batching: kind === "batched" });
          try {
            // One lookup a turn of the event loop: with batching, a turn's lookups go to one replica.
            for (const key of KEYS.slice(0, 10)) {
              if (kind === "blocking") client.lookup(key, "llm");
              else await client.alookup(key, "llm");
            }
          } finally {
            await client.close();
          }
          const counted = (await Promise.all(servers.map(lookupsCountedBy))).map((count, i) => count - before[i]!);
          assert.equal(counted[0]! + counted[1]!, 10, `lookups counted: ${counted}`);
          assert.ok(counted[0]! >= 3 && counted[1]! >= 3, `each replica had its share: ${counted}`);
        });
      }
    });

    describe("retrying on another replica", () => {
      let live: ServerProcess;
      let dead: string;
      before(async () => {
        live = servers[0]!;
        dead = `127.0.0.1:${await closedPort()}`;
        const seed = new CacheClient({ address: live.address });
        await seed.aupdate("p", "llm", answerOf(0));
        await seed.close();
      });

      /**
       * What `call` does on a fresh client of [a replica that is down, a live
       * one]: its first call goes to the first, always, and fails there with
       * UNAVAILABLE.
       */
      async function firstCallOf<R>(call: (client: CacheClient) => R | Promise<R>, batching = true): Promise<R> {
        const client = new CacheClient({ address: [dead, live.address], timeoutMs: 3_000, batching });
        try {
          return await call(client);
        } finally {
          await client.close();
        }
      }

      it("retries a lookup, batched, unary and blocking, and answers from the live replica", async () => {
        assert.deepEqual(await firstCallOf((client) => client.alookup("p", "llm")), answerOf(0));
        assert.deepEqual(await firstCallOf((client) => client.alookup("p", "llm"), false), answerOf(0));
        assert.deepEqual(await firstCallOf((client) => client.lookup("p", "llm")), answerOf(0));
      });

      it("retries a leased lookup", async () => {
        const { generations } = await firstCallOf((client) => client.alookup("p", "llm", { lease: { leaseMs: 1_000, waitMs: 0 } }));
        assert.deepEqual(generations, answerOf(0));
      });

      it("retries lookupMany, stats and clear", async () => {
        assert.deepEqual(await firstCallOf((client) => client.alookupMany([["p", "llm"]])), [answerOf(0)]);
        assert.ok((await firstCallOf((client) => client.astats())).total.hits > 0);
        await firstCallOf((client) => client.aclear({ namespace: "cleared" }));
        await firstCallOf((client) => client.clear({ namespace: "cleared" }));
      });

      it("retries updates that overwrite, one or many, async and blocking", async () => {
        await firstCallOf((client) => client.aupdate("overwritten", "llm", answerOf(1)));
        await firstCallOf((client) => client.aupdate("overwritten unary", "llm", answerOf(2), {}), false);
        await firstCallOf((client) => client.update("overwritten blocking", "llm", answerOf(3)));
        await firstCallOf((client) => client.aupdateMany([["overwritten many", "llm", answerOf(4)]]));
        const check = new CacheClient({ address: live.address });
        try {
          const stored = await check.alookupMany([
            ["overwritten", "llm"],
            ["overwritten unary", "llm"],
            ["overwritten blocking", "llm"],
            ["overwritten many", "llm"],
          ]);
          assert.deepEqual(stored, [answerOf(1), answerOf(2), answerOf(3), answerOf(4)]);
        } finally {
          await check.close();
        }
      });

      it("does not retry updateIfAbsent, batched, unary or blocking: the UNAVAILABLE reaches the caller", async () => {
        const unavailable = isCacheError("UNAVAILABLE", /^Update failed: UNAVAILABLE: /);
        await assert.rejects(firstCallOf((client) => client.aupdateIfAbsent("absent", "llm", answerOf(5))), unavailable);
        await assert.rejects(firstCallOf((client) => client.aupdateIfAbsent("absent", "llm", answerOf(5)), false), unavailable);
        await assert.rejects(firstCallOf((client) => client.updateIfAbsent("absent", "llm", answerOf(5))), unavailable);
        const check = new CacheClient({ address: live.address });
        try {
          assert.equal(await check.alookup("absent", "llm"), null, "nothing was stored on the live replica");
        } finally {
          await check.close();
        }
      });

      it("does not retry the fill of a lease, nor its release", async () => {
        await assert.rejects(
          firstCallOf((client) => client.aupdate("leased", "llm", answerOf(6), { leaseToken: "token" })),
          isCacheError("UNAVAILABLE", /^Update failed: UNAVAILABLE: /),
        );
        await assert.rejects(
          firstCallOf((client) => client.aupdateMany([["leased", "llm", answerOf(6)]], { leaseToken: "token" })),
          isCacheError("UNAVAILABLE", /^BatchUpdate failed: UNAVAILABLE: /),
        );
        await assert.rejects(
          firstCallOf((client) => client.areleaseLease("leased", "llm", "token")),
          isCacheError("UNAVAILABLE", /^ReleaseLease failed: UNAVAILABLE: /),
        );
        await assert.rejects(
          firstCallOf((client) => client.releaseLease("leased", "llm", "token")),
          isCacheError("UNAVAILABLE", /^ReleaseLease failed: UNAVAILABLE: /),
        );
      });

      it("gives the retry what is left of the call's deadline, no more", async () => {
        const stalled = await startStalledGrpcServer();
        const client = new CacheClient({ address: [dead, stalled.address], timeoutMs: 600 });
        try {
          const started = performance.now();
          await assert.rejects(client.alookup("p", "llm"), isCacheError("DEADLINE_EXCEEDED", /^Lookup failed: DEADLINE_EXCEEDED: /));
          const tookMs = performance.now() - started;
          assert.ok(tookMs >= 550 && tookMs < 1_000, `took ${tookMs} ms`);
        } finally {
          await client.close();
          stalled.stop();
        }
      });

      it("does not retry a call that ran out its deadline", async () => {
        const stalled = await startStalledGrpcServer();
        const client = new CacheClient({ address: [stalled.address, live.address], timeoutMs: 300 });
        try {
          await assert.rejects(client.alookup("p", "llm"), isCacheError("DEADLINE_EXCEEDED", /^Lookup failed: DEADLINE_EXCEEDED: /));
        } finally {
          await client.close();
          stalled.stop();
        }
      });

      it("fails with UNAVAILABLE, at once, when no replica is up", async () => {
        const client = new CacheClient({ address: [dead, `127.0.0.1:${await closedPort()}`], timeoutMs: 3_000 });
        try {
          const started = performance.now();
          await assert.rejects(client.alookup("p", "llm"), isCacheError("UNAVAILABLE", /^Lookup failed: UNAVAILABLE: /));
          assert.throws(() => client.lookup("p", "llm"), isCacheError("UNAVAILABLE", /^Lookup failed: UNAVAILABLE: /));
          assert.ok(performance.now() - started < 2_500, "no call waited out its deadline");
        } finally {
          await client.close();
        }
      });

      it("fails with UNAVAILABLE as before with one address that is down", async () => {
        const client = new CacheClient({ address: dead });
        try {
          await assert.rejects(client.alookup("p", "llm"), isCacheError("UNAVAILABLE", /^Lookup failed: UNAVAILABLE: /));
          assert.throws(() => client.lookup("p", "llm"), isCacheError("UNAVAILABLE", /^Lookup failed: UNAVAILABLE: /));
        } finally {
          await client.close();
        }
      });
    });
  });

  describe("when a replica on a shared Redis is killed (kill -9)", () => {
    const namespace = `client-replicas-${process.pid}`;
    let survivor: ServerProcess;
    /** One replica to kill for each test below, all started at once: they take a while to start. */
    let victims: ServerProcess[] = [];

    before(async () => {
      const store = (await redisServers()).single;
      const started = await Promise.all(
        Array.from({ length: 5 }, (_, i) => startServerProcess(i === 0 ? ["--store", store] : ["--store", store, "--metrics-port", "0"])),
      );
      survivor = started[0]!;
      victims = started.slice(1);
      const seed = new CacheClient({ address: survivor.address, namespace });
      await seed.aupdateMany(KEYS.map((key, i) => [key, "llm", answerOf(i)]));
      await seed.close();
    });
    after(async () => {
      if (survivor) {
        // The Redis is shared with other tests: leave nothing behind.
        const cleaner = new CacheClient({ address: survivor.address, namespace });
        await cleaner.aclear().finally(() => cleaner.close());
      }
      await Promise.all([survivor, ...victims].map((server) => server?.stop()));
    });

    /** A replica to kill, on the same store, and a client that knows it first and the survivor second. */
    function victimAndClient(batching: boolean) {
      const victim = victims.shift();
      assert.ok(victim, "a replica is left to kill");
      const client = new CacheClient({ address: [victim.address, survivor.address], namespace, batching });
      return { victim, client };
    }

    /**
     * `callers` loops of alookup for `runMs`; halfway, once the victim has
     * answered some, it is killed. Answers what went wrong and how many
     * lookups were answered after the kill.
     */
    async function lookupsThroughAKill(batching: boolean, callers: number, runMs: number) {
      const { victim, client } = victimAndClient(batching);
      const wrong: string[] = [];
      let afterKill = 0;
      let killed = false;
      const until = performance.now() + runMs;
      try {
        const loops = Array.from({ length: callers }, async (_, caller) => {
          for (let n = caller; performance.now() < until; n++) {
            const i = n % KEYS.length;
            try {
              const answer = await client.alookup(KEYS[i]!, "llm");
              if (JSON.stringify(answer) !== JSON.stringify(answerOf(i))) wrong.push(`${KEYS[i]}: ${JSON.stringify(answer)}`);
              else if (killed) afterKill++;
            } catch (error) {
              wrong.push(String(error));
            }
          }
        });
        await sleep(runMs / 2);
        const hits = await hitsServedBy(victim);
        await victim.stop("SIGKILL");
        killed = true;
        await Promise.all(loops);
        return { wrong, hits, afterKill };
      } finally {
        await client.close();
        await victim.stop("SIGKILL");
      }
    }

    for (const batching of [true, false]) {
      it(`answers every lookup of a loop, ${batching ? "batched" : "unary (batching off)"}, through the kill`, async () => {
        const { wrong, hits, afterKill } = await lookupsThroughAKill(batching, 4, 800);
        assert.ok(hits > 0, "the killed replica answered lookups before");
        assert.ok(afterKill > 0, "lookups went on after the kill");
        assert.deepEqual(wrong.slice(0, 5), [], `${wrong.length} lookups failed or were wrong`);
      });
    }

    it("answers every blocking lookup of a loop through the kill", async () => {
      const { victim, client } = victimAndClient(true);
      const wrong: string[] = [];
      try {
        for (const [i, key] of KEYS.entries()) assert.deepEqual(client.lookup(key, "llm"), answerOf(i));
        assert.ok((await hitsServedBy(victim)) > 0, "the killed replica answered lookups before");
        // The loop blocks this thread, so the kill must come from elsewhere;
        // the loop goes on for 200 lookups after it.
        const killer = spawn("sh", ["-c", `sleep 0.3 && kill -KILL ${victim.child.pid}`], { stdio: "ignore" });
        const giveUpAt = performance.now() + 10_000;
        let afterKill = 0;
        for (let n = 0; afterKill < 200 && performance.now() < giveUpAt; n++) {
          const i = n % KEYS.length;
          if (isGone(victim.child.pid!)) afterKill++;
          try {
            const answer = client.lookup(KEYS[i]!, "llm");
            if (JSON.stringify(answer) !== JSON.stringify(answerOf(i))) wrong.push(`${KEYS[i]}: ${JSON.stringify(answer)}`);
          } catch (error) {
            wrong.push(String(error));
          }
        }
        assert.equal(afterKill, 200, "the replica was killed while the loop ran, and lookups went on");
        killer.unref();
        assert.deepEqual(wrong.slice(0, 5), [], `${wrong.length} lookups failed or were wrong`);
      } finally {
        await client.close();
        await victim.stop("SIGKILL");
      }
    });

    it("under load (32 callers), fails no lookup: every UNAVAILABLE is retried", async () => {
      const { wrong, hits, afterKill } = await lookupsThroughAKill(true, 32, 1_500);
      assert.ok(hits > 0, "the killed replica answered lookups before");
      assert.ok(afterKill > 100, `lookups went on after the kill: ${afterKill}`);
      assert.deepEqual(wrong.slice(0, 5), [], `${wrong.length} lookups failed or were wrong`);
    });
  });
});
