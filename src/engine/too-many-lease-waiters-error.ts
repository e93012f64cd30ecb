/**
 * A lookup refused rather than made to wait for a pair's fill, because as
 * many lookups as the limit allows already wait (for that pair, or in all).
 */
export class TooManyLeaseWaitersError extends RangeError {
  override readonly name = "TooManyLeaseWaitersError";
  /**
   * The gRPC status a server answers with for it, and the server's flag
   * that sets the limit: the shape rpc/status-mapping.ts reads as a
   * StatusCarrier (engine imports nothing above it).
   */
  readonly code = "RESOURCE_EXHAUSTED";
  readonly limit: "maxWaiters" | "maxWaitersPerPair";
  readonly value: number;

  constructor(limit: "maxWaiters" | "maxWaitersPerPair", value: number) {
    super(`too many lookups waiting for a lease's fill: ${value} wait ${limit === "maxWaiters" ? "in all" : "for this pair"}, the most allowed`);
    this.limit = limit;
    this.value = value;
  }

  get limitFlag(): string {
    return this.limit === "maxWaiters" ? "--max-lease-waiters" : "--max-lease-waiters-per-pair";
  }
}
