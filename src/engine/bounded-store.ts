/** The index of an entry in the store's columns. */
type Slot = number;

/** The entries that share one llm_string, which is held here once for all of them. */
interface Group {
  readonly llmString: string;
  readonly slots: Map<string, Slot>;
}

const NONE: Slot = -1;
const INITIAL_CAPACITY = 16;

/**
 * Values keyed by the pair (prompt, llm_string), holding at most `maxsize`
 * of them: a new pair in a full store evicts the oldest inserted one (first
 * in, first out, as LangChain's InMemoryCache does). Reading does not change
 * the order, and replacing the value of a stored pair keeps its place and
 * evicts nothing. Every operation is O(1).
 *
 * Entries are grouped by llm_string (a cache tier sees few models and many
 * prompts), so each llm_string is held once, however many entries share it,
 * and a key is the prompt string as given: nothing is joined or copied, and
 * two pairs can only meet if both their parts are equal.
 */
export class BoundedStore<V> {
  readonly maxsize: number | undefined;
  #groups = new Map<string, Group>();
  // One column per field of an entry, indexed by slot, instead of an object
  // per entry: a million entries cost a million small integers in the maps.
  #prompts: (string | undefined)[] = [];
  #groupOf: (Group | undefined)[] = [];
  #values: (V | undefined)[] = [];
  /** Insertion order as a doubly linked list of slots, oldest first. */
  #older = new Int32Array(INITIAL_CAPACITY);
  #newer = new Int32Array(INITIAL_CAPACITY);
  #oldest: Slot = NONE;
  #newest: Slot = NONE;
  #freeSlots: Slot[] = [];
  #slotsUsed = 0;
  #size = 0;

  constructor(maxsize?: number | null) {
    this.maxsize = checkMaxsize(maxsize);
  }

  get size(): number {
    return this.#size;
  }

  get(prompt: string, llmString: string): V | undefined {
    const slot = this.#groups.get(llmString)?.slots.get(prompt);
    return slot === undefined ? undefined : this.#values[slot];
  }

  set(prompt: string, llmString: string, value: V): void {
    const slot = this.#groups.get(llmString)?.slots.get(prompt);
    if (slot !== undefined) {
      this.#values[slot] = value;
      return;
    }
    if (this.maxsize !== undefined && this.#size >= this.maxsize) this.#delete(this.#oldest);
    // Looked up again: the eviction may have removed the group.
    let group = this.#groups.get(llmString);
    if (!group) this.#groups.set(llmString, (group = { llmString, slots: new Map() }));
    const added = this.#allocate();
    group.slots.set(prompt, added);
    this.#prompts[added] = prompt;
    this.#groupOf[added] = group;
    this.#values[added] = value;
    this.#link(added);
  }

  clear(): void {
    this.#groups = new Map();
    this.#prompts = [];
    this.#groupOf = [];
    this.#values = [];
    this.#older = new Int32Array(INITIAL_CAPACITY);
    this.#newer = new Int32Array(INITIAL_CAPACITY);
    this.#oldest = this.#newest = NONE;
    this.#freeSlots = [];
    this.#slotsUsed = this.#size = 0;
  }

  #delete(slot: Slot): void {
    const group = this.#groupOf[slot]!;
    group.slots.delete(this.#prompts[slot]!);
    if (group.slots.size === 0) this.#groups.delete(group.llmString);
    this.#unlink(slot);
    this.#prompts[slot] = this.#groupOf[slot] = this.#values[slot] = undefined;
    this.#freeSlots.push(slot);
    this.#size--;
  }

  #allocate(): Slot {
    this.#size++;
    const reused = this.#freeSlots.pop();
    if (reused !== undefined) return reused;
    if (this.#slotsUsed === this.#older.length) {
      this.#older = grow(this.#older);
      this.#newer = grow(this.#newer);
    }
    return this.#slotsUsed++;
  }

  #link(slot: Slot): void {
    this.#older[slot] = this.#newest;
    this.#newer[slot] = NONE;
    if (this.#newest === NONE) this.#oldest = slot;
    else this.#newer[this.#newest] = slot;
    this.#newest = slot;
  }

  #unlink(slot: Slot): void {
    const older = this.#older[slot]!;
    const newer = this.#newer[slot]!;
    if (older === NONE) this.#oldest = newer;
    else this.#newer[older] = newer;
    if (newer === NONE) this.#newest = older;
    else this.#older[newer] = older;
  }
}

function grow(column: Int32Array<ArrayBuffer>): Int32Array<ArrayBuffer> {
  const grown = new Int32Array(column.length * 2);
  grown.set(column);
  return grown;
}

/**
 * Checks a maxsize setting: undefined or null means no limit, anything else
 * must be a whole number above 0. Returns the limit, or undefined.
 */
export function checkMaxsize(maxsize: unknown): number | undefined {
  if (maxsize === undefined || maxsize === null) return undefined;
  if (typeof maxsize !== "number" || !Number.isSafeInteger(maxsize)) {
    throw new TypeError(`maxsize must be an integer, got ${typeof maxsize === "string" ? `"${maxsize}"` : String(maxsize)}`);
  }
  if (maxsize <= 0) throw new RangeError("maxsize must be greater than 0");
  return maxsize;
}
