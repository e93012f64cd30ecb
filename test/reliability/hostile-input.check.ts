import assert from "node:assert/strict";
import { connect, type ClientHttp2Session } from "node:http2";
import { create, toBinary } from "@bufbuild/protobuf";
import { status } from "@grpc/grpc-js";
import {
  BatchLookupRequestSchema,
  BatchUpdateRequestSchema,
  CacheService,
  ClearRequestSchema,
  LookupRequestSchema,
  StreamRequestSchema,
  UpdateRequestSchema,
} from "../../gen/llmcache/v1/cache_pb.js";
import { CacheClient } from "../../src/index.js";
import { methodPath } from "../../src/rpc/service-definition.js";
import { grpcFrame } from "../helpers/raw-grpc.js";
import { startRedis, type PrivateRedis } from "../helpers/redis-servers.js";
import { COLLECTABLE, memoryAfterCollection, partsGrown } from "../helpers/memory.js";
import { startServerProcess, type ServerProcess } from "../helpers/server-process.js";
import { add, record } from "./figures.js";

const FRAMES_PER_RPC = Number(process.env.HOSTILE_FRAMES ?? 10_000);
const IN_FLIGHT = 32;

/** A small deterministic generator, so that a failure can be replayed from its seed. */
function random(seed: number) {
  let state = seed >>> 0;
  const next = () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  return { next, int: (below: number) => Math.floor(next() * below), pick: <T>(items: readonly T[]) => items[Math.floor(next() * items.length)]! };
}

const varint = (n: number) => {
  const bytes: number[] = [];
  while (n >= 0x80) {
    bytes.push((n % 0x80) | 0x80);
    n = Math.floor(n / 0x80);
  }
  bytes.push(n);
  return bytes;
};
const field = (number: number, body: Uint8Array | number[]) =>
  Buffer.concat([Buffer.from([...varint((number << 3) | 2), ...varint(body.length)]), Buffer.from(body)]);

/** google.protobuf.Structs nested 0 to 500 levels deep: {"k": {"k": ...}}, built once. */
const NESTED_STRUCTS: Buffer[] = [Buffer.alloc(0)];
for (let depth = 1; depth <= 500; depth++) {
  const value = field(5, NESTED_STRUCTS[depth - 1]!); // Value.struct_value
  NESTED_STRUCTS.push(field(1, Buffer.concat([field(1, Buffer.from("k")), field(2, value)]))); // Struct.fields map entry
}

/** Well-formed requests of each RPC, the seeds the mutations start from. */
function validRequests(rpc: string): Buffer[] {
  const update = { prompt: "p", llmString: "l", namespace: "hostile", generations: [{ text: "t", generationInfo: { a: [1, "b", null] } }], ttlMs: 60_000n };
  switch (rpc) {
    case "Lookup":
      return [Buffer.from(toBinary(LookupRequestSchema, create(LookupRequestSchema, { prompt: "p", llmString: "l", namespace: "hostile" })))];
    case "Update":
      return [Buffer.from(toBinary(UpdateRequestSchema, create(UpdateRequestSchema, update)))];
    case "Clear":
      return [Buffer.from(toBinary(ClearRequestSchema, create(ClearRequestSchema, { namespace: "hostile" })))];
    case "BatchLookup":
      return [Buffer.from(toBinary(BatchLookupRequestSchema, create(BatchLookupRequestSchema, { lookups: [{ prompt: "a" }, { prompt: "b", namespace: "hostile" }] })))];
    case "BatchUpdate":
      return [Buffer.from(toBinary(BatchUpdateRequestSchema, create(BatchUpdateRequestSchema, { updates: [update, { ...update, prompt: "q" }] })))];
    case "Stream":
      return [
        Buffer.from(
          toBinary(
            StreamRequestSchema,
            create(StreamRequestSchema, {
              operations: [
                { id: 1, operation: { case: "lookup", value: { prompt: "p", namespace: "hostile" } } },
                { id: 2, operation: { case: "update", value: update } },
              ],
            }),
          ),
        ),
      ];
    default:
      return [Buffer.alloc(0)];
  }
}

type Mutation = (bytes: Buffer, rng: ReturnType<typeof random>) => Buffer;

/** The ways a frame is made hostile; each frame gets one or two. */
const MUTATIONS: Record<string, Mutation> = {
  "random bytes": (_bytes, rng) => Buffer.from(Array.from({ length: rng.int(300) }, () => rng.int(256))),
  truncation: (bytes, rng) => bytes.subarray(0, rng.int(bytes.length + 1)),
  "flipped bits": (bytes, rng) => {
    const copy = Buffer.from(bytes);
    for (let i = 0, n = 1 + rng.int(4); i < n && copy.length > 0; i++) copy[rng.int(copy.length)]! ^= 1 << rng.int(8);
    return copy;
  },
  "wrong wire type": (bytes, rng) => {
    const copy = Buffer.from(bytes);
    if (copy.length > 0) copy[0] = (copy[0]! & ~7) | rng.pick([0, 1, 3, 4, 5, 6, 7]);
    return copy;
  },
  "invalid UTF-8": (_bytes, rng) =>
    Buffer.concat([field(rng.pick([1, 2, 3, 4]), rng.pick([[0xc3, 0x28], [0xff], [0xed, 0xa0, 0x80], [0xf4, 0x90, 0x80, 0x80], [0xe2, 0x82]]))]),
  "deep nesting in Struct": (_bytes, rng) => {
    const generation = field(2, NESTED_STRUCTS[20 + rng.int(480)]!); // Generation.generation_info
    return Buffer.concat([field(1, Buffer.from("p")), field(3, generation)]);
  },
  "huge lengths": (_bytes, rng) => Buffer.from([(rng.pick([1, 2, 3, 4]) << 3) | 2, ...varint(rng.pick([2 ** 31 - 1, 2 ** 32 + 5, 2 ** 40])), 0x41]),
  "repeated and reordered fields": (bytes, rng) => Buffer.concat(Array.from({ length: 1 + rng.int(4) }, () => bytes.subarray(rng.int(bytes.length)))),
};

/** Sends frames on one HTTP/2 connection, `IN_FLIGHT` at a time, and collects each answer's grpc-status. */
class FrameSender {
  readonly session: ClientHttp2Session;
  constructor(address: string) {
    this.session = connect(`http://${address}`);
    this.session.on("error", () => {});
  }

  send(path: string, body: Buffer): Promise<number | undefined> {
    return new Promise((resolve) => {
      const stream = this.session.request({ ":method": "POST", ":path": path, "content-type": "application/grpc", te: "trailers" });
      let code: number | undefined;
      const take = (fields: Record<string, unknown>) => {
        if (fields["grpc-status"] !== undefined) code = Number(fields["grpc-status"]);
      };
      stream.on("response", take);
      stream.on("trailers", take);
      stream.on("data", () => {});
      stream.on("error", () => resolve(undefined));
      stream.on("close", () => resolve(code));
      stream.end(body);
    });
  }

  close(): void {
    this.session.close();
  }
}

/** The stores a replica may run on: hostile frames must be refused before they reach either. */
const STORES: { name: string; redis: boolean }[] = [
  { name: "", redis: false },
  // A Redis of its own: the shared one holds every other test's keys, which the hostile clears would scan and the memory figures would see.
  { name: " to a replica on Redis", redis: true },
];

for (const store of STORES) {
  describe(`hostile input${store.name}`, function () {
    this.timeout(300_000);
    let server: ServerProcess;
    let redis: PrivateRedis | undefined;

    before(async () => {
      redis = store.redis ? await startRedis() : undefined;
      server = await startServerProcess(redis ? ["--store", redis.url] : ["--max-bytes", "64MiB"], {}, COLLECTABLE);
    });
    after(async () => {
      await server.stop();
      await redis?.stop();
    });

    it(`answers ${FRAMES_PER_RPC.toLocaleString("en")} hostile frames per RPC with a proper status, never crashing, and gives its memory back`, async () => {
      const client = new CacheClient({ address: server.address });
      const sender = new FrameSender(server.address);
      try {
        const statuses = new Map<string, number>();
        let frames = 0;
        const rng = random(20261126);
        /** Sends `perRpc` hostile frames to every RPC, checking every answer. */
        const attack = async (perRpc: number) => {
          for (const method of CacheService.methods) {
            const path = methodPath(method);
            const seeds = validRequests(method.name);
            const mutations = Object.values(MUTATIONS);
            let sent = 0;
            const worker = async () => {
              while (sent < perRpc) {
                sent++;
                let body = rng.pick(seeds);
                for (let m = 0, n = 1 + rng.int(2); m < n; m++) body = rng.pick(mutations)(body, rng);
                const code = await sender.send(path, grpcFrame(body));
                frames++;
                const name = code === undefined ? "no status" : (status[code] ?? String(code));
                statuses.set(name, (statuses.get(name) ?? 0) + 1);
                if (code === undefined || code === status.INTERNAL || code === status.UNKNOWN) {
                  assert.fail(`${method.name}: ${name} for ${body.toString("hex")}`);
                }
              }
            };
            await Promise.all(Array.from({ length: IN_FLIGHT }, worker));
            assert.equal(server.child.exitCode, null, `the server survived ${method.name}`);
          }
        };
        // A first, smaller round: the baseline is a server that has seen this traffic before.
        await attack(FRAMES_PER_RPC / 10);
        await client.aclear({ allNamespaces: true });
        const baseline = await memoryAfterCollection(server);
        await attack(FRAMES_PER_RPC);
        // The hostile Clear calls may well have cleared the canary: store it again to see the server still works.
        await client.aupdate("canary", "llm", [{ text: "still here" }]);
        assert.deepEqual(await client.alookup("canary", "llm"), [{ text: "still here" }], "the server still answers normally");
        await client.aclear({ allNamespaces: true });
        const after = await memoryAfterCollection(server);
        const heapGrownMiB = (after.heap - baseline.heap) / 2 ** 20;
        const residentGrownMiB = (after.resident - baseline.resident) / 2 ** 20;
        record(`hostile frames tried${store.name}`, frames);
        record(`hostile frames' statuses${store.name}`, [...statuses].map(([name, count]) => `${name} ${count}`).join(", "));
        const change = (mib: number) => `${mib >= 0 ? "+" : ""}${mib.toFixed(1)} MiB`;
        record(
          `server memory after hostile input${store.name}`,
          `heap and Buffers ${change(heapGrownMiB)}, resident ${(after.resident / 2 ** 20).toFixed(0)} MiB (${change(residentGrownMiB)}) on the baseline`,
        );
        assert.ok(frames >= FRAMES_PER_RPC * CacheService.methods.length);
        // A leak grows the heap; resident memory also keeps pages the allocator holds on to (+10 to +36 MiB over runs).
        assert.ok(heapGrownMiB < 8, `the heap and Buffers grew by ${heapGrownMiB.toFixed(1)} MiB and stayed: ${partsGrown(baseline, after)}`);
        assert.ok(residentGrownMiB < 64, `resident memory grew by ${residentGrownMiB.toFixed(1)} MiB and stayed`);
      } finally {
        sender.close();
        await client.close();
      }
      add("crashes", server.child.exitCode === null ? 0 : 1);
    });
  });
}
