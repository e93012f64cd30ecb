import assert from "node:assert/strict";
import { once } from "node:events";
import { setTimeout as sleep } from "node:timers/promises";
import { create, toBinary } from "@bufbuild/protobuf";
import { Metadata, status, type Client, type ClientDuplexStream, type StatusObject } from "@grpc/grpc-js";
import { CacheService, StreamRequestSchema } from "../../gen/llmcache/v1/cache_pb.js";
import { passBytes } from "../../src/rpc/codec.js";
import { openChannel } from "../../src/rpc/channel.js";
import { methodPath } from "../../src/rpc/service-definition.js";
import { REFUSAL_WAIT_MS } from "../../src/server/method-handlers.js";
import { writeAuthFile } from "../helpers/auth-file.js";
import { startServerProcess, type ServerProcess } from "../helpers/server-process.js";

const TOKEN = "token-of-the-team";

/**
 * When a stream is refused. grpcio's asyncio client reports a stream that
 * ends while it is still sending as INTERNAL (grpc/grpc#36066), so the
 * server refuses a stream once its first message has come.
 */
describe("accepting and refusing a Stream", function () {
  this.timeout(20_000);
  let server: ServerProcess;
  let channel: Client;

  before(async () => {
    const authFile = writeAuthFile([{ name: "team", token: TOKEN, read: ["team"], write: ["team"] }]);
    server = await startServerProcess(["--auth-file", authFile]);
    channel = openChannel({ address: server.address });
  });
  after(async () => {
    channel.close();
    await server.stop();
  });

  function open(token: string): { call: ClientDuplexStream<Buffer, Buffer>; ended: Promise<StatusObject> } {
    const metadata = new Metadata();
    metadata.set("authorization", `Bearer ${token}`);
    const call = channel.makeBidiStreamRequest(methodPath(CacheService.method.stream), passBytes, passBytes, metadata);
    call.on("error", () => {});
    const ended = new Promise<StatusObject>((resolve) => call.on("status", resolve));
    return { call, ended };
  }

  const lookup = Buffer.from(
    toBinary(StreamRequestSchema, create(StreamRequestSchema, { operations: [{ id: 1, operation: { case: "lookup", value: { prompt: "p", llmString: "l", namespace: "team" } } }] })),
  );

  /** The stream's status, or "open" if it has none after `ms`. */
  async function statusWithin(ended: Promise<StatusObject>, ms: number): Promise<StatusObject | "open"> {
    return Promise.race([ended, sleep(ms, "open" as const)]);
  }

  it("refuses a wrong token once the stream's first message has come, not at its headers", async () => {
    const { call, ended } = open("not-the-token");
    try {
      assert.equal(await statusWithin(ended, REFUSAL_WAIT_MS / 2), "open");
      call.write(lookup);
      const refused = await statusWithin(ended, REFUSAL_WAIT_MS / 2);
      assert.notEqual(refused, "open", "the first message brings the refusal at once");
      assert.deepEqual(refused === "open" ? refused : [status[refused.code], refused.details], ["UNAUTHENTICATED", "unknown token"]);
    } finally {
      call.cancel();
    }
  });

  it("refuses a wrong token when the client ends its side without a message", async () => {
    const { call, ended } = open("not-the-token");
    call.end();
    const refused = await statusWithin(ended, REFUSAL_WAIT_MS / 2);
    assert.deepEqual(refused === "open" ? refused : status[refused.code], "UNAUTHENTICATED");
  });

  it(`refuses a wrong token on a stream that sends nothing after ${REFUSAL_WAIT_MS} ms`, async () => {
    const started = performance.now();
    const { call, ended } = open("not-the-token");
    try {
      const refused = await statusWithin(ended, REFUSAL_WAIT_MS + 3_000);
      const waited = performance.now() - started;
      assert.deepEqual(refused === "open" ? refused : status[refused.code], "UNAUTHENTICATED");
      assert.ok(waited >= REFUSAL_WAIT_MS - 50, `refused after ${waited.toFixed(0)} ms`);
    } finally {
      call.cancel();
    }
  });

  it("answers on an accepted stream as before", async () => {
    const { call, ended } = open(TOKEN);
    const answered = once(call, "data");
    call.write(lookup);
    await answered;
    call.end();
    assert.equal((await ended).code, status.OK);
  });
});
