import { Metadata, status as Status, type StatusObject } from "@grpc/grpc-js";
import { ENTRY_TOO_LARGE_REASON, EntryTooLargeError } from "../engine/entry-too-large-error.js";
import { CacheError, statusName, type StatusName } from "./errors.js";

// The one mapping between errors, gRPC statuses and llmcache's reason
// trailer, both directions (after connect-es's ConnectError.from and
// protocol-grpc/trailer-status.ts):
//
//   error  --toFailure / toClientFailure-->  Failure  --toStatus-->    status + trailer   (server, worker)
//   status + trailer  --fromStatus-->  Failure  --fromFailure / callFailure-->  error     (client, caller)
//
// A Failure is also the plain object the blocking worker posts to the
// caller's thread, and what a stream's OperationError holds.

/** The trailer in which a server gives a failure's machine-readable reason (OperationError.reason on the stream). */
export const REASON_TRAILER = "llmcache-reason";

/** A failure as a client sees it: a status code, a message, and a reason where the code is not enough. */
export interface Failure {
  code: Status;
  message: string;
  /** "" when the code is enough; "entry_too_large" with RESOURCE_EXHAUSTED for an EntryTooLargeError. */
  reason: string;
}

/**
 * An error that knows the status a server answers it with. The mapping
 * reads this shape, never a class, so that it needs to know no error class
 * above it: CacheError (rpc/errors.ts), DecodeError (rpc/codec.ts),
 * LimitExceededError (rpc/limit-exceeded-error.ts), and the engine's
 * EntryTooLargeError, TooManyNamespacesError and TooManyLeaseWaitersError
 * all carry it.
 *
 * Why a shape matched at run time (duck typing) and not a class or a
 * symbol: engine/ must import nothing above it, and its errors already
 * carried their status by name in `code` ("The gRPC status a server answers
 * with for it"); so engine's classes declare these fields without
 * importing this file, while rpc/ and server/ classes may say `implements
 * StatusCarrier`. TypeScript checks every one of them against this
 * interface in test/rpc/status-mapping.test.ts. An Error counts as a
 * carrier only when `code` is a status's exact name ("RESOURCE_EXHAUSTED"),
 * a string no Node.js error code has ("ENOENT", "ERR_...", "ABORT_ERR").
 */
export interface StatusCarrier {
  readonly message: string;
  /** The status, by name. */
  readonly code: StatusName;
  /** The reason the server gives in REASON_TRAILER, where the code is not enough to tell this failure apart. */
  readonly reason?: string | undefined;
  /** The server's flag that sets the limit this error hit: the message the server gives ends " (--max-namespaces)". */
  readonly limitFlag?: string | undefined;
}

/** Whether `error` carries its status (see StatusCarrier). */
export function carriesStatus(error: unknown): error is StatusCarrier {
  if (!(error instanceof Error)) return false;
  const { code, reason, limitFlag } = error as { code?: unknown; reason?: unknown; limitFlag?: unknown };
  return (
    typeof code === "string" &&
    Object.hasOwn(Status, code) &&
    typeof (Status as Record<string, unknown>)[code] === "number" &&
    (reason === undefined || typeof reason === "string") &&
    (limitFlag === undefined || typeof limitFlag === "string")
  );
}

/** The failure of an error that carries its status; undefined for any other. */
export function failureOf(error: unknown): Failure | undefined {
  if (!carriesStatus(error)) return undefined;
  const message = error.limitFlag ? `${error.message} (${error.limitFlag})` : error.message;
  return { code: Status[error.code], message, reason: error.reason ?? "" };
}

/**
 * What a server answers for what a handler throws: undecodable input is
 * INVALID_ARGUMENT, a request over one of the server's limits (namespaces
 * too) RESOURCE_EXHAUSTED, an entry larger than a byte budget
 * RESOURCE_EXHAUSTED with the reason "entry_too_large", a CacheError its own
 * status (each from its StatusCarrier fields), and anything else INTERNAL
 * with a fixed message, while the original goes to `log` (it may hold data
 * that is not the caller's).
 */
export function toFailure(path: string, error: unknown, log: (path: string, error: unknown) => void = logToConsole): Failure {
  const failure = failureOf(error);
  if (failure) return failure;
  log(path, error);
  return { code: Status.INTERNAL, message: "internal error", reason: "" };
}

function logToConsole(path: string, error: unknown): void {
  console.error(`llmcache: ${path} failed:`, error);
}

/**
 * The same mapping on a client's side, where the error is the caller's own
 * and is shown whole: one that does not carry its status is INTERNAL with
 * its text. The blocking worker posts this to the caller's thread.
 */
export function toClientFailure(error: unknown): Failure {
  return failureOf(error) ?? { code: Status.INTERNAL, message: String(error), reason: "" };
}

/** A failure as a call's status: the code, the message as details, and the reason, if any, in REASON_TRAILER. */
export function toStatus(failure: Failure): Pick<StatusObject, "code" | "details" | "metadata"> {
  const metadata = new Metadata();
  if (failure.reason) metadata.set(REASON_TRAILER, failure.reason);
  return { code: failure.code, details: failure.message, metadata };
}

/** A failed call's status (grpc-js's ServiceError is one) as a failure, its reason read from REASON_TRAILER. */
export function fromStatus(status: Pick<StatusObject, "code" | "details"> & { metadata?: Metadata | undefined }): Failure {
  const reason = status.metadata?.get(REASON_TRAILER)[0]?.toString() ?? "";
  return { code: status.code, message: status.details, reason };
}

/**
 * The error for a failure, its message unchanged: the EntryTooLargeError an
 * in-process cache would throw for RESOURCE_EXHAUSTED with the reason
 * "entry_too_large", else a CacheError with the failure's code.
 */
export function fromFailure(failure: Failure, cause?: unknown): CacheError | EntryTooLargeError {
  const options = cause === undefined ? undefined : { cause };
  if (failure.code === Status.RESOURCE_EXHAUSTED && failure.reason === ENTRY_TOO_LARGE_REASON) {
    return new EntryTooLargeError(failure.message, options);
  }
  return new CacheError(failure.code, failure.message, options);
}

/**
 * The error a failed call rejects with: fromFailure's, with a message that
 * names the method and the status, "Lookup failed: UNAVAILABLE: ...".
 */
export function callFailure(method: string, code: Status, details: string, reason = "", cause?: unknown): CacheError | EntryTooLargeError {
  return fromFailure({ code, message: `${method} failed: ${statusName(code)}: ${details}`, reason }, cause);
}
