import assert from "node:assert/strict";
import { CacheStore, type StoreOptions } from "../../src/engine/cache-store.js";
import { EntryTooLargeError } from "../../src/engine/entry-too-large-error.js";
import { ENTRY_OVERHEAD_BYTES, GROUP_OVERHEAD_BYTES, IDLE_NAMESPACES_KEPT, NAMESPACE_OVERHEAD_BYTES } from "../../src/engine/limits.js";
import { newLeaseStats } from "../../src/engine/stats.js";
import { fakeClock } from "../helpers/fake-clock.js";

/** Bytes that make an entry's accounted size exactly `accounted`. */
const sized = (accounted: number) => accounted - ENTRY_OVERHEAD_BYTES;
const ENTRY = 300; // the accounted size of most entries below
/** What a namespace's record and one group cost on top of the entries: every entry below shares the llm_string "llm". */
const STRUCTURE = (namespace = "") => NAMESPACE_OVERHEAD_BYTES + namespace.length + GROUP_OVERHEAD_BYTES;

function storeWith(options: StoreOptions = {}) {
  const clock = fakeClock();
  const store = new CacheStore<string>({ now: clock.now, ...options });
  const set = (key: string, options: { namespace?: string; accounted?: number; ttlMs?: number; onlyIfAbsent?: boolean } = {}) =>
    store.set(options.namespace ?? "", key, "llm", `value of ${key}`, sized(options.accounted ?? ENTRY), options);
  const get = (key: string, namespace = "") => store.get(namespace, key, "llm");
  return { store, clock, set, get };
}

describe("CacheStore", () => {
  describe("eviction policy", () => {
    it("lru evicts the least recently used: a lookup refreshes an entry", () => {
      const { set, get } = storeWith({ maxsize: 2, policy: "lru" });
      set("a");
      set("b");
      assert.equal(get("a"), "value of a");
      set("c");
      assert.equal(get("b"), undefined, "b was the least recently used");
      assert.equal(get("a"), "value of a");
      assert.equal(get("c"), "value of c");
    });

    it("lru refreshes an entry on update, fifo keeps its place", () => {
      for (const [policy, survivor, evicted] of [["lru", "a", "b"], ["fifo", "b", "a"]] as const) {
        const { set, get } = storeWith({ maxsize: 2, policy });
        set("a");
        set("b");
        set("a");
        set("c");
        assert.equal(get(evicted), undefined, `${policy}: ${evicted} goes`);
        assert.equal(get(survivor), `value of ${survivor}`, `${policy}: ${survivor} stays`);
      }
    });
  });

  describe("byte budget", () => {
    it("evicts the oldest until the new entry fits, counted as byte evictions", () => {
      const { store, set, get } = storeWith({ maxBytes: 3 * ENTRY + STRUCTURE() });
      set("a");
      set("b");
      set("c");
      set("d", { accounted: 2 * ENTRY });
      assert.deepEqual([get("a"), get("b"), get("c"), get("d")], [undefined, undefined, "value of c", "value of d"]);
      const { total } = store.stats();
      assert.equal(total.bytes, 3 * ENTRY + STRUCTURE());
      assert.deepEqual(total.evictions, { size: 0, bytes: 2, ttl: 0 });
    });

    it("refuses an entry larger than the whole budget, storing and evicting nothing", () => {
      const { store, set, get } = storeWith({ maxBytes: 1000 + STRUCTURE() });
      set("a");
      assert.throws(() => set("huge", { accounted: 1001 }), (error: unknown) => {
        assert.ok(error instanceof EntryTooLargeError);
        assert.equal(
          error.message,
          `entry too large: ${1001 + STRUCTURE()} bytes accounted, more than the cache's byte budget of ${1000 + STRUCTURE()}`,
          "the entry with a group and a namespace record of its own",
        );
        assert.equal(error.code, "RESOURCE_EXHAUSTED");
        return true;
      });
      assert.equal(get("huge"), undefined);
      assert.equal(get("a"), "value of a");
      assert.deepEqual(store.stats().total.evictions, { size: 0, bytes: 0, ttl: 0 });
      set("exact", { accounted: 1000 });
      assert.equal(get("exact"), "value of exact", "an entry the size of the budget fits, alone");
    });

    it("makes room for a replacement that grew by evicting others, never the entry itself", () => {
      const { set, get } = storeWith({ maxBytes: 3 * ENTRY + STRUCTURE() });
      set("a");
      set("b");
      set("c");
      set("a", { accounted: 2 * ENTRY }); // a is the oldest inserted and keeps its place
      assert.deepEqual([get("a"), get("b"), get("c")], ["value of a", undefined, "value of c"]);
    });

    it("applies maxsize and maxBytes together, whichever binds first", () => {
      const { store, set, get } = storeWith({ maxsize: 3, maxBytes: 4 * ENTRY + STRUCTURE() });
      for (const key of ["a", "b", "c", "d"]) set(key);
      assert.deepEqual(store.stats().total.evictions, { size: 1, bytes: 0, ttl: 0 }, "a went for the count");
      set("big", { accounted: 3 * ENTRY });
      // b goes for the count (4 > 3), then c for the bytes (c, d and big are 5 entries' worth).
      assert.deepEqual(store.stats().total.evictions, { size: 2, bytes: 1, ttl: 0 });
      assert.deepEqual([get("b"), get("c"), get("d"), get("big")], [undefined, undefined, "value of d", "value of big"]);
    });
  });

  describe("time to live", () => {
    it("never returns an expired entry: the lookup is a miss and an expiration", () => {
      const { store, clock, set, get } = storeWith();
      set("a", { ttlMs: 100 });
      clock.advance(99);
      assert.equal(get("a"), "value of a");
      clock.advance(1);
      assert.equal(get("a"), undefined);
      const { total } = store.stats();
      assert.deepEqual([total.hits, total.misses, total.expirations, total.entries], [1, 1, 1, 0]);
    });

    it("takes the TTL of the update, else the namespace's default, else the store's; Infinity never expires", () => {
      const { clock, set, get } = storeWith({ defaultTtlMs: 100, namespaces: { short: { defaultTtlMs: 10 } } });
      set("store default");
      set("own", { ttlMs: 1000 });
      set("never", { ttlMs: Infinity });
      set("namespace default", { namespace: "short" });
      clock.advance(10);
      assert.equal(get("namespace default", "short"), undefined);
      assert.equal(get("store default"), "value of store default");
      clock.advance(90);
      assert.equal(get("store default"), undefined);
      assert.equal(get("own"), "value of own");
      clock.advance(10_000_000);
      assert.equal(get("own"), undefined);
      assert.equal(get("never"), "value of never");
    });

    it("treats an expired pair as absent for a conditional update, and counts it as a ttl eviction", () => {
      const { store, clock, set, get } = storeWith();
      set("a", { ttlMs: 50 });
      assert.equal(set("a", { onlyIfAbsent: true }), false, "present: not stored");
      clock.advance(50);
      assert.equal(set("a", { onlyIfAbsent: true }), true, "expired: stored");
      assert.equal(get("a"), "value of a");
      assert.equal(store.stats().total.evictions.ttl, 1);
      assert.equal(store.stats().total.updatesNotStored, 1);
    });

    it("counts an expired entry evicted to make room as a ttl eviction", () => {
      const { store, clock, set } = storeWith({ maxsize: 2 });
      set("a", { ttlMs: 10 });
      set("b");
      clock.advance(10);
      set("c");
      assert.deepEqual(store.stats().total.evictions, { size: 0, bytes: 0, ttl: 1 });
    });

    it("reclaims expired entries a bounded number of checks at a time, and never a live one", () => {
      const { store, clock, set, get } = storeWith();
      for (let i = 0; i < 1000; i++) set(`short ${i}`, { ttlMs: 10 });
      for (let i = 0; i < 10; i++) set(`long ${i}`, { ttlMs: 1_000_000 });
      clock.advance(10);
      const first = store.reclaimExpired(64);
      assert.ok(first > 0 && first <= 64, `one call removed ${first}`);
      let rounds = 1;
      while (store.size > 10 && rounds < 10_000) {
        store.reclaimExpired(64);
        rounds++;
      }
      assert.equal(store.size, 10, `all expired gone after ${rounds} calls`);
      for (let i = 0; i < 10; i++) assert.equal(get(`long ${i}`), `value of long ${i}`);
      assert.equal(store.stats().total.evictions.ttl, 1000);
    });

    it("finds expired entries among many older ones that never expire, at the reclaimer's pace", () => {
      const { store, clock, set, get } = storeWith();
      for (let i = 0; i < 20_000; i++) set(`forever ${i}`);
      for (let i = 0; i < 5_000; i++) set(`short ${i}`, { ttlMs: 10 });
      set("made permanent", { ttlMs: 10 });
      set("made permanent", { ttlMs: Infinity });
      clock.advance(10);
      // The reclaimer goes on to another round while a round removes a quarter of its checks.
      const removed: number[] = [];
      while (store.size > 20_001) removed.push(store.reclaimExpired(64));
      assert.ok(
        removed.every((count, call) => count >= 16 || call === removed.length - 1),
        `removed per call: ${removed.slice(0, 10).join(", ")}...`,
      );
      assert.ok(removed.length <= 5_000 / 16, `${removed.length} calls for 5,000 expired entries`);
      assert.equal(get("made permanent"), "value of made permanent");
      assert.equal(get("forever 0"), "value of forever 0");
      assert.equal(store.stats().total.evictions.ttl, 5_000);
      store.clear();
      set("after a clear", { ttlMs: 10 });
      clock.advance(10);
      assert.equal(store.reclaimExpired(64), 1);
    });
  });

  describe("namespaces", () => {
    it("keeps the same pair in two namespaces apart", () => {
      const { store } = storeWith();
      store.set("team-a", "p", "llm", "A", 10);
      store.set("team-b", "p", "llm", "B", 10);
      assert.equal(store.get("team-a", "p", "llm"), "A");
      assert.equal(store.get("team-b", "p", "llm"), "B");
      assert.equal(store.get("", "p", "llm"), undefined);
    });

    it("clears one namespace, or all; the counters stay", () => {
      const { store } = storeWith();
      for (const namespace of ["", "a", "b"]) store.set(namespace, "p", "llm", namespace, 10);
      assert.equal(store.get("a", "p", "llm"), "a");
      store.clear("a");
      assert.deepEqual(["", "a", "b"].map((namespace) => store.get(namespace, "p", "llm")), ["", undefined, "b"]);
      store.clear();
      assert.equal(store.size, 0);
      assert.deepEqual(["", "a", "b"].map((namespace) => store.get(namespace, "p", "llm")), [undefined, undefined, undefined]);
      assert.equal(store.stats().namespaces.a!.hits, 1, "a's hit from before the clears");
    });

    it("evicts within a namespace for its own limit, and the oldest anywhere for the store's", () => {
      const { store } = storeWith({ maxsize: 4, namespaces: { small: { maxsize: 2 } } });
      store.set("", "g1", "llm", "g1", 10);
      store.set("small", "s1", "llm", "s1", 10);
      store.set("small", "s2", "llm", "s2", 10);
      store.set("small", "s3", "llm", "s3", 10); // small is full: its own oldest goes
      assert.equal(store.get("small", "s1", "llm"), undefined);
      assert.equal(store.get("", "g1", "llm"), "g1");
      store.set("", "g2", "llm", "g2", 10);
      store.set("", "g3", "llm", "g3", 10); // the store is full (4): the oldest anywhere goes
      assert.equal(store.get("", "g1", "llm"), undefined);
      assert.equal(store.get("small", "s2", "llm"), "s2");
      assert.deepEqual(
        [store.stats().namespaces.small!.evictions.size, store.stats().namespaces[""]!.evictions.size],
        [1, 1],
      );
    });

    it("refuses the first entry of a namespace past maxNamespaces, storing and evicting nothing, until one empties", () => {
      const { store } = storeWith({ maxNamespaces: 2, maxsize: 10 });
      store.set("a", "p", "llm", "A", 10);
      store.set("b", "p", "llm", "B", 10);
      assert.throws(() => store.set("c", "p", "llm", "C", 10), { name: "TooManyNamespacesError", message: "too many namespaces: 2 namespaces hold entries, the most allowed" });
      store.set("a", "q", "llm", "A2", 10); // a namespace already holding entries takes more
      assert.doesNotThrow(() => store.checkNamespacesFit(["a", "b", "a"]), "namespaces that hold entries take more");
      assert.throws(() => store.checkNamespacesFit(["a", "c"]), { name: "TooManyNamespacesError" });
      assert.deepEqual([store.size, store.total().evictions.size], [3, 0]);
      store.clear("b");
      store.set("c", "p", "llm", "C", 10);
      assert.equal(store.get("c", "p", "llm"), "C");
    });

    it("keeps the records of at most IDLE_NAMESPACES_KEPT namespaces that hold nothing, the least recently used going first, their counts kept in the total", () => {
      const { store } = storeWith({ namespaces: { configured: { maxsize: 5 } } });
      store.set("held", "p", "llm", "v", 10);
      for (let i = 0; i < IDLE_NAMESPACES_KEPT + 500; i++) store.get(`looked-up-${i}`, "p", "llm");
      const { total, namespaces, namespacesNotListed } = store.stats(Infinity);
      assert.equal(namespacesNotListed, 0);
      assert.equal(Object.keys(namespaces).length, IDLE_NAMESPACES_KEPT + 2, "the idle ones, the one holding an entry, the configured one");
      assert.ok(namespaces.held && namespaces.configured && namespaces[`looked-up-${IDLE_NAMESPACES_KEPT + 499}`]);
      assert.equal(namespaces["looked-up-0"], undefined);
      assert.equal(total.misses, IDLE_NAMESPACES_KEPT + 500);
      assert.equal(store.stats(10).namespacesNotListed, IDLE_NAMESPACES_KEPT + 2 - 10);
    });

    it("keeps the record of a new namespace whose first entry evicts the entries of more than IDLE_NAMESPACES_KEPT others", () => {
      // Every small entry in a namespace of its own: making room for the big
      // one empties more namespaces than are kept idle, while the big one's
      // own namespace is still idle itself.
      const small = ENTRY + STRUCTURE("ns-0000");
      const count = IDLE_NAMESPACES_KEPT + 200;
      const { store, get } = storeWith({ maxBytes: count * small });
      for (let i = 0; i < count; i++) store.set(`ns-${String(i).padStart(4, "0")}`, "p", "llm", `v${i}`, sized(ENTRY));
      assert.equal(store.size, count);
      assert.equal(store.set("big", "p", "llm", "the big one", sized((IDLE_NAMESPACES_KEPT + 100) * small)), true);
      assert.equal(get("p", "big"), "the big one");
      assert.equal(store.stats(Infinity).namespaces.big?.entries, 1);
      // Its record is the one its entry points to: evicting the entry, and a new namespace, work as for any other.
      assert.equal(store.set("after", "p", "llm", "after", sized(count * small - STRUCTURE("after"))), true);
      assert.equal(get("p", "big"), undefined);
      assert.equal(get("p", "after"), "after");
      assert.equal(store.stats(Infinity).namespaces.big?.entries ?? 0, 0);
    });

    it("keeps the record of a namespace emptied by making room for its own new entry, when more than IDLE_NAMESPACES_KEPT others are emptied too", () => {
      const small = ENTRY + STRUCTURE("ns-0000");
      const count = IDLE_NAMESPACES_KEPT + 200;
      const { store, get } = storeWith({ maxBytes: (count + 1) * small });
      store.set("own", "first", "llm", "first", sized(ENTRY)); // the oldest entry: the first to go
      for (let i = 0; i < count; i++) store.set(`ns-${String(i).padStart(4, "0")}`, "p", "llm", `v${i}`, sized(ENTRY));
      assert.equal(store.set("own", "second", "llm", "the big one", sized((IDLE_NAMESPACES_KEPT + 100) * small)), true);
      assert.equal(get("first", "own"), undefined);
      assert.equal(get("second", "own"), "the big one");
      assert.equal(store.stats(Infinity).namespaces.own?.entries, 1);
    });

    it("refuses an entry larger than a namespace's budget, naming the namespace", () => {
      const { store } = storeWith({ namespaces: { tiny: { maxBytes: 500 + STRUCTURE("tiny") } } });
      assert.throws(() => store.set("tiny", "p", "llm", "x", sized(501)), {
        name: "EntryTooLargeError",
        message: `entry too large: ${501 + STRUCTURE("tiny")} bytes accounted, more than the byte budget of namespace "tiny" of ${500 + STRUCTURE("tiny")}`,
      });
      assert.equal(store.set("", "p", "llm", "x", sized(501)), true, "other namespaces have no such budget");
    });
  });

  it("adds up the statistics of a scripted workload", () => {
    const { store, clock } = storeWith({ maxsize: 3 });
    store.set("", "a", "m", "A", sized(250)); // +1 entry
    store.set("", "b", "m", "B", sized(250), { ttlMs: 100 });
    store.set("n", "c", "m", "C", sized(400));
    store.get("", "a", "m"); // hit
    store.get("", "a", "m"); // hit
    store.get("", "zzz", "m"); // miss
    store.get("n", "c", "m"); // hit
    store.bypass("");
    store.skipStore("n");
    store.set("", "a", "m", "A2", sized(250), { onlyIfAbsent: true }); // not stored
    clock.advance(100);
    store.get("", "b", "m"); // miss + expiration
    store.set("", "d", "m", "D", sized(250));
    store.set("", "e", "m", "E", sized(250)); // maxsize 3: evicts a (oldest), a size eviction
    store.countLease("n", "granted");
    store.countLease("", "staleFillsRefused"); // an update not stored, too
    const { total, namespaces } = store.stats();
    assert.deepEqual(namespaces[""], {
      entries: 2,
      bytes: 500 + STRUCTURE(),
      hits: 2,
      misses: 2,
      bypasses: 1,
      hitRatio: 0.5,
      evictions: { size: 1, bytes: 0, ttl: 0 },
      expirations: 1,
      updatesNotStored: 2,
      leases: { ...newLeaseStats(), staleFillsRefused: 1 },
    });
    assert.deepEqual(namespaces.n, {
      entries: 1,
      bytes: 400 + STRUCTURE("n"),
      hits: 1,
      misses: 0,
      bypasses: 0,
      hitRatio: 1,
      evictions: { size: 0, bytes: 0, ttl: 0 },
      expirations: 0,
      updatesNotStored: 1,
      leases: { ...newLeaseStats(), granted: 1 },
    });
    assert.deepEqual(total, {
      entries: 3,
      bytes: 900 + STRUCTURE() + STRUCTURE("n"),
      hits: 3,
      misses: 2,
      bypasses: 1,
      hitRatio: 0.6,
      evictions: { size: 1, bytes: 0, ttl: 0 },
      expirations: 1,
      updatesNotStored: 3,
      leases: { ...newLeaseStats(), granted: 1, staleFillsRefused: 1 },
    });
  });

  describe("refuses bad options with a message that names them", () => {
    const cases: [string, () => unknown, string, string][] = [
      ["maxBytes 0", () => new CacheStore({ maxBytes: 0 }), "RangeError", "maxBytes must be greater than 0"],
      ["maxNamespaces 0", () => new CacheStore({ maxNamespaces: 0 }), "RangeError", "maxNamespaces must be greater than 0"],
      ["maxBytes 1.5", () => new CacheStore({ maxBytes: 1.5 }), "TypeError", "maxBytes must be an integer, got 1.5"],
      ["defaultTtlMs -1", () => new CacheStore({ defaultTtlMs: -1 }), "RangeError", "defaultTtlMs must be greater than 0"],
      ["policy lfu", () => new CacheStore({ policy: "lfu" as never }), "TypeError", 'policy must be "fifo" or "lru", got "lfu"'],
      ["a namespace maxsize 0", () => new CacheStore({ namespaces: { a: { maxsize: 0 } } }), "RangeError", 'namespaces["a"].maxsize must be greater than 0'],
      ["a ttl of 0", () => new CacheStore().set("", "p", "l", "v", 1, { ttlMs: 0 }), "RangeError", "ttlMs must be greater than 0"],
    ];
    for (const [name, make, errorName, message] of cases) {
      it(`refuses ${name}`, () => assert.throws(make, { name: errorName, message }));
    }
  });
});
