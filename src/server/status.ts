import { Metadata, status, type StatusObject } from "@grpc/grpc-js";
import { ENTRY_TOO_LARGE_REASON, EntryTooLargeError } from "../engine/entry-too-large-error.js";
import { DecodeError } from "../rpc/codec.js";
import { CacheError, REASON_TRAILER } from "../rpc/errors.js";
import { TooManyLeaseWaitersError } from "../engine/too-many-lease-waiters-error.js";
import { TooManyNamespacesError } from "../engine/too-many-namespaces-error.js";
import { LimitExceededError } from "./request-limits.js";

/** A failure as a client sees it: a status code, a message, and a reason where the code is not enough. */
export interface Failure {
  code: status;
  message: string;
  reason: string;
}

/**
 * The one mapping from what a handler throws to what the client sees:
 * undecodable input is INVALID_ARGUMENT, a request over one of the server's
 * limits (namespaces too) RESOURCE_EXHAUSTED, an entry larger than a byte budget
 * RESOURCE_EXHAUSTED with the reason "entry_too_large", a CacheError its own
 * status, and anything else INTERNAL with a fixed message, while the
 * original goes to `log` (it may hold data that is not the caller's).
 */
export function toFailure(path: string, error: unknown, log: (path: string, error: unknown) => void = logToConsole): Failure {
  if (error instanceof DecodeError) return { code: status.INVALID_ARGUMENT, message: error.message, reason: "" };
  if (error instanceof EntryTooLargeError) {
    return { code: status.RESOURCE_EXHAUSTED, message: error.message, reason: ENTRY_TOO_LARGE_REASON };
  }
  if (error instanceof LimitExceededError) return { code: status.RESOURCE_EXHAUSTED, message: error.message, reason: "" };
  if (error instanceof TooManyNamespacesError) return { code: status.RESOURCE_EXHAUSTED, message: `${error.message} (--max-namespaces)`, reason: "" };
  if (error instanceof TooManyLeaseWaitersError) {
    const flag = error.limit === "maxWaiters" ? "--max-lease-waiters" : "--max-lease-waiters-per-pair";
    return { code: status.RESOURCE_EXHAUSTED, message: `${error.message} (${flag})`, reason: "" };
  }
  if (error instanceof CacheError) return { code: error.grpcCode, message: error.message, reason: "" };
  log(path, error);
  return { code: status.INTERNAL, message: "internal error", reason: "" };
}

function logToConsole(path: string, error: unknown): void {
  console.error(`llmcache: ${path} failed:`, error);
}

/** The same failure as a call's status. */
export function toStatus(
  path: string,
  error: unknown,
  log?: (path: string, error: unknown) => void,
): Pick<StatusObject, "code" | "details" | "metadata"> {
  const { code, message, reason } = toFailure(path, error, log);
  const metadata = new Metadata();
  if (reason) metadata.set(REASON_TRAILER, reason);
  return { code, details: message, metadata };
}
