import assert from "node:assert/strict";
import fc from "fast-check";
import { CacheStore, type StoreOptions } from "../../src/engine/cache-store.js";
import { HeapIndex } from "../../src/engine/entry-index.js";
import { SegmentIndex } from "../../src/engine/segment-index.js";
import { EntryTooLargeError } from "../../src/engine/entry-too-large-error.js";
import { ENTRY_OVERHEAD_BYTES, GROUP_OVERHEAD_BYTES, NAMESPACE_OVERHEAD_BYTES, type EvictionPolicy } from "../../src/engine/limits.js";
import { newCounters, toStats, type CacheStats, type Counters } from "../../src/engine/stats.js";
import { fakeClock } from "../helpers/fake-clock.js";

/**
 * The store against a reference model: the same limits and policies written
 * the plainest way, one array in eviction order, searched from the front.
 * fast-check drives both with random operations under every policy and
 * combination of limits, and they must agree on every answer and every
 * statistic after every step.
 */

interface ModelLimits {
  maxsize?: number;
  maxBytes?: number;
  defaultTtlMs?: number;
}

interface ModelEntry {
  namespace: string;
  prompt: string;
  llmString: string;
  value: string;
  size: number;
  expiresAt: number;
}

class ModelStore {
  readonly entries: ModelEntry[] = []; // eviction order: the front goes first
  readonly counters = new Map<string, Counters>();

  constructor(
    readonly policy: EvictionPolicy,
    readonly limits: ModelLimits,
    readonly namespaceLimits: Record<string, ModelLimits>,
    readonly now: () => number,
  ) {
    for (const name of Object.keys(namespaceLimits)) this.count(name);
  }

  count(namespace: string): Counters {
    if (!this.counters.has(namespace)) this.counters.set(namespace, newCounters());
    return this.counters.get(namespace)!;
  }

  find(namespace: string, prompt: string, llmString: string): number {
    return this.entries.findIndex((e) => e.namespace === namespace && e.prompt === prompt && e.llmString === llmString);
  }

  expired(entry: ModelEntry): boolean {
    return entry.expiresAt <= this.now();
  }

  remove(index: number, counter: keyof Counters | undefined): void {
    const [entry] = this.entries.splice(index, 1);
    if (counter) this.count(entry!.namespace)[counter]++;
  }

  get(namespace: string, prompt: string, llmString: string): string | undefined {
    const counters = this.count(namespace);
    const index = this.find(namespace, prompt, llmString);
    if (index < 0) {
      counters.misses++;
      return undefined;
    }
    const entry = this.entries[index]!;
    if (this.expired(entry)) {
      this.remove(index, "expirations");
      counters.misses++;
      return undefined;
    }
    counters.hits++;
    if (this.policy === "lru") this.entries.push(...this.entries.splice(index, 1));
    return entry.value;
  }

  set(namespace: string, prompt: string, llmString: string, value: string, bytes: number, ttlMs: number | undefined, onlyIfAbsent: boolean): boolean {
    this.count(namespace);
    const own = this.namespaceLimits[namespace] ?? {};
    let index = this.find(namespace, prompt, llmString);
    if (index >= 0 && this.expired(this.entries[index]!)) {
      this.remove(index, "evictedTtl");
      index = -1;
    }
    if (index >= 0 && onlyIfAbsent) {
      this.count(namespace).updatesNotStored++;
      return false;
    }
    const size = bytes + ENTRY_OVERHEAD_BYTES;
    const alone = size + GROUP_OVERHEAD_BYTES + NAMESPACE_OVERHEAD_BYTES + namespace.length;
    if ((own.maxBytes !== undefined && alone > own.maxBytes) || (this.limits.maxBytes !== undefined && alone > this.limits.maxBytes)) {
      throw new EntryTooLargeError("too large");
    }
    const ttl = ttlMs ?? own.defaultTtlMs ?? this.limits.defaultTtlMs ?? Infinity;
    const entry = { namespace, prompt, llmString, value, size, expiresAt: ttl === Infinity ? Infinity : this.now() + ttl };
    if (index >= 0) {
      this.entries[index] = entry;
      if (this.policy === "lru") this.entries.push(...this.entries.splice(index, 1));
      this.makeRoom(namespace, 0, 0, entry);
      return true;
    }
    // What the entry adds: itself, and its group and namespace record if it is their first.
    const added = () => this.bytesOf([...this.entries, entry]) - this.bytesOf(this.entries);
    for (let needed = 0; added() > needed; ) {
      needed = added();
      this.makeRoom(namespace, 1, needed, undefined);
    }
    this.entries.push(entry);
    return true;
  }

  /** Accounted bytes of some entries: theirs, each distinct llm_string's group, each namespace's record. */
  bytesOf(entries: ModelEntry[]): number {
    const groups = new Set(entries.map((e) => JSON.stringify([e.namespace, e.llmString])));
    const namespaces = new Set(entries.map((e) => e.namespace));
    return (
      entries.reduce((total, e) => total + e.size, 0) +
      groups.size * GROUP_OVERHEAD_BYTES +
      [...namespaces].reduce((total, name) => total + NAMESPACE_OVERHEAD_BYTES + name.length, 0)
    );
  }

  makeRoom(namespace: string, entries: number, bytes: number, keep: ModelEntry | undefined): void {
    const own = this.namespaceLimits[namespace] ?? {};
    for (;;) {
      const inNamespace = this.entries.filter((e) => e.namespace === namespace);
      const sum = (list: ModelEntry[]) => this.bytesOf(list);
      let scope: ModelEntry[];
      let counter: keyof Counters;
      if (own.maxsize !== undefined && inNamespace.length + entries > own.maxsize) [scope, counter] = [inNamespace, "evictedSize"];
      else if (own.maxBytes !== undefined && sum(inNamespace) + bytes > own.maxBytes) [scope, counter] = [inNamespace, "evictedBytes"];
      else if (this.limits.maxsize !== undefined && this.entries.length + entries > this.limits.maxsize) [scope, counter] = [this.entries, "evictedSize"];
      else if (this.limits.maxBytes !== undefined && sum(this.entries) + bytes > this.limits.maxBytes) [scope, counter] = [this.entries, "evictedBytes"];
      else return;
      const victim = scope.find((e) => e !== keep);
      if (!victim) return;
      this.remove(this.entries.indexOf(victim), this.expired(victim) ? "evictedTtl" : counter);
    }
  }

  clear(namespace: string | undefined): void {
    for (let i = this.entries.length - 1; i >= 0; i--) {
      if (namespace === undefined || this.entries[i]!.namespace === namespace) this.entries.splice(i, 1);
    }
  }

  stats() {
    const namespaces: Record<string, ReturnType<typeof toStats>> = {};
    for (const [name, counters] of this.counters) {
      const held = this.entries.filter((e) => e.namespace === name);
      namespaces[name] = toStats(held.length, this.bytesOf(held), counters);
    }
    return namespaces;
  }
}

type Command =
  | { kind: "set"; namespace: string; prompt: string; llmString: string; bytes: number; valueLength: number; ttlMs: number | undefined; onlyIfAbsent: boolean }
  | { kind: "get"; namespace: string; prompt: string; llmString: string }
  | { kind: "advance"; ms: number }
  | { kind: "clear"; namespace: string | undefined }
  | { kind: "bypass"; namespace: string };

/**
 * Segments small enough to be filled, emptied and compacted in a few steps.
 * A shared one takes records up to 64 bytes (a quarter of it): with a
 * two-character prompt and the 8-byte header, values up to 54 bytes.
 */
const SMALL_SEGMENTS = { segmentBytes: 256, minDeadBytes: 0 };
/** Empty values, values on both sides of the largest record a shared segment takes, and values that need a segment of their own. */
const VALUE_LENGTHS = fc.constantFrom(0, 1, 20, 53, 54, 55, 120, 1000);
const namespaceArbitrary = fc.constantFrom("", "a");
const keyArbitrary = { namespace: namespaceArbitrary, prompt: fc.constantFrom("p0", "p1", "p2"), llmString: fc.constantFrom("m0", "m1", "n1") };
const commandArbitrary: fc.Arbitrary<Command> = fc.oneof(
  { weight: 5, arbitrary: fc.record({ kind: fc.constant("set" as const), ...keyArbitrary, bytes: fc.constantFrom(10, 100, 400, 900), valueLength: VALUE_LENGTHS, ttlMs: fc.constantFrom(undefined, 50, 200, Infinity), onlyIfAbsent: fc.boolean() }) },
  { weight: 5, arbitrary: fc.record({ kind: fc.constant("get" as const), ...keyArbitrary }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant("advance" as const), ms: fc.integer({ min: 0, max: 150 }) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant("clear" as const), namespace: fc.constantFrom(undefined, "", "a") }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant("bypass" as const), namespace: namespaceArbitrary }) },
);
const limitsArbitrary = fc.record(
  {
    maxsize: fc.integer({ min: 1, max: 6 }),
    maxBytes: fc.integer({ min: 600, max: 3000 }),
    defaultTtlMs: fc.constantFrom(30, 100),
  },
  { requiredKeys: [] },
);

/** The store's operations the test drives, with values as the model's strings. */
type StoreUnderTest = Pick<CacheStore<string>, "set" | "get" | "clear" | "bypass" | "stats">;

/** The store with each index it can keep its entries in; the segment index holds values as bytes, so they are converted. */
const STORES: Record<string, (options: StoreOptions) => StoreUnderTest> = {
  "the heap index": (options) => new CacheStore<string>(options, new HeapIndex<string>()),
  "the segment index": (options) => {
    const store = new CacheStore<Buffer>(options, new SegmentIndex(SMALL_SEGMENTS));
    return {
      set: (namespace, prompt, llmString, value, bytes, setOptions) => store.set(namespace, prompt, llmString, Buffer.from(value, "latin1"), bytes, setOptions),
      get: (namespace, prompt, llmString) => store.get(namespace, prompt, llmString)?.toString("latin1"),
      clear: (namespace) => store.clear(namespace),
      bypass: (namespace) => store.bypass(namespace),
      stats: (listed) => store.stats(listed),
    };
  },
};

/** A value of `length` bytes held as latin1, every byte value possible, different at each step. */
function valueOf(step: number, length: number): string {
  let value = "";
  for (let i = 0; i < length; i++) value += String.fromCharCode((step * 31 + i * 7) & 0xff);
  return value;
}

describe("CacheStore against a reference model", function () {
  this.timeout(60_000);

  for (const [indexName, makeStore] of Object.entries(STORES)) {
    for (const policy of ["fifo", "lru"] as const) {
      it(`agrees on every answer and statistic under ${policy}, with random limits, TTLs and namespaces, in ${indexName}`, () => {
        fc.assert(
          fc.property(limitsArbitrary, fc.option(limitsArbitrary, { nil: undefined }), fc.array(commandArbitrary, { minLength: 20, maxLength: 80 }), (limits, namespaceA, commands) => {
            const clock = fakeClock();
            const namespaces: Record<string, ModelLimits> = namespaceA ? { a: namespaceA } : {};
            const options: StoreOptions = { ...limits, policy, namespaces, now: clock.now };
            const store = makeStore(options);
            const model = new ModelStore(policy, limits, namespaces, clock.now);
            commands.forEach((command, step) => {
              const where = `step ${step}: ${JSON.stringify(command)}`;
              switch (command.kind) {
                case "set": {
                  const value = valueOf(step, command.valueLength);
                  const run = (target: StoreUnderTest | ModelStore) => {
                    try {
                      return !(target instanceof ModelStore)
                        ? target.set(command.namespace, command.prompt, command.llmString, value, command.bytes, { ttlMs: command.ttlMs, onlyIfAbsent: command.onlyIfAbsent })
                        : target.set(command.namespace, command.prompt, command.llmString, value, command.bytes, command.ttlMs, command.onlyIfAbsent);
                    } catch (error) {
                      assert.ok(error instanceof EntryTooLargeError, `${where}: ${error}`);
                      return "too large";
                    }
                  };
                  assert.equal(run(store), run(model), where);
                  break;
                }
                case "get":
                  assert.equal(store.get(command.namespace, command.prompt, command.llmString), model.get(command.namespace, command.prompt, command.llmString), where);
                  break;
                case "advance":
                  clock.advance(command.ms);
                  break;
                case "clear":
                  store.clear(command.namespace);
                  model.clear(command.namespace);
                  break;
                case "bypass":
                  store.bypass(command.namespace);
                  model.count(command.namespace).bypasses++;
                  break;
              }
              const stats = store.stats();
              assert.deepEqual(stats.namespaces, model.stats(), where);
              assert.deepEqual(stats.total, Object.values(model.stats()).reduce(addStats, toStats(0, 0, newCounters())), `${where}: the running totals`);
            });
          }),
          { numRuns: 300 },
        );
      });
    }
  }
});

/** Two namespaces' statistics added up, as the store's total must be. */
function addStats(a: CacheStats, b: CacheStats): CacheStats {
  const hits = a.hits + b.hits;
  const misses = a.misses + b.misses;
  return {
    entries: a.entries + b.entries,
    bytes: a.bytes + b.bytes,
    hits,
    misses,
    bypasses: a.bypasses + b.bypasses,
    hitRatio: hits + misses === 0 ? 0 : hits / (hits + misses),
    evictions: {
      size: a.evictions.size + b.evictions.size,
      bytes: a.evictions.bytes + b.evictions.bytes,
      ttl: a.evictions.ttl + b.evictions.ttl,
    },
    expirations: a.expirations + b.expirations,
    updatesNotStored: a.updatesNotStored + b.updatesNotStored,
    leases: Object.fromEntries(
      Object.entries(a.leases).map(([event, count]) => [event, count + b.leases[event as keyof CacheStats["leases"]]]),
    ) as CacheStats["leases"],
  };
}
