import assert from "node:assert/strict";
import { ENTRY_OVERHEAD_BYTES, EntryTooLargeError, GROUP_OVERHEAD_BYTES, NAMESPACE_OVERHEAD_BYTES, type BaseCache, type Generation, type Limits } from "../../src/index.js";

export interface PolicySettings extends Limits {
  policy?: "fifo" | "lru";
  namespaces?: Record<string, Limits>;
}

/** A cache with the given settings, and a way to let time pass: a fake clock in process, a short real wait remotely. */
export interface PolicyCache {
  cache: BaseCache;
  advance(ms: number): Promise<void>;
}

/** Text whose generation takes about 1 KB whether stored as JSON (in process) or as protobuf (on a server). */
const kilobyte = (label: string): Generation[] => [{ text: label.padEnd(1000, ".") }];
/**
 * Budget for three such entries (at most 1,030 bytes and the overhead each,
 * all in one namespace with one llm_string) but not four.
 */
const THREE_ENTRIES = 3 * (1_030 + ENTRY_OVERHEAD_BYTES) + NAMESPACE_OVERHEAD_BYTES + GROUP_OVERHEAD_BYTES;

/**
 * The policies of a shared tier, as one suite that runs against every cache
 * (in process and over gRPC): `cacheWith(settings)` gives an empty cache
 * with those limits. TTLs are 100 ms and waits no longer: an entry must
 * expire by the end of a wait as long as its TTL, whatever the machine does.
 */
export function policyBehaviour(cacheWith: (settings: PolicySettings) => Promise<PolicyCache>): void {
  it("lru: a lookup refreshes an entry, so the least recently used goes first", async () => {
    const { cache } = await cacheWith({ maxsize: 2, policy: "lru" });
    await cache.aupdate("a", "llm", [{ text: "a" }]);
    await cache.aupdate("b", "llm", [{ text: "b" }]);
    await cache.alookup("a", "llm");
    await cache.aupdate("c", "llm", [{ text: "c" }]);
    assert.deepEqual(await cache.alookup("a", "llm"), [{ text: "a" }]);
    assert.equal(await cache.alookup("b", "llm"), null);
  });

  it("expires an entry after its own TTL, and counts the expiration", async () => {
    const { cache, advance } = await cacheWith({});
    await cache.aupdate("short", "llm", [{ text: "s" }], { ttlMs: 100 });
    await cache.aupdate("forever", "llm", [{ text: "f" }]);
    assert.deepEqual(await cache.alookup("short", "llm"), [{ text: "s" }]);
    await advance(100);
    assert.equal(await cache.alookup("short", "llm"), null);
    assert.deepEqual(await cache.alookup("forever", "llm"), [{ text: "f" }]);
    const { total } = await cache.astats();
    assert.deepEqual([total.hits, total.misses, total.expirations + total.evictions.ttl], [2, 1, 1]);
  });

  it("applies the default TTL, which an update can lift with ttlMs: Infinity", async () => {
    const { cache, advance } = await cacheWith({ defaultTtlMs: 100 });
    await cache.aupdate("default", "llm", [{ text: "d" }]);
    await cache.aupdate("never", "llm", [{ text: "n" }], { ttlMs: Infinity });
    await advance(100);
    assert.equal(await cache.alookup("default", "llm"), null);
    assert.deepEqual(await cache.alookup("never", "llm"), [{ text: "n" }]);
  });

  it("evicts the oldest to stay within the byte budget", async () => {
    const { cache } = await cacheWith({ maxBytes: THREE_ENTRIES });
    for (const key of ["k1", "k2", "k3", "k4"]) await cache.aupdate(key, "llm", kilobyte(key));
    assert.equal(await cache.alookup("k1", "llm"), null);
    assert.deepEqual(await cache.alookup("k4", "llm"), kilobyte("k4"));
    const { total } = await cache.astats();
    assert.equal(total.entries, 3);
    assert.equal(total.evictions.bytes, 1);
    assert.ok(total.bytes <= THREE_ENTRIES, `${total.bytes} accounted bytes`);
  });

  it("refuses an entry larger than the whole budget with EntryTooLargeError, evicting nothing", async () => {
    const { cache } = await cacheWith({ maxBytes: THREE_ENTRIES });
    await cache.aupdate("small", "llm", [{ text: "s" }]);
    await assert.rejects(cache.aupdate("huge", "llm", [{ text: "x".repeat(5000) }]), (error: unknown) => {
      assert.ok(error instanceof EntryTooLargeError, String(error));
      assert.equal(error.code, "RESOURCE_EXHAUSTED");
      assert.match(error.message, new RegExp(`entry too large: \\d+ bytes accounted, more than the cache's byte budget of ${THREE_ENTRIES}$`));
      return true;
    });
    assert.deepEqual(await cache.alookup("small", "llm"), [{ text: "s" }]);
    assert.equal((await cache.astats()).total.evictions.bytes, 0);
  });

  it("keeps namespaces apart, and clears one unless told to clear all", async () => {
    const { cache } = await cacheWith({});
    await cache.aupdate("p", "llm", [{ text: "default" }]);
    await cache.aupdate("p", "llm", [{ text: "team a" }], { namespace: "team-a" });
    await cache.aupdate("p", "llm", [{ text: "team b" }], { namespace: "team-b" });
    assert.deepEqual(await cache.alookup("p", "llm", { namespace: "team-a" }), [{ text: "team a" }]);
    await cache.aclear({ namespace: "team-a" });
    assert.equal(await cache.alookup("p", "llm", { namespace: "team-a" }), null);
    assert.deepEqual(await cache.alookup("p", "llm", { namespace: "team-b" }), [{ text: "team b" }]);
    await cache.aclear();
    assert.equal(await cache.alookup("p", "llm"), null, "clear() clears the default namespace");
    assert.deepEqual(await cache.alookup("p", "llm", { namespace: "team-b" }), [{ text: "team b" }], "and only it");
    await cache.aclear({ allNamespaces: true });
    assert.equal(await cache.alookup("p", "llm", { namespace: "team-b" }), null);
  });

  it("applies a namespace's own limits within it only", async () => {
    const { cache } = await cacheWith({ namespaces: { small: { maxsize: 1 } } });
    await cache.aupdate("1", "llm", [{ text: "1" }], { namespace: "small" });
    await cache.aupdate("2", "llm", [{ text: "2" }], { namespace: "small" });
    await cache.aupdate("1", "llm", [{ text: "other 1" }]);
    await cache.aupdate("2", "llm", [{ text: "other 2" }]);
    assert.equal(await cache.alookup("1", "llm", { namespace: "small" }), null);
    assert.deepEqual(await cache.alookup("2", "llm", { namespace: "small" }), [{ text: "2" }]);
    assert.deepEqual(await cache.alookup("1", "llm"), [{ text: "other 1" }]);
    const { namespaces } = await cache.astats();
    assert.equal(namespaces.small!.evictions.size, 1);
    assert.equal(namespaces[""]!.evictions.size, 0);
  });

  it("bypasses the read when asked, and stores nothing when asked", async () => {
    const { cache } = await cacheWith({});
    await cache.aupdate("p", "llm", [{ text: "stored" }]);
    assert.equal(await cache.alookup("p", "llm", { bypass: true }), null, "a bypass is a miss whatever is stored");
    await cache.aupdate("q", "llm", [{ text: "kept?" }], { noStore: true });
    assert.equal(await cache.alookup("q", "llm"), null);
    assert.equal(await cache.aupdateIfAbsent("q", "llm", [{ text: "x" }], { noStore: true }), false);
    const { total } = await cache.astats();
    assert.deepEqual([total.bypasses, total.hits, total.misses, total.updatesNotStored], [1, 0, 1, 2]);
  });

  it("stores only if absent, and says whether it did", async () => {
    const { cache, advance } = await cacheWith({});
    assert.equal(await cache.aupdateIfAbsent("p", "llm", [{ text: "first" }], { ttlMs: 100 }), true);
    assert.equal(await cache.aupdateIfAbsent("p", "llm", [{ text: "second" }]), false);
    assert.deepEqual(await cache.alookup("p", "llm"), [{ text: "first" }]);
    await advance(100);
    assert.equal(await cache.aupdateIfAbsent("p", "llm", [{ text: "third" }]), true, "an expired entry is absent");
    assert.deepEqual(await cache.alookup("p", "llm"), [{ text: "third" }]);
  });

  it("adds up the statistics of a scripted workload, per namespace and in total", async () => {
    const { cache } = await cacheWith({ maxsize: 2 });
    await cache.aupdate("a", "llm", [{ text: "a" }]);
    await cache.aupdate("b", "llm", [{ text: "b" }], { namespace: "n" });
    await cache.alookup("a", "llm"); // hit
    await cache.alookup("a", "llm"); // hit
    await cache.alookup("b", "llm"); // miss: b is in n
    await cache.alookup("b", "llm", { namespace: "n" }); // hit
    await cache.alookup("a", "llm", { bypass: true }); // bypass
    await cache.aupdate("c", "llm", [{ text: "c" }]); // maxsize 2: a, the oldest, goes
    const { total, namespaces } = await cache.astats();
    assert.deepEqual(
      [total.entries, total.hits, total.misses, total.bypasses, total.hitRatio, total.evictions.size],
      [2, 3, 1, 1, 0.75, 1],
    );
    assert.deepEqual([namespaces[""]!.entries, namespaces[""]!.hits, namespaces[""]!.misses, namespaces[""]!.evictions.size], [1, 2, 1, 1]);
    assert.deepEqual([namespaces.n!.entries, namespaces.n!.hits, namespaces.n!.misses], [1, 1, 0]);
    assert.equal(total.bytes, namespaces[""]!.bytes + namespaces.n!.bytes);
  });

  it("refuses bad options with a TypeError or RangeError naming them", async () => {
    const { cache } = await cacheWith({});
    await assert.rejects(cache.aupdate("p", "llm", [], { ttlMs: 0 }), { name: "RangeError", message: "ttlMs must be greater than 0" });
    await assert.rejects(cache.aupdate("p", "llm", [], { ttlMs: 1.5 }), { name: "TypeError", message: "ttlMs must be an integer, got 1.5" });
    await assert.rejects(cache.alookup("p", "llm", { namespace: 7 as never }), { name: "TypeError", message: "namespace must be a string, got number 7" });
    await assert.rejects(cache.alookup("p", "llm", { bypass: "yes" as never }), { name: "TypeError", message: "bypass must be a boolean, got a string" });
  });

  it("refuses options it does not know, rather than drop a misspelt one and keep its default", async () => {
    const { cache } = await cacheWith({});
    await cache.aupdate("p", "llm", [{ text: "stored" }]);
    await assert.rejects(cache.alookup("p", "llm", { bypas: true } as never), {
      name: "TypeError",
      message: "unknown option bypas (the options are namespace, bypass, lease, timeoutMs, signal)",
    });
    await assert.rejects(cache.aupdate("p", "llm", [], { ttl: 1, nostore: true } as never), {
      name: "TypeError",
      message: "unknown options ttl, nostore (the options are namespace, ttlMs, noStore, leaseToken, timeoutMs, signal)",
    });
    await assert.rejects(cache.aclear({ all: true } as never), { name: "TypeError", message: /^unknown option all \(the options are namespace, allNamespaces, / });
    assert.deepEqual(await cache.alookup("p", "llm", { timeoutMs: 1_000 } as never), [{ text: "stored" }], "the call options every cache takes");
  });

  it("refuses a clear that names a namespace and asks for all of them, clearing nothing", async () => {
    const { cache } = await cacheWith({});
    await cache.aupdate("p", "llm", [{ text: "kept" }], { namespace: "other" });
    await assert.rejects(cache.aclear({ namespace: "mine", allNamespaces: true }), {
      name: "TypeError",
      message: "give either namespace or allNamespaces, not both",
    });
    assert.deepEqual(await cache.alookup("p", "llm", { namespace: "other" }), [{ text: "kept" }]);
    await cache.aclear({ allNamespaces: true });
    assert.equal(await cache.alookup("p", "llm", { namespace: "other" }), null, "allNamespaces alone clears every namespace");
  });
}
