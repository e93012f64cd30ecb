/** The index of an entry in a store's columns. */
export type Slot = number;

/**
 * Where a store's entries are found and their keys and values kept, slot by
 * slot: CacheStore decides which slots exist, in what order they go and
 * what they cost; an index only finds a pair's slot and holds its bytes.
 *
 * Entries that share a namespace and an llm_string form a group, which an
 * index holds once for all of them: a group is what GROUP_OVERHEAD_BYTES
 * accounts for, so every index must make and drop groups at the same moments.
 */
export interface EntryIndex<V> {
  /** The slot that holds the pair, if any. */
  find(namespaceId: number, llmString: string, prompt: string): Slot | undefined;
  /** Whether an entry of the namespace has this llm_string. */
  hasGroup(namespaceId: number, llmString: string): boolean;
  /** Puts the pair and its value in a free slot; says whether that made a new group. */
  add(slot: Slot, namespaceId: number, llmString: string, prompt: string, value: V): boolean;
  /** Gives the pair in `slot` a new value. */
  replace(slot: Slot, value: V): void;
  /** Frees the slot; says whether that dropped the last entry of its group. */
  remove(slot: Slot): boolean;
  value(slot: Slot): V;
  prompt(slot: Slot): string;
  llmString(slot: Slot): string;
  /** Frees every slot. */
  clear(): void;
}

interface HeapGroup {
  readonly namespaceId: number;
  readonly llmString: string;
  /** prompt → slot. */
  readonly slots: Map<string, Slot>;
}

/**
 * Keys and values as the JavaScript values they came as, in Maps and
 * arrays on the heap: for values that are objects (InMemoryCache's
 * generations), which only the heap can hold. The llm_string is held once
 * per group, the prompt once per entry.
 */
export class HeapIndex<V> implements EntryIndex<V> {
  /** namespace id → llm_string → group. */
  readonly #groups = new Map<number, Map<string, HeapGroup>>();
  #prompts: (string | undefined)[] = [];
  #groupOf: (HeapGroup | undefined)[] = [];
  #values: (V | undefined)[] = [];

  find(namespaceId: number, llmString: string, prompt: string): Slot | undefined {
    return this.#groups.get(namespaceId)?.get(llmString)?.slots.get(prompt);
  }

  hasGroup(namespaceId: number, llmString: string): boolean {
    return this.#groups.get(namespaceId)?.has(llmString) ?? false;
  }

  add(slot: Slot, namespaceId: number, llmString: string, prompt: string, value: V): boolean {
    let byLlmString = this.#groups.get(namespaceId);
    if (!byLlmString) this.#groups.set(namespaceId, (byLlmString = new Map()));
    let group = byLlmString.get(llmString);
    const made = group === undefined;
    if (!group) byLlmString.set(llmString, (group = { namespaceId, llmString, slots: new Map() }));
    group.slots.set(prompt, slot);
    this.#prompts[slot] = prompt;
    this.#groupOf[slot] = group;
    this.#values[slot] = value;
    return made;
  }

  replace(slot: Slot, value: V): void {
    this.#values[slot] = value;
  }

  remove(slot: Slot): boolean {
    const group = this.#groupOf[slot]!;
    group.slots.delete(this.#prompts[slot]!);
    this.#prompts[slot] = this.#groupOf[slot] = this.#values[slot] = undefined;
    if (group.slots.size > 0) return false;
    const byLlmString = this.#groups.get(group.namespaceId)!;
    byLlmString.delete(group.llmString);
    if (byLlmString.size === 0) this.#groups.delete(group.namespaceId);
    return true;
  }

  value(slot: Slot): V {
    return this.#values[slot]!;
  }

  prompt(slot: Slot): string {
    return this.#prompts[slot]!;
  }

  llmString(slot: Slot): string {
    return this.#groupOf[slot]!.llmString;
  }

  clear(): void {
    this.#groups.clear();
    this.#prompts = [];
    this.#groupOf = [];
    this.#values = [];
  }
}
