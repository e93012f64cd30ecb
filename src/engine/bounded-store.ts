/**
 * Values keyed by the pair (prompt, llm_string), holding at most `maxsize`
 * of them: a new pair in a full store evicts the oldest inserted one (first
 * in, first out, as LangChain's InMemoryCache does). Reading does not change
 * the order, and replacing the value of a stored pair keeps its place and
 * evicts nothing.
 */
export class BoundedStore<V> {
  readonly maxsize: number | undefined;
  // A Map iterates in insertion order and keeps an entry's position when its
  // value is replaced: exactly the FIFO order we need, at O(1) per operation.
  readonly #entries = new Map<string, V>();

  constructor(maxsize?: number | null) {
    this.maxsize = checkMaxsize(maxsize);
  }

  get size(): number {
    return this.#entries.size;
  }

  get(prompt: string, llmString: string): V | undefined {
    return this.#entries.get(entryKey(prompt, llmString));
  }

  set(prompt: string, llmString: string, value: V): void {
    const key = entryKey(prompt, llmString);
    if (this.maxsize !== undefined && this.#entries.size >= this.maxsize && !this.#entries.has(key)) {
      this.#evictOldest();
    }
    this.#entries.set(key, value);
  }

  clear(): void {
    this.#entries.clear();
  }

  #evictOldest(): void {
    const oldest = this.#entries.keys().next();
    if (!oldest.done) this.#entries.delete(oldest.value);
  }
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

/**
 * One string per pair that no other pair shares: the prompt's length goes
 * first, so ("a_b", "c") and ("a", "b_c") cannot meet, as they do when the
 * two parts are simply joined with a separator.
 */
function entryKey(prompt: string, llmString: string): string {
  return `${prompt.length}:${prompt}${llmString}`;
}
