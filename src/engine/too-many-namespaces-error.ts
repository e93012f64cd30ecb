/**
 * A new namespace refused because as many namespaces as the store allows
 * already hold entries. Nothing is stored or evicted for it: clearing a
 * namespace, or its entries leaving, makes room.
 */
export class TooManyNamespacesError extends RangeError {
  override readonly name = "TooManyNamespacesError";
  /** The gRPC status a server answers with for it. */
  readonly code = "RESOURCE_EXHAUSTED";
  readonly limit: number;

  constructor(limit: number) {
    super(`too many namespaces: ${limit} namespaces hold entries, the most allowed`);
    this.limit = limit;
  }
}
