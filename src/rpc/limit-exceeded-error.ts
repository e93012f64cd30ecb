import type { StatusCarrier } from "./status-mapping.js";

/**
 * A request over one of the server's limits: RESOURCE_EXHAUSTED. The server
 * says which limit (server/request-limits.ts); the codecs only carry it, and
 * say where in a batch or stream it was hit.
 */
export class LimitExceededError extends Error implements StatusCarrier {
  override readonly name = "LimitExceededError";
  /** The gRPC status a server answers with for it. */
  readonly code = "RESOURCE_EXHAUSTED";

  /** `where` prefixes the message of another LimitExceededError: "updates[3]: ...". */
  constructor(where: string, inner: LimitExceededError);
  constructor(message: string);
  constructor(messageOrWhere: string, inner?: LimitExceededError) {
    super(inner ? `${messageOrWhere}: ${inner.message}` : messageOrWhere);
  }
}
