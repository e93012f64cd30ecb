import { HeapIndex, type EntryIndex, type Slot } from "./entry-index.js";
import { EntryTooLargeError } from "./entry-too-large-error.js";
import {
  checkLimits,
  checkMaxNamespaces,
  checkPolicy,
  checkTtl,
  ENTRY_OVERHEAD_BYTES,
  GROUP_OVERHEAD_BYTES,
  IDLE_NAMESPACES_KEPT,
  NAMESPACE_OVERHEAD_BYTES,
  type CheckedLimits,
  type EvictionPolicy,
  type Limits,
} from "./limits.js";
import { newCounters, toStats, type CacheStats, type Counter, type Counters, type LeaseEvent } from "./stats.js";
import { STATS_NAMESPACES_LISTED, type SetOptions, type StatsReport, type Store, type StoreWalk } from "./store.js";
import { TooManyNamespacesError } from "./too-many-namespaces-error.js";

export interface StoreOptions extends Limits {
  /** "fifo" (the default, LangChain's): the oldest inserted goes first. "lru": the least recently used. */
  policy?: EvictionPolicy | null;
  /** Limits of particular namespaces, on top of the store's own. */
  namespaces?: Record<string, Limits> | null;
  /** Most namespaces that may hold entries at once (see TooManyNamespacesError). Default DEFAULT_MAX_NAMESPACES. */
  maxNamespaces?: number | null;
  /** The clock, in milliseconds; tests pass a fake one. Default Date.now. */
  now?: () => number;
}

export type { SetOptions, StatsReport, StoredEntry, StoreWalk } from "./store.js";
export { STATS_NAMESPACES_LISTED } from "./store.js";

/** Why an entry leaves: the counter it adds to. */
type Removal = "size" | "bytes" | "ttl" | "expired" | "cleared";

const NONE: Slot = -1;
const FREE = -1;
const INITIAL_CAPACITY = 16;
const NO_LIMITS: CheckedLimits = { maxsize: undefined, maxBytes: undefined, defaultTtlMs: undefined };

interface Namespace {
  readonly name: string;
  /** How the store's index knows it; reused once its record is dropped. */
  readonly id: number;
  readonly limits: CheckedLimits;
  /** Limits of its own were configured: its record is kept for as long as the store. */
  readonly configured: boolean;
  oldest: Slot;
  newest: Slot;
  entries: number;
  /** Its entries' accounted bytes, its groups' and, while it holds entries, its record's. */
  bytes: number;
  readonly counters: Counters;
}

/**
 * Values keyed by (namespace, prompt, llm_string), within limits on entries
 * and on accounted bytes, for the whole store and per namespace, with an
 * optional time to live per entry. Every operation is O(1).
 *
 * With no option set it is LangChain's InMemoryCache: unbounded, and with
 * only maxsize, a new pair in a full store evicts the oldest inserted entry,
 * reading does not change the order, and replacing a pair's value keeps its
 * place and evicts nothing.
 *
 * Eviction follows the policy: insertion order (fifo) or recency of use
 * (lru: lookups and updates refresh an entry). The entry chosen is counted
 * by the limit that made room necessary, or as "ttl" if it had expired
 * anyway. Expired entries are never returned: a lookup that finds one
 * removes it, and reclaimExpired removes others a bounded number at a time.
 *
 * Entries live in columns indexed by slot, not in an object each; their
 * keys and values are the index's (see EntryIndex): on the heap, or in
 * segments off it (SegmentIndex). Two pairs meet only if both parts are
 * equal. The expiry column exists only once an entry can expire, so a
 * store without TTLs neither keeps nor reads it.
 *
 * Accounted bytes are meant to bound the heap whatever the shape of the
 * entries: each entry's bytes and ENTRY_OVERHEAD_BYTES, each group's
 * GROUP_OVERHEAD_BYTES and each namespace's NAMESPACE_OVERHEAD_BYTES (and
 * name) while it holds entries, all within the byte budgets. Namespaces
 * that hold nothing and have no limits cost no budget: at most
 * IDLE_NAMESPACES_KEPT of them are kept, and at most maxNamespaces may
 * hold entries. The totals are kept as they change, so stats() does not
 * grow with the number of namespaces.
 */
export class CacheStore<V> implements Store<V> {
  readonly policy: EvictionPolicy;
  readonly limits: CheckedLimits;
  readonly #namespaceLimits: ReadonlyMap<string, CheckedLimits>;
  readonly #now: () => number;
  readonly maxNamespaces: number;
  readonly #namespaces = new Map<string, Namespace>();
  readonly #namespaceById: (Namespace | undefined)[] = [];
  readonly #freeNamespaceIds: number[] = [];
  readonly #index: EntryIndex<V>;
  readonly #whenEntriesCanExpire: (() => void)[] = [];
  /** The records of namespaces that hold nothing and have no limits, least recently used first. */
  readonly #idle = new Map<string, Namespace>();
  /** How many namespaces hold entries. */
  #liveNamespaces = 0;
  /** The namespace a set() is making room in: its record is not dropped meanwhile, even if it is idle. */
  #pinned: Namespace | undefined;
  /** Every namespace's counters added up, dropped records' included. */
  readonly #totals = newCounters();
  #size = 0;
  #bytes = 0;

  // The columns, one per field of an entry.
  /** The entry's namespace id; FREE: the slot holds no entry. */
  #namespaceOf = new Int32Array(INITIAL_CAPACITY).fill(FREE);
  #sizes = new Float64Array(INITIAL_CAPACITY);
  /** When the entry expires, on the store's clock; Infinity: never. Made when the first entry that can expire comes. */
  #expiresAt: Float64Array<ArrayBuffer> | undefined;
  // The slots of entries that can expire, packed at the front of
  // #expiring (in no order), and each such slot's place there (-1: none):
  // reclaiming samples these, not every slot, so that entries that never
  // expire do not hide the expired ones (as Redis samples its keys with a
  // TTL). Made with #expiresAt.
  #expiring: Int32Array<ArrayBuffer> | undefined;
  #expiringPlace: Int32Array<ArrayBuffer> | undefined;
  #expiringCount = 0;
  // Two doubly linked lists of slots, oldest (or least recently used) first:
  // one through the whole store, one through each namespace.
  #older = new Int32Array(INITIAL_CAPACITY);
  #newer = new Int32Array(INITIAL_CAPACITY);
  #namespaceOlder = new Int32Array(INITIAL_CAPACITY);
  #namespaceNewer = new Int32Array(INITIAL_CAPACITY);
  #oldest: Slot = NONE;
  #newest: Slot = NONE;
  #freeSlots: Slot[] = [];
  #slotsUsed = 0;
  /** The open walks, each at the slot it will yield next. */
  readonly #walks = new Set<{ slot: Slot }>();

  /** `index` is where keys and values are kept; the default, a HeapIndex, holds any value. */
  constructor(options: StoreOptions = {}, index: EntryIndex<V> = new HeapIndex<V>()) {
    this.limits = checkLimits(options);
    this.policy = checkPolicy(options.policy);
    this.#namespaceLimits = new Map(
      Object.entries(options.namespaces ?? {}).map(([name, limits]) => [name, checkLimits(limits, `namespaces["${name}"].`)]),
    );
    this.maxNamespaces = checkMaxNamespaces(options.maxNamespaces ?? undefined);
    this.#now = options.now ?? Date.now;
    this.#index = index;
    for (const name of this.#namespaceLimits.keys()) this.#namespace(name);
  }

  /** How many entries the store holds, expired ones not yet removed included. */
  get size(): number {
    return this.#size;
  }

  /** The live value for the pair, counted as a hit or a miss. */
  get(namespace: string, prompt: string, llmString: string): V | undefined {
    const space = this.#namespace(namespace);
    const slot = this.#index.find(space.id, llmString, prompt);
    if (slot === undefined) {
      this.#count(space, "misses");
      return undefined;
    }
    if (this.#expired(slot)) {
      this.#remove(slot, "expired");
      this.#count(space, "misses");
      return undefined;
    }
    this.#count(space, "hits");
    if (this.policy === "lru") this.#touch(slot);
    return this.#index.value(slot);
  }

  /**
   * The live value for the pair, counted as nothing and moving nothing: for
   * a lookup already counted that looks again (see LeaseTable).
   */
  peek(namespace: string, prompt: string, llmString: string): V | undefined {
    const space = this.#namespaces.get(namespace);
    const slot = space && this.#index.find(space.id, llmString, prompt);
    return slot === undefined || this.#expired(slot) ? undefined : this.#index.value(slot);
  }

  /** Counts what single flight did in a namespace (see LeaseTable); a refused stale fill is an update not stored too. */
  countLease(namespace: string, event: LeaseEvent): void {
    const space = this.#namespace(namespace);
    space.counters.leases[event]++;
    this.#totals.leases[event]++;
    if (event === "staleFillsRefused") this.#count(space, "updatesNotStored");
  }

  /** Counts a lookup that skipped the cache. */
  bypass(namespace: string): void {
    this.#count(this.#namespace(namespace), "bypasses");
  }

  /** Counts an update that asked not to be stored. */
  skipStore(namespace: string): void {
    this.#count(this.#namespace(namespace), "updatesNotStored");
  }

  /**
   * Stores a value whose key and value take `bytes` bytes, and returns
   * whether it did (false only for onlyIfAbsent with a live entry there).
   * Throws EntryTooLargeError, storing and evicting nothing, when the entry
   * alone (with a group and a namespace of its own) exceeds a byte budget,
   * and TooManyNamespacesError when it would be the first entry of a
   * namespace and maxNamespaces namespaces already hold entries.
   */
  set(namespace: string, prompt: string, llmString: string, value: V, bytes: number, options: SetOptions = {}): boolean {
    const space = this.#namespace(namespace);
    const ttlMs = checkTtl(options.ttlMs) ?? space.limits.defaultTtlMs ?? this.limits.defaultTtlMs ?? Infinity;
    let slot = this.#index.find(space.id, llmString, prompt);
    if (slot !== undefined && this.#expired(slot)) {
      this.#remove(slot, "ttl");
      slot = undefined;
    }
    if (slot !== undefined && options.onlyIfAbsent) {
      this.#count(space, "updatesNotStored");
      return false;
    }
    const accounted = bytes + ENTRY_OVERHEAD_BYTES;
    this.#checkFits(space, accounted);
    if (slot === undefined && space.entries === 0 && this.#liveNamespaces >= this.maxNamespaces) {
      throw new TooManyNamespacesError(this.maxNamespaces);
    }
    const expiresAt = options.expiresAt ?? (ttlMs === Infinity ? Infinity : this.#now() + ttlMs);

    if (slot !== undefined) {
      const grown = accounted - this.#sizes[slot]!;
      this.#index.replace(slot, value);
      this.#sizes[slot] = accounted;
      this.#setExpiry(slot, expiresAt);
      this.#addBytes(space, grown);
      if (this.policy === "lru") this.#touch(slot);
      this.#makeRoom(space, 0, 0, slot);
      return true;
    }

    // Making room may remove the entry's group, or empty its namespace, and
    // so raise what the entry needs: make room again until it is enough.
    // It may also empty more namespaces than are kept idle, while this one
    // is idle too (new, or emptied by the eviction of its last entry): so
    // its record is pinned, lest the entry go into a record already dropped.
    this.#pinned = space;
    try {
      for (let needed = 0; accounted + this.#structureCost(space, llmString) > needed; ) {
        needed = accounted + this.#structureCost(space, llmString);
        this.#makeRoom(space, 1, needed, NONE);
      }
    } finally {
      this.#pinned = undefined;
    }
    if (space.entries === 0) this.#becomeLive(space);
    const added = this.#allocate();
    if (this.#index.add(added, space.id, llmString, prompt, value)) this.#addBytes(space, GROUP_OVERHEAD_BYTES);
    this.#namespaceOf[added] = space.id;
    this.#sizes[added] = accounted;
    this.#setExpiry(added, expiresAt);
    this.#link(added, space);
    space.entries++;
    this.#size++;
    this.#addBytes(space, accounted);
    return true;
  }

  /** Removes every entry of a namespace, or of all namespaces. Limits and counters stay. */
  clear(namespace?: string): void {
    for (const walk of this.#walks) if (namespace === undefined) walk.slot = NONE;
    if (namespace !== undefined) {
      const space = this.#namespaces.get(namespace);
      while (space && space.oldest !== NONE) this.#remove(space.oldest, "cleared");
      return;
    }
    for (const space of [...this.#namespaces.values()]) {
      const held = space.entries > 0;
      space.oldest = space.newest = NONE;
      space.entries = space.bytes = 0;
      if (held) this.#becomeEmpty(space);
    }
    this.#index.clear();
    this.#namespaceOf = new Int32Array(INITIAL_CAPACITY).fill(FREE);
    this.#sizes = new Float64Array(INITIAL_CAPACITY);
    if (this.#expiresAt) {
      this.#expiresAt = new Float64Array(INITIAL_CAPACITY).fill(Infinity);
      this.#expiring = new Int32Array(INITIAL_CAPACITY);
      this.#expiringPlace = new Int32Array(INITIAL_CAPACITY).fill(-1);
      this.#expiringCount = 0;
    }
    this.#older = new Int32Array(INITIAL_CAPACITY);
    this.#newer = new Int32Array(INITIAL_CAPACITY);
    this.#namespaceOlder = new Int32Array(INITIAL_CAPACITY);
    this.#namespaceNewer = new Int32Array(INITIAL_CAPACITY);
    this.#oldest = this.#newest = NONE;
    this.#freeSlots = [];
    this.#slotsUsed = this.#size = this.#bytes = 0;
  }

  /**
   * Removes expired entries, looking at no more than `maxChecks` of them, so
   * that reclaiming never stalls the caller: first the oldest (under one
   * default TTL they expire in insertion order), then entries that can
   * expire picked at random (entries with TTLs of their own expire in any
   * order). Returns how many it removed.
   */
  reclaimExpired(maxChecks = 64): number {
    const expiresAt = this.#expiresAt;
    if (this.#size === 0 || !expiresAt) return 0;
    const now = this.#now();
    let removed = 0;
    let checks = 0;
    for (let slot = this.#oldest; slot !== NONE && checks < maxChecks / 2; checks++) {
      const next = this.#newer[slot]!;
      if (expiresAt[slot]! <= now) {
        this.#remove(slot, "ttl");
        removed++;
      }
      slot = next;
    }
    for (; checks < maxChecks && this.#expiringCount > 0; checks++) {
      const slot = this.#expiring![Math.floor(Math.random() * this.#expiringCount)]!;
      if (expiresAt[slot]! <= now) {
        this.#remove(slot, "ttl");
        removed++;
      }
    }
    return removed;
  }

  /** A walk through the entries in eviction order (see StoreWalk). */
  walk(): StoreWalk<V> {
    const position = { slot: this.#oldest };
    this.#walks.add(position);
    return {
      next: () => {
        const slot = position.slot;
        if (slot === NONE) return undefined;
        position.slot = this.#newer[slot]!;
        return {
          namespace: this.#namespaceOfSlot(slot).name,
          prompt: this.#index.prompt(slot),
          llmString: this.#index.llmString(slot),
          value: this.#index.value(slot),
          bytes: this.#sizes[slot]! - ENTRY_OVERHEAD_BYTES,
          expiresAt: this.#expiresAt?.[slot] ?? Infinity,
        };
      },
      close: () => this.#walks.delete(position),
    };
  }

  /**
   * Statistics in total (everything since the store was made, in constant
   * time) and for the first `listed` namespaces the store knows, in the
   * order it came to know them. It knows those with limits of their own,
   * those that hold entries, and the most recently used of the others.
   */
  stats(listed = STATS_NAMESPACES_LISTED): StatsReport {
    const namespaces: Record<string, CacheStats> = {};
    let count = 0;
    for (const space of this.#namespaces.values()) {
      if (count++ === listed) break;
      namespaces[space.name] = toStats(space.entries, space.bytes, space.counters);
    }
    return {
      total: this.total(),
      namespaces,
      namespacesNotListed: Math.max(0, this.#namespaces.size - listed),
    };
  }

  /** Every namespace together, since the store was made: constant time. */
  total(): CacheStats {
    return toStats(this.#size, this.#bytes, this.#totals);
  }

  /** The namespace's record, made if need be; one that holds nothing is now the most recently used. */
  #namespace(name: string): Namespace {
    let space = this.#namespaces.get(name);
    if (!space) {
      const limits = this.#namespaceLimits.get(name);
      const id = this.#freeNamespaceIds.pop() ?? this.#namespaceById.length;
      space = {
        name,
        id,
        limits: limits ?? NO_LIMITS,
        configured: limits !== undefined,
        oldest: NONE,
        newest: NONE,
        entries: 0,
        bytes: 0,
        counters: newCounters(),
      };
      this.#namespaces.set(name, space);
      this.#namespaceById[id] = space;
      this.#keepIdle(space);
    } else if (space.entries === 0 && this.#idle.delete(name)) {
      this.#idle.set(name, space);
    }
    return space;
  }

  #count(space: Namespace, counter: Counter): void {
    space.counters[counter]++;
    this.#totals[counter]++;
  }

  #addBytes(space: Namespace, bytes: number): void {
    space.bytes += bytes;
    this.#bytes += bytes;
  }

  /** What storing a first entry for llmString costs beyond the entry: its group, and its namespace's record. */
  #structureCost(space: Namespace, llmString: string): number {
    const group = this.#index.hasGroup(space.id, llmString) ? 0 : GROUP_OVERHEAD_BYTES;
    return group + (space.entries === 0 ? namespaceRecordBytes(space.name) : 0);
  }

  /** A namespace about to hold its first entry: its record counts against the budgets. */
  #becomeLive(space: Namespace): void {
    this.#idle.delete(space.name);
    this.#liveNamespaces++;
    this.#addBytes(space, namespaceRecordBytes(space.name));
  }

  /** A namespace whose last entry left (its bytes are 0 by now). */
  #becomeEmpty(space: Namespace): void {
    this.#liveNamespaces--;
    this.#keepIdle(space);
  }

  /** Keeps the record of a namespace that holds nothing, dropping the least recently used such record past the limit. */
  #keepIdle(space: Namespace): void {
    if (space.configured) return;
    this.#idle.set(space.name, space);
    if (this.#idle.size <= IDLE_NAMESPACES_KEPT) return;
    for (const oldest of this.#idle.values()) {
      if (oldest === this.#pinned) continue;
      this.#idle.delete(oldest.name);
      this.#namespaces.delete(oldest.name);
      this.#namespaceById[oldest.id] = undefined;
      this.#freeNamespaceIds.push(oldest.id);
      return;
    }
  }

  #expired(slot: Slot): boolean {
    const expiresAt = this.#expiresAt?.[slot] ?? Infinity;
    // The clock is read only for entries that can expire.
    return expiresAt !== Infinity && expiresAt <= this.#now();
  }

  #setExpiry(slot: Slot, expiresAt: number): void {
    if (!this.#expiresAt) {
      if (expiresAt === Infinity) return;
      this.#expiresAt = new Float64Array(this.#sizes.length).fill(Infinity);
      this.#expiring = new Int32Array(this.#sizes.length);
      this.#expiringPlace = new Int32Array(this.#sizes.length).fill(-1);
      for (const listener of this.#whenEntriesCanExpire.splice(0)) listener();
    }
    this.#expiresAt[slot] = expiresAt;
    const place = this.#expiringPlace![slot]!;
    if (expiresAt === Infinity && place !== -1) this.#forgetExpiring(slot);
    else if (expiresAt !== Infinity && place === -1) {
      this.#expiring![this.#expiringCount] = slot;
      this.#expiringPlace![slot] = this.#expiringCount++;
    }
  }

  /** Takes the slot out of the entries that can expire; the last one there takes its place. */
  #forgetExpiring(slot: Slot): void {
    const expiring = this.#expiring!;
    const places = this.#expiringPlace!;
    const place = places[slot]!;
    const last = expiring[--this.#expiringCount]!;
    expiring[place] = last;
    places[last] = place;
    places[slot] = -1;
  }

  /**
   * Calls `listener` once an entry can expire (at once if one already can):
   * a store without TTLs needs no reclaiming, and so no timer.
   */
  onceEntriesCanExpire(listener: () => void): void {
    if (this.#expiresAt) listener();
    else this.#whenEntriesCanExpire.push(listener);
  }

  #namespaceOfSlot(slot: Slot): Namespace {
    return this.#namespaceById[this.#namespaceOf[slot]!]!;
  }

  /**
   * Throws TooManyNamespacesError if storing in all these namespaces would
   * need more namespaces to hold entries than maxNamespaces allows: for a
   * batch that must apply whole or not at all. It counts as it stands now,
   * so a batch whose own evictions would have emptied a namespace may be
   * refused all the same.
   */
  checkNamespacesFit(namespaces: Iterable<string>): void {
    let added = 0;
    for (const name of new Set(namespaces)) if ((this.#namespaces.get(name)?.entries ?? 0) === 0) added++;
    if (added > 0 && this.#liveNamespaces + added > this.maxNamespaces) throw new TooManyNamespacesError(this.maxNamespaces);
  }

  /** Throws EntryTooLargeError if an entry of `bytes` bytes could never fit the namespace. */
  checkFits(namespace: string, bytes: number): void {
    this.#checkFits({ name: namespace, limits: this.#namespaceLimits.get(namespace) ?? NO_LIMITS }, bytes + ENTRY_OVERHEAD_BYTES);
  }

  /** Whether the entry fits in an empty store, with a group and a namespace record of its own. */
  #checkFits(space: Pick<Namespace, "name" | "limits">, entryBytes: number): void {
    const accounted = entryBytes + GROUP_OVERHEAD_BYTES + namespaceRecordBytes(space.name);
    if (space.limits.maxBytes !== undefined && accounted > space.limits.maxBytes) {
      throw EntryTooLargeError.forBudget(accounted, space.limits.maxBytes, space.name);
    }
    if (this.limits.maxBytes !== undefined && accounted > this.limits.maxBytes) {
      throw EntryTooLargeError.forBudget(accounted, this.limits.maxBytes, undefined);
    }
  }

  /**
   * Evicts, in policy order, until `entries` more entries and `bytes` more
   * bytes fit in the namespace's limits and the store's. `keep` is never
   * evicted: it is the entry being replaced.
   */
  #makeRoom(space: Namespace, entries: number, bytes: number, keep: Slot): void {
    for (;;) {
      let victim: Slot;
      let cause: Removal;
      const own = space.limits;
      if (own.maxsize !== undefined && space.entries + entries > own.maxsize) {
        [victim, cause] = [this.#oldestOf(space.oldest, this.#namespaceNewer, keep), "size"];
      } else if (own.maxBytes !== undefined && space.bytes + bytes > own.maxBytes) {
        [victim, cause] = [this.#oldestOf(space.oldest, this.#namespaceNewer, keep), "bytes"];
      } else if (this.limits.maxsize !== undefined && this.#size + entries > this.limits.maxsize) {
        [victim, cause] = [this.#oldestOf(this.#oldest, this.#newer, keep), "size"];
      } else if (this.limits.maxBytes !== undefined && this.#bytes + bytes > this.limits.maxBytes) {
        [victim, cause] = [this.#oldestOf(this.#oldest, this.#newer, keep), "bytes"];
      } else {
        return;
      }
      // Only `keep` is left, and it fits on its own (checkFits): nothing more to do.
      if (victim === NONE) return;
      this.#remove(victim, this.#expired(victim) ? "ttl" : cause);
    }
  }

  #oldestOf(oldest: Slot, newer: Int32Array, keep: Slot): Slot {
    return oldest === keep ? newer[oldest]! : oldest;
  }

  #remove(slot: Slot, why: Removal): void {
    this.#stepWalksPast(slot);
    const space = this.#namespaceOfSlot(slot);
    let freed = this.#sizes[slot]!;
    if (this.#index.remove(slot)) freed += GROUP_OVERHEAD_BYTES;
    this.#unlink(slot, space);
    space.entries--;
    this.#size--;
    if (space.entries === 0) freed += namespaceRecordBytes(space.name);
    this.#addBytes(space, -freed);
    if (space.entries === 0) this.#becomeEmpty(space);
    this.#namespaceOf[slot] = FREE;
    if (this.#expiringPlace && this.#expiringPlace[slot] !== -1) this.#forgetExpiring(slot);
    this.#freeSlots.push(slot);
    if (why === "size") this.#count(space, "evictedSize");
    else if (why === "bytes") this.#count(space, "evictedBytes");
    else if (why === "ttl") this.#count(space, "evictedTtl");
    else if (why === "expired") this.#count(space, "expirations");
  }

  #allocate(): Slot {
    const reused = this.#freeSlots.pop();
    if (reused !== undefined) return reused;
    if (this.#slotsUsed === this.#older.length) {
      this.#namespaceOf = grow(this.#namespaceOf, FREE);
      this.#sizes = grow(this.#sizes);
      if (this.#expiresAt) {
        this.#expiresAt = grow(this.#expiresAt, Infinity);
        this.#expiring = grow(this.#expiring!);
        this.#expiringPlace = grow(this.#expiringPlace!, -1);
      }
      this.#older = grow(this.#older);
      this.#newer = grow(this.#newer);
      this.#namespaceOlder = grow(this.#namespaceOlder);
      this.#namespaceNewer = grow(this.#namespaceNewer);
    }
    return this.#slotsUsed++;
  }

  /** Walks about to yield this slot move on to the next: it is leaving its place. */
  #stepWalksPast(slot: Slot): void {
    for (const walk of this.#walks) if (walk.slot === slot) walk.slot = this.#newer[slot]!;
  }

  /** Moves an entry to the newest end of both lists: it was just used. */
  #touch(slot: Slot): void {
    if (slot === this.#newest) return;
    this.#stepWalksPast(slot);
    const space = this.#namespaceOfSlot(slot);
    this.#unlink(slot, space);
    this.#link(slot, space);
  }

  #link(slot: Slot, space: Namespace): void {
    this.#older[slot] = this.#newest;
    this.#newer[slot] = NONE;
    if (this.#newest === NONE) this.#oldest = slot;
    else this.#newer[this.#newest] = slot;
    this.#newest = slot;

    this.#namespaceOlder[slot] = space.newest;
    this.#namespaceNewer[slot] = NONE;
    if (space.newest === NONE) space.oldest = slot;
    else this.#namespaceNewer[space.newest] = slot;
    space.newest = slot;
  }

  #unlink(slot: Slot, space: Namespace): void {
    const older = this.#older[slot]!;
    const newer = this.#newer[slot]!;
    if (older === NONE) this.#oldest = newer;
    else this.#newer[older] = newer;
    if (newer === NONE) this.#newest = older;
    else this.#older[newer] = older;

    const namespaceOlder = this.#namespaceOlder[slot]!;
    const namespaceNewer = this.#namespaceNewer[slot]!;
    if (namespaceOlder === NONE) space.oldest = namespaceNewer;
    else this.#namespaceNewer[namespaceOlder] = namespaceNewer;
    if (namespaceNewer === NONE) space.newest = namespaceOlder;
    else this.#namespaceOlder[namespaceNewer] = namespaceOlder;
  }
}

/** A namespace's record, with its name: a name is a latin1 string of its UTF-8 bytes on the server, so its length is close to its size. */
function namespaceRecordBytes(name: string): number {
  return NAMESPACE_OVERHEAD_BYTES + name.length;
}

function grow<T extends Int32Array<ArrayBuffer> | Float64Array<ArrayBuffer>>(column: T, fill = 0): T {
  const grown = new (column.constructor as new (length: number) => T)(column.length * 2);
  if (fill !== 0) grown.fill(fill, column.length);
  grown.set(column);
  return grown;
}
