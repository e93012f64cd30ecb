import { MessageChannel, receiveMessageOnPort, Worker, type MessagePort } from "node:worker_threads";
import type { ChannelSettings } from "../rpc/channel.js";
import { status } from "@grpc/grpc-js";
import { callFailure, fromFailure } from "../rpc/status-mapping.js";
import { methodName } from "../rpc/unary-call.js";
import type { BlockingReply, BlockingRequest, WorkerStart } from "./blocking-protocol.js";

// How long past its deadline a call may take to come back from the worker
// before the caller stops waiting: the worker enforces the deadline itself,
// this only guards against a worker that has died.
const WORKER_GRACE_MS = 1_000;

/**
 * Makes unary calls that block the calling thread until the reply arrives:
 * a worker thread owns the channels and makes the call (picking the replica
 * and retrying as the async calls do, see ReplicaPicker), and this thread
 * sleeps in Atomics.wait until the worker signals that the reply is posted.
 *
 * The worker starts on the first call (it takes tens of milliseconds) and
 * does not keep the process alive.
 */
export class BlockingCaller {
  readonly #replicas: readonly ChannelSettings[];
  #worker: { thread: Worker; port: MessagePort; replies: Int32Array } | undefined;
  #lastId = 0;

  constructor(replicas: readonly ChannelSettings[]) {
    this.#replicas = replicas;
  }

  /** Returns the reply's bytes, or throws the CacheError (or EntryTooLargeError) the call failed with. */
  call(path: string, request: Uint8Array, timeoutMs: number, replayable: boolean): Uint8Array {
    const { port, replies } = this.#started();
    const id = ++this.#lastId;
    let seen = Atomics.load(replies, 0);
    port.postMessage({ id, path, request, timeoutMs, replayable } satisfies BlockingRequest);

    const giveUpAt = Date.now() + timeoutMs + WORKER_GRACE_MS;
    for (;;) {
      // Replies to earlier calls that gave up waiting may still arrive: skip them.
      for (let received = receiveMessageOnPort(port); received; received = receiveMessageOnPort(port)) {
        const reply = received.message as BlockingReply;
        if (reply.id !== id) continue;
        if (reply.ok) return reply.response;
        throw fromFailure(reply);
      }
      const remainingMs = giveUpAt - Date.now();
      if (remainingMs <= 0) {
        throw callFailure(methodName(path), status.DEADLINE_EXCEEDED, "no reply from the worker thread");
      }
      Atomics.wait(replies, 0, seen, remainingMs);
      seen = Atomics.load(replies, 0);
    }
  }

  close(): Promise<number> | undefined {
    const worker = this.#worker;
    this.#worker = undefined;
    worker?.port.close();
    return worker?.thread.terminate();
  }

  #started() {
    if (this.#worker) return this.#worker;
    const { port1, port2 } = new MessageChannel();
    const replies = new Int32Array(new SharedArrayBuffer(Int32Array.BYTES_PER_ELEMENT));
    const start: WorkerStart = { replicas: this.#replicas, port: port2, replies };
    const thread = new Worker(new URL("./blocking-worker.js", import.meta.url), {
      workerData: start,
      transferList: [port2],
    });
    thread.unref();
    this.#worker = { thread, port: port1, replies };
    return this.#worker;
  }
}
