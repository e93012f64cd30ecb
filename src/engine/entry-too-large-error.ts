/**
 * An entry that could never fit: larger on its own than a byte budget. It
 * is not stored, and nothing is evicted for it. InMemoryCache throws it, and
 * so does CacheClient when the server refuses an entry for this reason, so
 * that one catch serves both.
 */
export class EntryTooLargeError extends RangeError {
  override readonly name = "EntryTooLargeError";
  /**
   * The gRPC status a server answers with for it, and the reason it gives:
   * the shape rpc/status-mapping.ts reads as a StatusCarrier (engine
   * imports nothing above it).
   */
  readonly code = "RESOURCE_EXHAUSTED";
  readonly reason = ENTRY_TOO_LARGE_REASON;

  static forBudget(entryBytes: number, budgetBytes: number, namespace: string | undefined): EntryTooLargeError {
    const budget = namespace === undefined ? "the cache's byte budget" : `the byte budget of namespace "${namespace}"`;
    return new EntryTooLargeError(`entry too large: ${entryBytes} bytes accounted, more than ${budget} of ${budgetBytes}`);
  }
}

/** The reason a server gives, with RESOURCE_EXHAUSTED, for an EntryTooLargeError. */
export const ENTRY_TOO_LARGE_REASON = "entry_too_large";
