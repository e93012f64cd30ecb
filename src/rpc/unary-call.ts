import { Metadata, status, type Client, type ServiceError } from "@grpc/grpc-js";
import { passBytes } from "./codec.js";
import { callFailure, fromStatus } from "./status-mapping.js";

export interface UnaryCallOptions {
  /** The call's deadline, from now. */
  timeoutMs: number;
  metadata: Metadata;
  /** Aborting it cancels the call, which then rejects with CANCELLED. */
  signal?: AbortSignal | undefined;
}

/**
 * One unary call, bytes in and bytes out. It rejects with a CacheError that
 * names the method, the status and the server's message, or an
 * EntryTooLargeError (see callFailure in status-mapping.ts).
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
        if (error) {
          const { code, message, reason } = fromStatus(error);
          reject(callFailure(methodName(path), code, message, reason, error));
        } else {
          resolve(response as Buffer);
        }
      },
    );
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

/** "Lookup", from "/llmcache.v1.CacheService/Lookup". */
export function methodName(path: string): string {
  return path.slice(path.lastIndexOf("/") + 1);
}
