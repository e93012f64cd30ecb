import assert from "node:assert/strict";
import { mkdtempSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { CacheStore, type StoredEntry, type StoreOptions } from "../../src/engine/cache-store.js";
import { SegmentIndex } from "../../src/engine/segment-index.js";
import { loadSnapshot, writeSnapshot } from "../../src/server/snapshot.js";
import { fakeClock } from "../helpers/fake-clock.js";

const drain = <V>(store: CacheStore<V>) => {
  const walk = store.walk();
  const seen: StoredEntry<V>[] = [];
  for (let entry = walk.next(); entry; entry = walk.next()) seen.push(entry);
  walk.close();
  return seen;
};

describe("CacheStore.walk", () => {
  it("yields every entry once, in eviction order, with what a snapshot needs", () => {
    const store = new CacheStore<string>({ policy: "lru" });
    store.set("", "a", "m", "A", 10);
    store.set("n", "b", "m", "B", 20, { ttlMs: 5_000 });
    store.set("", "c", "x", "C", 30);
    store.get("", "a", "m"); // lru: a is now the most recent
    const entries = drain(store);
    assert.deepEqual(entries.map((e) => [e.namespace, e.prompt, e.llmString, e.value, e.bytes]), [
      ["n", "b", "m", "B", 20],
      ["", "c", "x", "C", 30],
      ["", "a", "m", "A", 10],
    ]);
    assert.equal(entries[1]!.expiresAt, Infinity);
    assert.ok(Number.isFinite(entries[0]!.expiresAt));
  });

  it("keeps its place while the store changes between steps, never landing on a removed entry", () => {
    const store = new CacheStore<string>({ maxsize: 100 });
    for (let i = 0; i < 10; i++) store.set("", `k${i}`, "m", `v${i}`, 1);
    const walk = store.walk();
    const seen = [walk.next()!.prompt, walk.next()!.prompt]; // k0, k1
    store.clear(""); // removes everything, the walk's next entry included
    for (let entry = walk.next(); entry; entry = walk.next()) seen.push(entry.prompt);
    walk.close();
    assert.deepEqual(seen, ["k0", "k1"], "the rest was cleared before the walk reached it");

    const mixed = new CacheStore<string>({ maxsize: 4 });
    for (let i = 0; i < 4; i++) mixed.set("", `k${i}`, "m", `v${i}`, 1);
    const steps = mixed.walk();
    assert.equal(steps.next()!.prompt, "k0");
    mixed.set("", "k4", "m", "v4", 1); // maxsize 4: k0 goes (already met)
    mixed.set("", "k5", "m", "v5", 1); // and k1, which the walk was about to meet
    const rest: string[] = [];
    for (let entry = steps.next(); entry; entry = steps.next()) rest.push(entry.prompt);
    steps.close();
    assert.deepEqual(rest, ["k2", "k3", "k4", "k5"]);

    const other = new CacheStore<string>();
    for (let i = 0; i < 5; i++) other.set("", `k${i}`, "m", `v${i}`, 1);
    const second = other.walk();
    assert.equal(second.next()!.prompt, "k0");
    other.set("", "k1", "m", "replaced", 1); // fifo: replaced in place
    other.clear(); // everything goes
    assert.equal(second.next(), undefined);
    second.close();
  });
});

describe("snapshots", () => {
  const directory = () => mkdtempSync(join(tmpdir(), "llmcache-snapshot-"));
  /** A store as the server makes one: values as bytes, in segments. */
  const serverStore = (options: StoreOptions = {}) => new CacheStore<Buffer>(options, new SegmentIndex());
  const bytes = (text: string) => Buffer.from(text, "latin1");

  it("round-trips order, namespaces, values, sizes and expiry times, and skips what expired", async () => {
    const clock = fakeClock(Date.now());
    const store = serverStore({ now: clock.now });
    store.set("", "a", "m", bytes("\x00\xff bytes"), 10);
    store.set("team", "b", "m", bytes("B"), 20, { ttlMs: 60_000 });
    store.set("", "short", "m", bytes("S"), 5, { ttlMs: 10 });
    store.set("", "c", "x", bytes("C"), 30, { ttlMs: Infinity });
    const path = join(directory(), "cache.snapshot");
    clock.advance(20); // "short" has expired: not written
    const written = await writeSnapshot(store, path, clock.now);
    assert.equal(written.entries, 3);

    const restored = serverStore({ now: clock.now, maxsize: 3 });
    const loaded = await loadSnapshot(restored, path, clock.now);
    assert.deepEqual(loaded, { kind: "loaded", entries: 3, expired: 0, tooLarge: 0, tooManyNamespaces: 0 });
    assert.deepEqual(drain(restored), drain(store).filter((e) => e.prompt !== "short"));
    restored.set("", "d", "m", bytes("D"), 1); // maxsize 3: the oldest restored entry goes, as it would have
    assert.equal(restored.get("", "a", "m"), undefined);
    clock.advance(60_000);
    assert.equal(restored.get("team", "b", "m"), undefined, "b expires when it would have");
    assert.deepEqual(restored.get("", "c", "x"), bytes("C"));
  });

  it("loads what fits a smaller budget or fewer namespaces, counting what it leaves out", async () => {
    const store = serverStore();
    for (const namespace of ["a", "b", "c", "d"]) store.set(namespace, "p", "m", bytes("v"), 10);
    store.set("a", "big", "m", bytes("B".repeat(4000)), 4000);
    const path = join(directory(), "cache.snapshot");
    await writeSnapshot(store, path);

    // Restarted with --max-namespaces 2 and a byte budget the big entry no longer fits in.
    const restored = serverStore({ maxNamespaces: 2, maxBytes: 3000 });
    const loaded = await loadSnapshot(restored, path);
    assert.deepEqual(loaded, { kind: "loaded", entries: 2, expired: 0, tooLarge: 1, tooManyNamespaces: 2 });
    assert.deepEqual(
      drain(restored).map((entry) => `${entry.namespace}/${entry.prompt}`),
      ["a/p", "b/p"],
    );
  });

  it("loads nothing when there is no file", async () => {
    assert.deepEqual(await loadSnapshot(serverStore(), join(directory(), "none")), { kind: "none" });
  });

  for (const [name, damage, problem] of [
    ["a truncated file", (bytes: Buffer) => bytes.subarray(0, bytes.length - 40), /it was cut short|digest does not match/],
    ["a file with a flipped byte", (bytes: Buffer) => Buffer.from(bytes.map((b, i) => (i === 30 ? b ^ 0xff : b))), /digest does not match|unknown record type/],
    ["a file that is not a snapshot", () => Buffer.from("hello, world\n".repeat(5)), /not an llmcache snapshot/],
    ["an empty file", () => Buffer.alloc(0), /too short/],
    ["a file with bytes after its end", (bytes: Buffer) => Buffer.concat([bytes, Buffer.from("x")]), /bytes after the end record/],
  ] as const) {
    it(`sets aside ${name} and leaves the store empty`, async () => {
      const dir = directory();
      const path = join(dir, "cache.snapshot");
      const store = serverStore();
      for (let i = 0; i < 50; i++) store.set("", `key ${i}`, "m", bytes(`value ${i}`), 10);
      await writeSnapshot(store, path);
      writeFileSync(path, damage(readFileSync(path)));

      const restored = serverStore();
      const loaded = await loadSnapshot(restored, path);
      assert.equal(loaded.kind, "corrupt");
      assert.match((loaded as { problem: string }).problem, problem);
      assert.equal(restored.size, 0);
      assert.deepEqual(readdirSync(dir).map((f) => f.replace(/\d{4}-.*$/, "TIME")), ["cache.snapshot.corrupt-TIME"]);
    });
  }

  it("writes a large store in slices, letting the event loop run between them", async () => {
    const store = serverStore();
    const value = bytes("v".repeat(500));
    for (let i = 0; i < 100_000; i++) store.set("", `prompt number ${i}`.padEnd(200, "."), "m", value, 700);
    // Counted, not timed: how often other work got the event loop while the snapshot was written.
    let turns = 0;
    let writing = true;
    const yielded = () => {
      turns++;
      if (writing) setImmediate(yielded);
    };
    setImmediate(yielded);
    const written = await writeSnapshot(store, join(directory(), "large.snapshot"), Date.now, 1);
    writing = false;
    assert.equal(written.entries, 100_000);
    assert.ok(turns >= 10, `the event loop turned ${turns} times during the write`);
  });
});
