import { workerData } from "node:worker_threads";
import { asBuffer } from "../rpc/codec.js";
import { callMetadata } from "../rpc/channel.js";
import { toClientFailure } from "../rpc/status-mapping.js";
import { callUnary } from "../rpc/unary-call.js";
import type { BlockingReply, BlockingRequest, WorkerStart } from "./blocking-protocol.js";
import { ReplicaPicker } from "./replica-picker.js";

// The thread behind CacheClient's blocking methods: it makes the calls with
// an event loop of its own while the caller's thread waits on `replies`.
const { replicas, port, replies } = workerData as WorkerStart;
const picker = new ReplicaPicker(replicas);

port.on("message", async ({ id, path, request, timeoutMs, replayable }: BlockingRequest) => {
  let reply: BlockingReply;
  try {
    const response = await picker.call(timeoutMs, replayable, (replica, remainingMs) =>
      callUnary(picker.channels[replica]!, path, asBuffer(request), { timeoutMs: remainingMs, metadata: callMetadata(replicas[replica]!) }),
    );
    reply = { id, ok: true, response };
  } catch (error) {
    reply = { id, ok: false, ...toClientFailure(error) };
  }
  port.postMessage(reply);
  Atomics.add(replies, 0, 1);
  Atomics.notify(replies, 0);
});
