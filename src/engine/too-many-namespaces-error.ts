/**
 * A new namespace refused because as many namespaces as the store allows
 * already hold entries. Nothing is stored or evicted for it: clearing a
 * namespace, or its entries leaving, makes room.
 */
export class TooManyNamespacesError extends RangeError {
  override readonly name = "TooManyNamespacesError";
  /**
   * The gRPC status a server answers with for it, and the server's flag
   * that sets the limit: the shape rpc/status-mapping.ts reads as a
   * StatusCarrier (engine imports nothing above it).
   */
  readonly code = "RESOURCE_EXHAUSTED";
  readonly limitFlag = "--max-namespaces";
  readonly limit: number;

  constructor(limit: number) {
    super(`too many namespaces: ${limit} namespaces hold entries, the most allowed`);
    this.limit = limit;
  }
}
