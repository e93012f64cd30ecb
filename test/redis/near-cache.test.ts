import assert from "node:assert/strict";
import { NearCache } from "../../src/redis/near-cache.js";

const value = (text: string) => Buffer.from(text);

/** A near cache on a clock the test moves. */
function nearCache(maxBytes = 1 << 20) {
  const clock = { now: 1_000 };
  return { near: new NearCache(maxBytes, () => clock.now), clock };
}

/** Reads `key` as if Redis answered `answer`, with no change heard meanwhile. */
function read(near: NearCache, key: string, answer: Buffer | null, ttlMs = -1): void {
  near.beginRead(key)(answer, ttlMs);
}

describe("NearCache", () => {
  it("keeps what a read brought back, and serves it until told the key changed", () => {
    const { near } = nearCache();
    assert.equal(near.get("k"), undefined);
    read(near, "k", value("v1"));
    assert.deepEqual(near.get("k"), value("v1"));
    near.invalidate("k");
    assert.equal(near.get("k"), undefined);
    assert.deepEqual(near.counts, { hits: 1, invalidations: 1 });
  });

  it("forgets a key this replica changed at once, counting an invalidation only when Redis reports it", () => {
    const { near } = nearCache();
    read(near, "k", value("v1"));
    const inFlight = near.beginRead("k");
    near.forget("k");
    assert.equal(near.get("k"), undefined);
    inFlight(value("v1"), -1);
    assert.equal(near.get("k"), undefined, "a read begun before the change keeps nothing");
    assert.deepEqual(near.counts, { hits: 0, invalidations: 0 });
    near.invalidate("k");
    assert.deepEqual(near.counts, { hits: 0, invalidations: 1 });
  });

  it("hands over the keys it served since last asked, each once, for the replica to mark used in Redis", () => {
    const { near } = nearCache();
    read(near, "a", value("A"));
    read(near, "b", value("B"));
    assert.deepEqual(near.takeServed(), []);
    near.get("a");
    near.get("a");
    near.get("b");
    near.get("missing");
    assert.deepEqual(near.takeServed().sort(), ["a", "b"]);
    assert.deepEqual(near.takeServed(), []);
  });

  it("keeps nothing for a key Redis does not hold", () => {
    const { near } = nearCache();
    read(near, "k", null);
    assert.equal(near.get("k"), undefined);
    assert.equal(near.size, 0);
  });

  it("keeps a copy, not the buffer Redis's reply lives in", () => {
    const { near } = nearCache();
    const chunk = Buffer.from("xxvalueyy");
    read(near, "k", chunk.subarray(2, 7));
    chunk.fill(0);
    assert.deepEqual(near.get("k"), value("value"));
    assert.equal(near.get("k")!.buffer.byteLength, 5);
  });

  it("does not keep a read during which the key changed: the reply may be the old value", () => {
    const { near } = nearCache();
    const keep = near.beginRead("k");
    near.invalidate("k");
    keep(value("old"), -1);
    assert.equal(near.get("k"), undefined);
  });

  it("does not keep any read that began before everything was dropped", () => {
    const { near } = nearCache();
    const keepA = near.beginRead("a");
    const keepB = near.beginRead("b");
    near.invalidateAll();
    keepA(value("a"), -1);
    keepB(value("b"), -1);
    assert.equal(near.size, 0);
    read(near, "a", value("a2"));
    assert.deepEqual(near.get("a"), value("a2"));
  });

  it("keeps a read of another key when one key changes", () => {
    const { near } = nearCache();
    const keepA = near.beginRead("a");
    near.invalidate("b");
    keepA(value("a"), -1);
    assert.deepEqual(near.get("a"), value("a"));
  });

  it("does not keep either of two overlapping reads of a key that changed while both ran", () => {
    const { near } = nearCache();
    const first = near.beginRead("k");
    const second = near.beginRead("k");
    near.invalidate("k");
    first(value("old"), -1);
    second(value("old?"), -1);
    assert.equal(near.get("k"), undefined);
    // Once both are done, a fresh read is kept again.
    read(near, "k", value("new"));
    assert.deepEqual(near.get("k"), value("new"));
  });

  it("serves nothing and keeps nothing while suspended, and works again once resumed", () => {
    const { near } = nearCache();
    read(near, "k", value("v"));
    const keep = near.beginRead("j");
    near.suspend("probe");
    assert.equal(near.get("k"), undefined);
    keep(value("j"), -1);
    read(near, "k", value("v"));
    assert.equal(near.size, 0);
    near.resume("probe");
    read(near, "k", value("v"));
    assert.deepEqual(near.get("k"), value("v"));
  });

  it("stays suspended until every reason to be has ended", () => {
    const { near } = nearCache();
    near.suspend("probe");
    near.suspend("slot map");
    near.resume("slot map");
    read(near, "k", value("v"));
    assert.equal(near.get("k"), undefined);
    near.resume("probe");
    read(near, "k", value("v"));
    assert.deepEqual(near.get("k"), value("v"));
  });

  it("keeps a read that began after a change, while an older read of the key is still in flight", () => {
    // A hot key under load always has a read in flight: a change must not keep it out for good.
    const { near } = nearCache();
    const older = near.beginRead("k");
    near.invalidate("k");
    const newer = near.beginRead("k");
    older(value("old"), -1);
    assert.equal(near.get("k"), undefined);
    newer(value("new"), -1);
    assert.deepEqual(near.get("k"), value("new"));
  });

  it("does not keep a value whose key was gone by the time its TTL was asked", () => {
    const { near } = nearCache();
    near.beginRead("k")(value("v"), -2);
    assert.equal(near.get("k"), undefined);
  });

  it("stops serving an entry when the TTL Redis gave it runs out", () => {
    const { near, clock } = nearCache();
    read(near, "k", value("v"), 500);
    clock.now += 499;
    assert.deepEqual(near.get("k"), value("v"));
    clock.now += 1;
    assert.equal(near.get("k"), undefined);
    assert.equal(near.size, 0);
  });

  it("counts an entry's time left from when its read began: Redis measured it before the answer came", () => {
    const { near, clock } = nearCache();
    const keep = near.beginRead("k");
    clock.now += 30; // the round trip to Redis
    keep(value("v"), 500);
    clock.now += 469;
    assert.deepEqual(near.get("k"), value("v"));
    clock.now += 1;
    assert.equal(near.get("k"), undefined);
  });

  it("stays within its byte budget, evicting the least recently used", () => {
    const cost = (key: string, bytes: number) => {
      const probe = new NearCache(1 << 20);
      read(probe, key, Buffer.alloc(bytes));
      return probe.bytes;
    };
    const each = cost("k0", 100);
    const { near } = nearCache(each * 3);
    for (const key of ["k0", "k1", "k2"]) read(near, key, Buffer.alloc(100));
    assert.ok(near.get("k0")); // k0 is now the most recently used: k1 goes first.
    read(near, "k3", Buffer.alloc(100));
    assert.equal(near.size, 3);
    assert.ok(near.bytes <= each * 3);
    assert.equal(near.get("k1"), undefined);
    for (const key of ["k0", "k2", "k3"]) assert.ok(near.get(key), key);
  });

  it("keeps nothing larger than its whole budget, and counts a replaced entry once", () => {
    const { near } = nearCache(1_000);
    read(near, "big", Buffer.alloc(1_000));
    assert.equal(near.size, 0);
    read(near, "k", Buffer.alloc(10));
    const once = near.bytes;
    read(near, "k", Buffer.alloc(10));
    assert.equal(near.bytes, once);
    near.invalidateAll();
    assert.equal(near.bytes, 0);
  });

  it("refuses a budget that is not a positive whole number of bytes", () => {
    for (const bad of [0, -1, 1.5, Number.NaN, Infinity]) assert.throws(() => new NearCache(bad), RangeError, String(bad));
  });
});
