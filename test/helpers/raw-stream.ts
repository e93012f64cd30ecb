import { create, fromBinary, toBinary, type MessageInitShape } from "@bufbuild/protobuf";
import { Metadata, type ClientDuplexStream } from "@grpc/grpc-js";
import { CacheService, StreamRequestSchema, StreamResponseSchema, type StreamResponse } from "../../gen/llmcache/v1/cache_pb.js";
import { passBytes } from "../../src/rpc/codec.js";
import { openChannel } from "../../src/rpc/channel.js";
import { methodPath } from "../../src/rpc/service-definition.js";

/** A Stream call as a client in another language makes it: protobuf-es messages, one at a time. */
export interface RawStream {
  call: ClientDuplexStream<Buffer, Buffer>;
  send(request: MessageInitShape<typeof StreamRequestSchema>): void;
  /** The next response message, as it comes. */
  next(): Promise<StreamResponse>;
  close(): void;
}

export function openRawStream(address: string, metadata = new Metadata()): RawStream {
  const channel = openChannel({ address });
  const call = channel.makeBidiStreamRequest(methodPath(CacheService.method.stream), passBytes, passBytes, metadata);
  const responses: StreamResponse[] = [];
  const waiting: ((response: StreamResponse) => void)[] = [];
  call.on("data", (bytes: Buffer) => {
    const response = fromBinary(StreamResponseSchema, bytes);
    const waiter = waiting.shift();
    if (waiter) waiter(response);
    else responses.push(response);
  });
  call.on("error", () => {});
  return {
    call,
    send: (request) => call.write(Buffer.from(toBinary(StreamRequestSchema, create(StreamRequestSchema, request)))),
    next: () => (responses.length > 0 ? Promise.resolve(responses.shift()!) : new Promise((resolve) => waiting.push(resolve))),
    close: () => {
      call.end();
      channel.close();
    },
  };
}
