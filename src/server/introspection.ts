import { loadSync } from "@grpc/proto-loader";
import { ReflectionService } from "@grpc/reflection";
import type { Server, ServerWritableStream, ServiceDefinition, UntypedServiceImplementation } from "@grpc/grpc-js";
import { HealthImplementation, protoPath as healthProtoPath } from "grpc-health-check";
import { dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { CacheService } from "../../gen/llmcache/v1/cache_pb.js";

// The .proto files ship with the package; reflection serves their descriptors.
const PROTO_ROOT = fileURLToPath(new URL("../../../proto", import.meta.url));
const CACHE_PROTO = "llmcache/v1/cache.proto";

export type ServingStatus = "SERVING" | "NOT_SERVING";

/**
 * The health name of the snapshots, known only when the server keeps one:
 * NOT_SERVING while the latest write failed. The server as a whole still
 * serves then, so "" and CacheService do not follow it.
 */
export const SNAPSHOTS_HEALTH_NAME = "llmcache.v1.Snapshots";

/**
 * The standard services generic tools expect: grpc.health.v1.Health, for
 * the server as a whole ("") and for CacheService, and server reflection,
 * so that grpcurl and the like can list and call the service without the
 * .proto at hand. Health starts NOT_SERVING.
 */
export function addIntrospection(server: Server): {
  setServing(status: ServingStatus): void;
  setSnapshotsServing(status: ServingStatus): void;
  /**
   * For a drain: every name turns NOT_SERVING, its watchers are told, and
   * their Watch calls end (a Watch never ends by itself, and would hold the
   * shutdown for its whole grace).
   */
  drain(): void;
} {
  const health = new HealthImplementation({ "": "NOT_SERVING", [CacheService.typeName]: "NOT_SERVING" });
  const watches = new Set<ServerWritableStream<unknown, unknown>>();
  /** The names with a status (a Watch of any other is told SERVICE_UNKNOWN). */
  const known = new Set(["", CacheService.typeName]);
  // The implementation keeps its watches to itself: its service goes on the server through this, which notes them.
  const noting = {
    addService(service: ServiceDefinition, implementation: UntypedServiceImplementation) {
      const watch = implementation.watch as (call: ServerWritableStream<unknown, unknown>) => void;
      server.addService(service, {
        ...implementation,
        watch(call: ServerWritableStream<unknown, unknown>) {
          watches.add(call);
          call.on("close", () => watches.delete(call));
          watch(call);
        },
      });
    },
  };
  health.addToServer(noting as unknown as Server);
  // Reflection describes what its definition holds: our contract, and health's, so tools see both.
  const definition = loadSync([CACHE_PROTO, "health.proto"], { keepCase: true, includeDirs: [PROTO_ROOT, dirname(healthProtoPath)] });
  new ReflectionService(definition).addToServer(server);
  return {
    setServing(status) {
      health.setStatus("", status);
      health.setStatus(CacheService.typeName, status);
    },
    setSnapshotsServing(status) {
      known.add(SNAPSHOTS_HEALTH_NAME);
      health.setStatus(SNAPSHOTS_HEALTH_NAME, status);
    },
    drain() {
      for (const name of known) health.setStatus(name, "NOT_SERVING");
      for (const call of watches) call.end();
      watches.clear();
    },
  };
}
