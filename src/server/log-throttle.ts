/**
 * Calls `log` at most once per kind per interval, telling it how many of
 * that kind went unlogged since its last line: one client that sends the
 * same bad request a million times must not write a million lines.
 */
export function throttledLog<T>(log: (item: T, suppressed: number) => void, kindOf: (item: T) => string, intervalMs: number, now: () => number = Date.now) {
  const kinds = new Map<string, { loggedAt: number; suppressed: number }>();
  return (item: T): void => {
    const kind = kindOf(item);
    const time = now();
    const seen = kinds.get(kind);
    if (seen && time - seen.loggedAt < intervalMs) {
      seen.suppressed++;
      return;
    }
    log(item, seen?.suppressed ?? 0);
    kinds.set(kind, { loggedAt: time, suppressed: 0 });
    // Kinds are few (a method and an error's name); forget them all now and then so the map stays small.
    if (kinds.size > 1_000) kinds.clear();
  };
}
