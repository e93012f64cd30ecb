import { Server, ServerCredentials } from "@grpc/grpc-js";
import { createServer, type Server as NetServer } from "node:net";
import { CacheService } from "../../gen/llmcache/v1/cache_pb.js";
import { byteServiceDefinition } from "../../src/rpc/service-definition.js";

/** A real gRPC server for CacheService whose handlers never answer. */
export async function startStalledGrpcServer(): Promise<{ address: string; stop(): void }> {
  const server = new Server();
  const never = () => {};
  server.addService(
    byteServiceDefinition(CacheService),
    Object.fromEntries(CacheService.methods.map((method) => [method.localName, never])),
  );
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync("127.0.0.1:0", ServerCredentials.createInsecure(), (error, bound) => (error ? reject(error) : resolve(bound))),
  );
  return { address: `127.0.0.1:${port}`, stop: () => server.forceShutdown() };
}

/**
 * A TCP listener that accepts connections and never says a word: a client
 * connecting to it waits for HTTP/2 until its deadline. The kernel accepts
 * the connection, so it works even while this thread is blocked.
 */
export async function startSilentListener(): Promise<{ address: string; stop(): void }> {
  const sockets = new Set<import("node:net").Socket>();
  const server: NetServer = createServer((socket) => sockets.add(socket));
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as import("node:net").AddressInfo;
  return {
    address: `127.0.0.1:${port}`,
    stop: () => {
      for (const socket of sockets) socket.destroy();
      server.close();
    },
  };
}

/** A port nothing listens on: bound once, then released. */
export async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as import("node:net").AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}
