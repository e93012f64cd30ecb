import { create, toBinary } from "@bufbuild/protobuf";
import { Server, ServerCredentials, type sendUnaryData, type ServerUnaryCall } from "@grpc/grpc-js";
import { CacheService, LookupResponseSchema } from "../gen/llmcache/v1/cache_pb.js";
import { byteServiceDefinition } from "../src/rpc/service-definition.js";
import { generationOf } from "./workload.js";

// The transport's own cost: the same grpc-js server and service definition
// as llmcache's, whose Lookup answers at once with a fixed reply of the same
// size as a 500 B hit. What llmcache's Lookup costs beyond this is the cache.
const reply = Buffer.from(toBinary(LookupResponseSchema, create(LookupResponseSchema, { hit: true, generations: [{ text: generationOf(500)[0]!.text }] })));
const answer = (_call: ServerUnaryCall<Buffer, Buffer>, callback: sendUnaryData<Buffer>) => callback(null, reply);

const server = new Server();
server.addService(byteServiceDefinition(CacheService), Object.fromEntries(CacheService.methods.map((m) => [m.localName, answer])));
server.bindAsync("127.0.0.1:0", ServerCredentials.createInsecure(), (error, port) => {
  if (error) throw error;
  console.log(`empty server listening on 127.0.0.1:${port}`);
});
process.on("SIGTERM", () => server.tryShutdown(() => process.exit(0)));
