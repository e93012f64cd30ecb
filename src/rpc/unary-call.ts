import { Metadata, status, type Client, type ServiceError } from "@grpc/grpc-js";
import { passBytes } from "./codec.js";
import { ENTRY_TOO_LARGE_REASON, EntryTooLargeError } from "../engine/entry-too-large-error.js";
import { CacheError, REASON_TRAILER, statusName } from "./errors.js";

export interface UnaryCallOptions {
  /** The call's deadline, from now. */
  timeoutMs: number;
  metadata: Metadata;
  /** Aborting it cancels the call, which then rejects with CANCELLED. */
  signal?: AbortSignal | undefined;
}

/**
 * One unary call, bytes in and bytes out. It rejects with a CacheError that
 * names the method, the status and the server's message.
 */
export function callUnary(client: Client, path: string, request: Buffer, options: UnaryCallOptions): Promise<Buffer> {
  const { signal } = options;
  return new Promise((resolve, reject) => {
    if (signal?.aborted) {
      reject(callFailure(methodName(path), status.CANCELLED, "cancelled before it was sent"));
      return;
    }
    const onAbort = () => call.cancel();
    const call = client.makeUnaryRequest(
      path,
      passBytes,
      passBytes,
      request,
      options.metadata,
      { deadline: Date.now() + options.timeoutMs },
      (error: ServiceError | null, response?: Buffer) => {
        signal?.removeEventListener("abort", onAbort);
        if (error) reject(callFailure(methodName(path), error.code, error.details, error.metadata?.get(REASON_TRAILER)[0]?.toString(), error));
        else resolve(response as Buffer);
      },
    );
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

/**
 * The error a failed call rejects with: a CacheError, "Lookup failed:
 * UNAVAILABLE: ...", or for an entry too large for the server's byte budget
 * the EntryTooLargeError an in-process cache would throw.
 */
export function callFailure(method: string, code: number, details: string, reason?: string, cause?: unknown): CacheError | EntryTooLargeError {
  const message = `${method} failed: ${statusName(code)}: ${details}`;
  if (code === status.RESOURCE_EXHAUSTED && reason === ENTRY_TOO_LARGE_REASON) return new EntryTooLargeError(message, { cause });
  return new CacheError(code, message, { cause });
}

/** "Lookup", from "/llmcache.v1.CacheService/Lookup". */
export function methodName(path: string): string {
  return path.slice(path.lastIndexOf("/") + 1);
}
