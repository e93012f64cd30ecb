import type { EntryIndex, Slot } from "./entry-index.js";
import { KeyBuffer } from "./key-buffer.js";
import { SegmentArena, type ArenaOptions, type Location } from "./segment-arena.js";

const EMPTY = -1;
const INITIAL_CAPACITY = 16;
/** Chains are rebuilt over twice the buckets once entries pass three quarters of them. */
const MAX_LOAD = 0.75;
/** Seeds the hashes afresh in each process, so that nobody can choose keys that all land in one chain. */
const SEED = (Math.random() * 2 ** 32) | 0;
/** How many recently found groups are remembered by their llm_string (see #findGroup); a power of two. */
const GROUP_MEMO_SIZE = 64;

/**
 * Keys and values as bytes, in a SegmentArena outside the garbage-collected
 * heap, found through hash tables in typed arrays: a million entries add
 * nothing for the collector to trace, and their memory is the arena's, which
 * stays within its live bytes and a bounded slack (see SegmentArena).
 *
 * Every key string it is given must be bytes held one per character
 * (latin1, as the server holds what clients send: see KeyBytes); it throws
 * a TypeError for a character above U+00FF. Values are bytes, copied in;
 * value() hands out the index's own bytes, not a copy: they stay as they
 * are only until the index is next written to (add, replace, clear), which
 * may reuse or move them.
 *
 * Groups (a namespace and an llm_string) have a table of their own, and
 * their llm_string a record of its own, so that entries that share one hold
 * it once; an entry's record is its prompt followed by its value.
 */
export class SegmentIndex implements EntryIndex<Buffer> {
  readonly #arena: SegmentArena;
  /** The key being looked for or added: its bytes, hashed and compared natively. */
  readonly #key = new KeyBuffer();

  // Entries, by slot.
  #hash = new Int32Array(INITIAL_CAPACITY);
  #next = new Int32Array(INITIAL_CAPACITY);
  /** The entry's group; EMPTY: the slot holds no entry. */
  #groupOf = new Int32Array(INITIAL_CAPACITY).fill(EMPTY);
  #location = new Float64Array(INITIAL_CAPACITY);
  #promptLength = new Int32Array(INITIAL_CAPACITY);
  #buckets = new Int32Array(INITIAL_CAPACITY).fill(EMPTY);
  #entries = 0;

  // Groups, by id.
  #groupHash = new Int32Array(INITIAL_CAPACITY);
  #groupNext = new Int32Array(INITIAL_CAPACITY);
  #groupNamespace = new Int32Array(INITIAL_CAPACITY);
  #groupEntries = new Int32Array(INITIAL_CAPACITY);
  #groupLocation = new Float64Array(INITIAL_CAPACITY);
  #groupBuckets = new Int32Array(INITIAL_CAPACITY).fill(EMPTY);
  #groups = 0;
  #groupIdsUsed = 0;
  #freeGroupIds: number[] = [];

  // Groups found lately, by memoSlot(): the llm_string as given, its namespace, its group.
  readonly #memoLlmString: (string | undefined)[] = new Array<string | undefined>(GROUP_MEMO_SIZE).fill(undefined);
  readonly #memoNamespace = new Int32Array(GROUP_MEMO_SIZE);
  readonly #memoGroup = new Int32Array(GROUP_MEMO_SIZE).fill(EMPTY);

  constructor(options: ArenaOptions = {}) {
    this.#arena = new SegmentArena((owner, location) => {
      if (owner >= 0) this.#location[owner] = location;
      else this.#groupLocation[-owner - 1] = location;
    }, options);
  }

  find(namespaceId: number, llmString: string, prompt: string): Slot | undefined {
    const group = this.#findGroup(namespaceId, llmString);
    if (group === EMPTY) return undefined;
    const hash = this.#loadKey(group, prompt);
    for (let slot = this.#buckets[hash & (this.#buckets.length - 1)]!; slot !== EMPTY; slot = this.#next[slot]!) {
      if (this.#hash[slot] === hash && this.#groupOf[slot] === group && this.#promptIsKey(slot)) return slot;
    }
    return undefined;
  }

  hasGroup(namespaceId: number, llmString: string): boolean {
    return this.#findGroup(namespaceId, llmString) !== EMPTY;
  }

  add(slot: Slot, namespaceId: number, llmString: string, prompt: string, value: Buffer): boolean {
    let group = this.#findGroup(namespaceId, llmString);
    const made = group === EMPTY;
    if (made) group = this.#addGroup(namespaceId, llmString);
    this.#groupEntries[group]!++;
    if (slot >= this.#hash.length) this.#growEntries(slot + 1);
    const hash = this.#loadKey(group, prompt);
    this.#hash[slot] = hash;
    this.#groupOf[slot] = group;
    this.#promptLength[slot] = prompt.length;
    this.#location[slot] = this.#write(slot, prompt, value);
    this.#chain(this.#buckets, this.#next, slot, hash);
    if (++this.#entries > this.#buckets.length * MAX_LOAD) this.#buckets = this.#rehash(this.#buckets, this.#next, this.#hash, this.#hash.length, (s) => this.#groupOf[s] !== EMPTY);
    return made;
  }

  replace(slot: Slot, value: Buffer): void {
    const promptLength = this.#promptLength[slot]!;
    const placed = this.#arena.place(slot, promptLength + value.length);
    // Placing may have compacted, and moved the old record: find it only now.
    const old = this.#location[slot]!;
    const target = this.#arena.buffer(placed);
    const start = this.#arena.dataOffset(placed);
    this.#arena.buffer(old).copy(target, start, this.#arena.dataOffset(old), this.#arena.dataOffset(old) + promptLength);
    value.copy(target, start + promptLength);
    this.#arena.free(old);
    this.#location[slot] = placed;
  }

  remove(slot: Slot): boolean {
    this.#arena.free(this.#location[slot]!);
    this.#unchain(this.#buckets, this.#next, slot, this.#hash[slot]!);
    this.#entries--;
    const group = this.#groupOf[slot]!;
    this.#groupOf[slot] = EMPTY;
    if (--this.#groupEntries[group]! > 0) return false;
    this.#arena.free(this.#groupLocation[group]!);
    this.#unchain(this.#groupBuckets, this.#groupNext, group, this.#groupHash[group]!);
    this.#groups--;
    this.#groupNamespace[group] = EMPTY;
    this.#freeGroupIds.push(group);
    this.#forget(group);
    return true;
  }

  value(slot: Slot): Buffer {
    const location = this.#location[slot]!;
    const start = this.#arena.dataOffset(location);
    return this.#arena.buffer(location).subarray(start + this.#promptLength[slot]!, start + this.#arena.length(location));
  }

  prompt(slot: Slot): string {
    const location = this.#location[slot]!;
    const start = this.#arena.dataOffset(location);
    return this.#arena.buffer(location).toString("latin1", start, start + this.#promptLength[slot]!);
  }

  llmString(slot: Slot): string {
    const location = this.#groupLocation[this.#groupOf[slot]!]!;
    const start = this.#arena.dataOffset(location);
    return this.#arena.buffer(location).toString("latin1", start, start + this.#arena.length(location));
  }

  clear(): void {
    this.#arena.clear();
    this.#hash = new Int32Array(INITIAL_CAPACITY);
    this.#next = new Int32Array(INITIAL_CAPACITY);
    this.#groupOf = new Int32Array(INITIAL_CAPACITY).fill(EMPTY);
    this.#location = new Float64Array(INITIAL_CAPACITY);
    this.#promptLength = new Int32Array(INITIAL_CAPACITY);
    this.#buckets = new Int32Array(INITIAL_CAPACITY).fill(EMPTY);
    this.#entries = 0;
    this.#groupHash = new Int32Array(INITIAL_CAPACITY);
    this.#groupNext = new Int32Array(INITIAL_CAPACITY);
    this.#groupNamespace = new Int32Array(INITIAL_CAPACITY);
    this.#groupEntries = new Int32Array(INITIAL_CAPACITY);
    this.#groupLocation = new Float64Array(INITIAL_CAPACITY);
    this.#groupBuckets = new Int32Array(INITIAL_CAPACITY).fill(EMPTY);
    this.#groups = this.#groupIdsUsed = 0;
    this.#freeGroupIds = [];
    this.#memoLlmString.fill(undefined);
    this.#memoGroup.fill(EMPTY);
  }

  /**
   * The group of the namespace and llm_string, or EMPTY. Most calls name
   * one of a few llm_strings, each some hundreds of bytes, and hashing one
   * and comparing it with the arena's bytes on every call took a fifth of a
   * server's CPU under 64 callers (a character at a time, before
   * KeyBuffer). So the groups found lately are remembered with the string
   * they were asked by, and a string equal to it (compared by V8) finds its
   * group at once.
   */
  #findGroup(namespaceId: number, llmString: string): number {
    const memo = memoSlot(namespaceId, llmString);
    if (this.#memoGroup[memo] !== EMPTY && this.#memoNamespace[memo] === namespaceId && this.#memoLlmString[memo] === llmString) return this.#memoGroup[memo]!;
    const hash = this.#loadKey(namespaceId, llmString);
    for (let group = this.#groupBuckets[hash & (this.#groupBuckets.length - 1)]!; group !== EMPTY; group = this.#groupNext[group]!) {
      if (this.#groupHash[group] === hash && this.#groupNamespace[group] === namespaceId && this.#llmStringIsKey(group)) {
        this.#memoLlmString[memo] = llmString;
        this.#memoNamespace[memo] = namespaceId;
        this.#memoGroup[memo] = group;
        return group;
      }
    }
    return EMPTY;
  }

  /** Drops what the memo says of a group that no longer exists: its id may be given to another. */
  #forget(group: number): void {
    for (let memo = 0; memo < GROUP_MEMO_SIZE; memo++) {
      if (this.#memoGroup[memo] === group) {
        this.#memoGroup[memo] = EMPTY;
        this.#memoLlmString[memo] = undefined;
      }
    }
  }

  #addGroup(namespaceId: number, llmString: string): number {
    const group = this.#freeGroupIds.pop() ?? this.#groupIdsUsed++;
    if (group >= this.#groupHash.length) this.#growGroups();
    const hash = this.#loadKey(namespaceId, llmString);
    this.#groupHash[group] = hash;
    this.#groupNamespace[group] = namespaceId;
    this.#groupEntries[group] = 0;
    const location = this.#arena.place(-group - 1, llmString.length);
    writeLatin1(this.#arena.buffer(location), llmString, this.#arena.dataOffset(location));
    this.#groupLocation[group] = location;
    this.#chain(this.#groupBuckets, this.#groupNext, group, hash);
    if (++this.#groups > this.#groupBuckets.length * MAX_LOAD) {
      this.#groupBuckets = this.#rehash(this.#groupBuckets, this.#groupNext, this.#groupHash, this.#groupIdsUsed, (g) => this.#groupNamespace[g] !== EMPTY);
    }
    return group;
  }

  /** Places the entry's record, its prompt then its value. */
  #write(slot: Slot, prompt: string, value: Buffer): Location {
    const location = this.#arena.place(slot, prompt.length + value.length);
    const buffer = this.#arena.buffer(location);
    const start = this.#arena.dataOffset(location);
    writeLatin1(buffer, prompt, start);
    value.copy(buffer, start + prompt.length);
    return location;
  }

  /** Makes `text` the loaded key (see KeyBuffer) and gives its hash, seeded with `seed` and the process's SEED. */
  #loadKey(seed: number, text: string): number {
    this.#key.load(text);
    return this.#key.hash(SEED ^ Math.imul(seed, 0x9e3779b1));
  }

  /** Whether the slot's prompt is the loaded key. */
  #promptIsKey(slot: Slot): boolean {
    if (this.#promptLength[slot] !== this.#key.length) return false;
    const location = this.#location[slot]!;
    return this.#key.isAt(this.#arena.buffer(location), this.#arena.dataOffset(location));
  }

  /** Whether the group's llm_string is the loaded key. */
  #llmStringIsKey(group: number): boolean {
    const location = this.#groupLocation[group]!;
    return this.#arena.length(location) === this.#key.length && this.#key.isAt(this.#arena.buffer(location), this.#arena.dataOffset(location));
  }

  #chain(buckets: Int32Array, next: Int32Array, id: number, hash: number): void {
    const bucket = hash & (buckets.length - 1);
    next[id] = buckets[bucket]!;
    buckets[bucket] = id;
  }

  #unchain(buckets: Int32Array, next: Int32Array, id: number, hash: number): void {
    const bucket = hash & (buckets.length - 1);
    if (buckets[bucket] === id) {
      buckets[bucket] = next[id]!;
      return;
    }
    let before = buckets[bucket]!;
    while (next[before] !== id) before = next[before]!;
    next[before] = next[id]!;
  }

  /** Twice the buckets, every id in `used` that `live` says is in use chained again. */
  #rehash(buckets: Int32Array<ArrayBuffer>, next: Int32Array, hashes: Int32Array, used: number, live: (id: number) => boolean): Int32Array<ArrayBuffer> {
    const bigger = new Int32Array(buckets.length * 2).fill(EMPTY);
    for (let id = 0; id < used; id++) if (live(id)) this.#chain(bigger, next, id, hashes[id]!);
    return bigger;
  }

  #growEntries(needed: number): void {
    let capacity = this.#hash.length;
    while (capacity < needed) capacity *= 2;
    this.#hash = resized(this.#hash, capacity);
    this.#next = resized(this.#next, capacity);
    this.#groupOf = resized(this.#groupOf, capacity, EMPTY);
    this.#location = resized(this.#location, capacity);
    this.#promptLength = resized(this.#promptLength, capacity);
  }

  #growGroups(): void {
    const capacity = this.#groupHash.length * 2;
    this.#groupHash = resized(this.#groupHash, capacity);
    this.#groupNext = resized(this.#groupNext, capacity);
    this.#groupNamespace = resized(this.#groupNamespace, capacity, EMPTY);
    this.#groupEntries = resized(this.#groupEntries, capacity);
    this.#groupLocation = resized(this.#groupLocation, capacity);
  }
}

/** Where the memo keeps a group: from the namespace, the length and a few characters, so that llm_strings that differ only in a parameter's value spread. */
function memoSlot(namespaceId: number, llmString: string): number {
  const length = llmString.length;
  if (length === 0) return namespaceId & (GROUP_MEMO_SIZE - 1);
  const sample = llmString.charCodeAt(length - 1) ^ (llmString.charCodeAt(length >> 1) << 3) ^ (llmString.charCodeAt((length * 3) >> 2) << 6);
  return (Math.imul(length ^ sample ^ Math.imul(namespaceId, 0x9e3779b1), 0x85ebca6b) >>> 16) & (GROUP_MEMO_SIZE - 1);
}

function writeLatin1(buffer: Buffer, text: string, offset: number): void {
  if (text.length > 0) buffer.write(text, offset, text.length, "latin1");
}

function resized<T extends Int32Array<ArrayBuffer> | Float64Array<ArrayBuffer>>(column: T, capacity: number, fill = 0): T {
  const bigger = new (column.constructor as new (length: number) => T)(capacity);
  if (fill !== 0) bigger.fill(fill, column.length);
  bigger.set(column);
  return bigger;
}
