import type { MessagePort } from "node:worker_threads";
import type { ChannelSettings } from "../rpc/channel.js";
import type { Failure } from "../rpc/status-mapping.js";

/** What the blocking caller's worker thread starts with. */
export interface WorkerStart {
  /** One per replica, as CacheClient has them. */
  replicas: readonly ChannelSettings[];
  /** The caller's end of the channel the requests and replies cross. */
  port: MessagePort;
  /** Bumped and notified by the worker after each reply it posts. */
  replies: Int32Array;
}

export interface BlockingRequest {
  id: number;
  path: string;
  request: Uint8Array;
  timeoutMs: number;
  /** Whether it may be sent again to another replica after UNAVAILABLE. */
  replayable: boolean;
}

/** A call's bytes, or how it failed (toClientFailure in the worker, fromFailure in the caller). */
export type BlockingReply = { id: number; ok: true; response: Uint8Array } | ({ id: number; ok: false } & Failure);
