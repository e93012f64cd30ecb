import assert from "node:assert/strict";
import { create, toBinary } from "@bufbuild/protobuf";
import { GenerationSchema, LookupResponseSchema } from "../../gen/llmcache/v1/cache_pb.js";
import { ClientNearCache, localKey, type Grant } from "../../src/client/near-cache.js";

/** A near cache on a clock the test moves. */
function nearCache(maxBytes = 1 << 20) {
  const clock = { now: 1_000 };
  return { near: new ClientNearCache(maxBytes, () => clock.now), clock };
}

/** The grant of a hit holding one generation of `text`, named `serverKey`. */
function grant(serverKey: string, text: string, ttlMs = 0): Grant {
  const response = create(LookupResponseSchema, { hit: true, generations: [create(GenerationSchema, { text })] });
  return { serverKey, ttlMs, response: Buffer.from(toBinary(LookupResponseSchema, response)) };
}

const K = localKey("", "prompt", "llm");

/** A lookup of `key` sent and granted, with nothing heard in between. */
function lookedUp(near: ClientNearCache, key: string, granted: Grant): void {
  near.beginLookup(key).done(granted);
}

describe("ClientNearCache", () => {
  it("keeps a granted hit and answers it until the server names its key", () => {
    const { near } = nearCache();
    assert.equal(near.get(K), undefined);
    lookedUp(near, K, grant("s:k", "v1"));
    assert.deepEqual(near.get(K), [{ text: "v1" }]);
    near.invalidate(["s:other"], false);
    assert.deepEqual(near.get(K), [{ text: "v1" }]);
    near.invalidate(["s:k"], false);
    assert.equal(near.get(K), undefined);
    assert.deepEqual(near.stats, { entries: 0, bytes: 0, hits: 2, invalidations: 2 });
  });

  it("keeps nothing for a lookup without a grant (a miss, or a server that grants none)", () => {
    const { near } = nearCache();
    near.beginLookup(K).done(undefined);
    assert.equal(near.get(K), undefined);
    assert.equal(near.stats.entries, 0);
  });

  it("does not keep a grant overtaken by the server's word that its key changed", () => {
    const { near } = nearCache();
    const ticket = near.beginLookup(K);
    near.invalidate(["s:k"], false);
    ticket.done(grant("s:k", "old"));
    assert.equal(near.get(K), undefined);
  });

  it("does not keep a grant for a lookup sent before this client changed the key", () => {
    const { near } = nearCache();
    const ticket = near.beginLookup(K);
    near.forget(K);
    ticket.done(grant("s:k", "old"));
    assert.equal(near.get(K), undefined);
  });

  it("does not keep a grant for a lookup sent before everything was dropped", () => {
    const { near } = nearCache();
    const ticket = near.beginLookup(K);
    near.forgetAll();
    ticket.done(grant("s:k", "old"));
    assert.equal(near.get(K), undefined);
    const told = near.beginLookup(K);
    near.invalidate([], true);
    told.done(grant("s:k", "old"));
    assert.equal(near.get(K), undefined);
  });

  it("keeps a grant for a lookup sent after the change, while an older lookup of the key is still out", () => {
    const { near } = nearCache();
    const older = near.beginLookup(K);
    near.invalidate(["s:k"], false);
    const newer = near.beginLookup(K);
    newer.done(grant("s:k", "new"));
    older.done(grant("s:k", "old"));
    assert.deepEqual(near.get(K), [{ text: "new" }]);
  });

  it("keeps a grant whose key did not change while another key did", () => {
    const { near } = nearCache();
    const ticket = near.beginLookup(K);
    near.invalidate(["s:other"], false);
    near.forget(localKey("", "other", "llm"));
    ticket.done(grant("s:k", "v1"));
    assert.deepEqual(near.get(K), [{ text: "v1" }]);
  });

  it("stops answering when the time left runs out, counted from when the lookup was sent", () => {
    const { near, clock } = nearCache();
    const ticket = near.beginLookup(K);
    clock.now += 40; // the round trip: the server measured the time left this much later
    ticket.done(grant("s:k", "v1", 100));
    clock.now += 59;
    assert.deepEqual(near.get(K), [{ text: "v1" }]);
    clock.now += 1;
    assert.equal(near.get(K), undefined);
  });

  it("answers new generations at every hit", () => {
    const { near } = nearCache();
    lookedUp(near, K, grant("s:k", "v1"));
    const first = near.get(K)!;
    first[0]!.text = "changed";
    assert.deepEqual(near.get(K), [{ text: "v1" }]);
  });

  it("stays within its byte budget, dropping the least recently used", () => {
    const sample = grant("s:a", "x".repeat(100));
    const perEntry = (() => {
      const { near } = nearCache();
      lookedUp(near, localKey("", "a", "llm"), sample);
      return near.stats.bytes;
    })();
    const { near } = nearCache(perEntry * 2);
    const [a, b, c] = ["a", "b", "c"].map((prompt) => localKey("", prompt, "llm"));
    lookedUp(near, a!, grant("s:a", "x".repeat(100)));
    lookedUp(near, b!, grant("s:b", "x".repeat(100)));
    near.get(a!);
    lookedUp(near, c!, grant("s:c", "x".repeat(100)));
    assert.ok(near.get(a!), "a was used last but one: kept");
    assert.equal(near.get(b!), undefined, "b was least recently used: dropped");
    assert.ok(near.get(c!));
    assert.equal(near.stats.entries, 2);
    assert.ok(near.stats.bytes <= perEntry * 2);
  });

  it("keeps nothing larger than its whole budget, counting the reply's bytes", () => {
    const small = grant("s:k", "x");
    const { near: probe } = nearCache();
    lookedUp(probe, K, small);
    const smallCost = probe.stats.bytes;
    const { near } = nearCache(smallCost + 50);
    lookedUp(near, K, grant("s:k", "x".repeat(100)));
    assert.equal(near.get(K), undefined, "100 bytes more than the small one: over the budget");
    lookedUp(near, K, small);
    assert.deepEqual(near.get(K), [{ text: "x" }]);
  });

  it("tells pairs apart whatever characters their strings hold", () => {
    assert.notEqual(localKey("", "ab", "c"), localKey("", "a", "bc"));
    assert.notEqual(localKey("a", "b", "c"), localKey("", "ab", "c"));
    assert.notEqual(localKey("1:a", "", ""), localKey("", "a", ""));
  });
});

describe("ClientNearCache under steady load", () => {
  it("keeps its log of changes bounded while some lookup is always out, and still refuses the grants changes overtook", () => {
    const { near } = nearCache();
    let out = near.beginLookup(localKey("", "first", "llm"));
    for (let i = 0; i < 100_000; i++) {
      // A new lookup goes out before the last settles: never none out.
      const next = near.beginLookup(localKey("", `p${i}`, "llm"));
      near.invalidate([`s:${i}`], false);
      out.done(undefined);
      out = next;
    }
    assert.ok(near.changesLogged <= 2_048, `${near.changesLogged} changes logged`);
    const overtaken = near.beginLookup(K);
    near.invalidate(["s:k"], false);
    for (let i = 0; i < 5_000; i++) near.invalidate([`s:more-${i}`], false);
    overtaken.done(grant("s:k", "old"));
    assert.equal(near.get(K), undefined, "pruning kept what the lookup still out needed");
    out.done(undefined);
    assert.equal(near.changesLogged, 0, "emptied once no lookup is out");
  });
});

describe("ClientNearCache with one lookup out for long (a lease's wait)", () => {
  it("gives its change log up past a bound, refusing that lookup's grant and dropping nothing kept", () => {
    const { near } = nearCache();
    const kept = localKey("", "kept", "llm");
    lookedUp(near, kept, grant("s:kept", "v1"));
    const waiting = near.beginLookup(K);
    let most = 0;
    for (let i = 0; i < 200_000; i++) {
      near.invalidate([`s:${i}`], false);
      most = Math.max(most, near.changesLogged);
    }
    assert.ok(most <= 65_536, `${most} changes logged at most`);
    waiting.done(grant("s:k", "granted after all those changes"));
    assert.equal(near.get(K), undefined, "its changes were given up: the grant is refused");
    assert.deepEqual(near.get(kept), [{ text: "v1" }], "what was kept stays");
  });
});
