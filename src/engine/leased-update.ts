import type { LeaseTable } from "./leases.js";
import type { Store } from "./store.js";

/** An update as a cache hands it to the store: its options, and the lease it may fill. */
export interface LeasedUpdate {
  /** undefined: the default TTL; Infinity: never expires. */
  ttlMs: number | undefined;
  onlyIfAbsent: boolean;
  /** Store nothing; counted as an update not stored (and, with the current token, the holder is done). */
  noStore: boolean;
  leaseToken: string | undefined;
}

/**
 * Stores a pair's value through the lease table (see LeaseTable.fill): the
 * one way every cache over a Store updates it, so that a store of the pair
 * ends its lease and answers whoever waits for it, and a stale token never
 * overwrites a newer value. Returns whether the value was stored.
 */
export function updateThroughLeases<V>(
  store: Store<V>,
  leases: LeaseTable,
  namespace: string,
  prompt: string,
  llmString: string,
  value: V,
  bytes: number,
  { ttlMs, onlyIfAbsent, noStore, leaseToken }: LeasedUpdate,
): boolean {
  return leases.fill(
    namespace,
    prompt,
    llmString,
    leaseToken,
    () => store.peek(namespace, prompt, llmString) !== undefined,
    () => {
      if (!noStore) return store.set(namespace, prompt, llmString, value, bytes, { ttlMs, onlyIfAbsent });
      store.skipStore(namespace);
      return false;
    },
  );
}
