import type { ReclaimableStore } from "./store.js";

/** Checks per round, and rounds per tick at most: a tick looks at no more than 1,024 entries. */
const CHECKS_PER_ROUND = 64;
const MAX_ROUNDS = 16;

/**
 * Removes expired entries in the background, every `intervalMs`, on a timer
 * that does not keep the process alive and that starts only once an entry
 * can expire: a store without TTLs costs no timer. Each tick goes on for
 * another round only while a round still finds a quarter of what it looks
 * at expired (as Redis does), so it keeps up with a wave of expiries
 * without ever holding the event loop for long. The store is held weakly: a
 * store nobody uses is collected, and its timer stops. Returns a function
 * that stops it.
 */
export function reclaimInBackground(store: ReclaimableStore, intervalMs: number): () => void {
  const held = new WeakRef(store);
  let timer: NodeJS.Timeout | undefined;
  let stopped = false;
  store.onceEntriesCanExpire(() => {
    if (stopped) return;
    timer = setInterval(() => {
      const current = held.deref();
      if (!current) {
        clearInterval(timer);
        return;
      }
      for (let round = 0; round < MAX_ROUNDS; round++) {
        if (current.reclaimExpired(CHECKS_PER_ROUND) < CHECKS_PER_ROUND / 4) break;
      }
    }, intervalMs);
    timer.unref();
  });
  return () => {
    stopped = true;
    clearInterval(timer);
  };
}
