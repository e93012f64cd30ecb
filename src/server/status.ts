import { status, type StatusObject } from "@grpc/grpc-js";
import { DecodeError } from "../rpc/codec.js";
import { CacheError } from "../rpc/errors.js";

/**
 * The one mapping from what a handler throws to the status a client sees:
 * undecodable input is INVALID_ARGUMENT, a CacheError carries its own
 * status, and anything else is INTERNAL with a fixed message, while the
 * original goes to the log (it may hold data that is not the caller's).
 */
export function toStatus(path: string, error: unknown): Pick<StatusObject, "code" | "details"> {
  if (error instanceof DecodeError) return { code: status.INVALID_ARGUMENT, details: error.message };
  if (error instanceof CacheError) return { code: error.grpcCode, details: error.message };
  console.error(`llmcache: ${path} failed:`, error);
  return { code: status.INTERNAL, details: "internal error" };
}
