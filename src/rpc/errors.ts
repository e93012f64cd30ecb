import { status as Status } from "@grpc/grpc-js";

export type StatusName = keyof typeof Status;

/**
 * The one error type of llmcache's RPC layer: a gRPC status code, by name,
 * and a message that says what failed and why. A client rejects with it; a
 * server handler throws it to answer with that status (status-mapping.ts
 * maps it both ways).
 */
export class CacheError extends Error {
  override readonly name = "CacheError";
  /** The status as a name, e.g. "DEADLINE_EXCEEDED". */
  readonly code: StatusName;
  /** The same status as grpc-js's number. */
  readonly grpcCode: Status;

  constructor(code: StatusName | Status, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.grpcCode = typeof code === "number" ? code : Status[code];
    this.code = statusName(this.grpcCode);
  }
}

export function statusName(code: number): StatusName {
  return (Status[code] as StatusName | undefined) ?? "UNKNOWN";
}
