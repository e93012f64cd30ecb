// What one caller's unary Lookup (500 B hit) spends beyond a
// bare node:http2 round trip, and whether a client transport on bare
// node:http2 would close the gap to ioredis's GET.
//
// One run, one caller, sequential calls, every variant interleaved in rounds
// (the starting variant rotates each round) so that load on a shared machine
// falls on all alike. Per variant: the median over rounds of each round's
// p50 and p99, the pooled p50/p99 of all calls, and the CPU each call cost the
// client (process.cpuUsage) and the server (/proc/<pid>/stat).
// Then, unless --no-profile: a CPU profile of a second llmcache server
// (node --cpu-prof) and of a client child process (node --cpu-prof) while one caller
// does lookups (CacheClient unary, auto-batched, bare http2), by self time.
//
//   npx tsc -p . --noEmitOnError false && node dist/bench/transport-probe.js [--rounds 8] [--calls 2500] [--profile-seconds 5] [--no-profile]
//
// `--h2-fixed-server` (internal) runs a bare node:http2 server that answers
// every call with a fixed 500 B hit: HTTP/2's own floor on the server side.

import { create, toBinary } from "@bufbuild/protobuf";
import { Client, credentials, Metadata, type ServiceError } from "@grpc/grpc-js";
import { spawn, type ChildProcess } from "node:child_process";
import { once } from "node:events";
import { readFileSync, readdirSync, mkdtempSync } from "node:fs";
import * as http2 from "node:http2";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { Redis } from "ioredis";
import { LookupRequestSchema, LookupResponseSchema, StreamRequestSchema } from "../gen/llmcache/v1/cache_pb.js";
import { decodeLookupResponse, encodeLookupRequest } from "../src/rpc/codec/lookup.js";
import { CacheClient } from "../src/index.js";
import { startServerProcess, type ServerProcess } from "../test/helpers/server-process.js";
import { cpuSeconds, startEmptyServer, startRedis, wrap, type RunningProcess } from "./processes.js";
import { generationOf, KEYS, LLM_STRING, promptOf, valueOf } from "./workload.js";

/** Everything this probe started, killed at exit whatever happened. */
const children: ChildProcess[] = [];
process.on("exit", () => {
  for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
});

const LOOKUP_PATH = "/llmcache.v1.CacheService/Lookup";
const STREAM_PATH = "/llmcache.v1.CacheService/Stream";
const BYTES = 500;

function fixedReply(): Buffer {
  return Buffer.from(toBinary(LookupResponseSchema, create(LookupResponseSchema, { hit: true, generations: [{ text: valueOf(BYTES, 7) }] })));
}

function grpcFrame(message: Uint8Array): Buffer {
  const frame = Buffer.allocUnsafe(5 + message.length);
  frame[0] = 0;
  frame.writeUInt32BE(message.length, 1);
  frame.set(message, 5);
  return frame;
}

/** A gRPC unary client on one bare node:http2 session: one stream per call. */
class H2Grpc {
  readonly session: http2.ClientHttp2Session;
  constructor(address: string) {
    this.session = http2.connect(`http://${address}`, { settings: { initialWindowSize: 16 * 1024 * 1024 } });
    this.session.on("error", () => {});
  }
  call(path: string, message: Uint8Array): Promise<Buffer> {
    return new Promise((resolve, reject) => {
      const stream = this.session.request({ ":method": "POST", ":path": path, "content-type": "application/grpc", te: "trailers" }, { endStream: false });
      let status = -1;
      let first: Buffer | undefined;
      let more: Buffer[] | undefined;
      stream.on("response", (headers) => {
        if (headers["grpc-status"] !== undefined) status = Number(headers["grpc-status"]); // trailers-only
      });
      stream.on("trailers", (trailers) => (status = Number(trailers["grpc-status"])));
      stream.on("data", (chunk: Buffer) => {
        if (first === undefined) first = chunk;
        else (more ??= [first]).push(chunk);
      });
      stream.on("error", reject);
      stream.on("end", () => {
        if (status !== 0) return reject(new Error(`grpc-status ${status}`));
        const body = more ? Buffer.concat(more) : first;
        if (!body || body.length < 5 || body[0] !== 0) return reject(new Error("malformed reply"));
        resolve(body.subarray(5, 5 + body.readUInt32BE(1)));
      });
      stream.end(grpcFrame(message));
    });
  }
  close(): void {
    this.session.close();
  }
}

/** The bidi Stream method on bare node:http2: one long-lived stream, one gRPC message per call. */
class H2GrpcStream {
  readonly #stream: http2.ClientHttp2Stream;
  readonly #waiting: ((message: Buffer) => void)[] = [];
  #buffered: Buffer = Buffer.alloc(0);
  constructor(h2: H2Grpc, path: string) {
    this.#stream = h2.session.request({ ":method": "POST", ":path": path, "content-type": "application/grpc", te: "trailers" }, { endStream: false });
    this.#stream.on("error", () => {});
    this.#stream.on("data", (chunk: Buffer) => {
      let buffered = this.#buffered.length === 0 ? chunk : Buffer.concat([this.#buffered, chunk]);
      while (buffered.length >= 5) {
        const end = 5 + buffered.readUInt32BE(1);
        if (buffered.length < end) break;
        this.#waiting.shift()!(buffered.subarray(5, end));
        buffered = buffered.subarray(end);
      }
      this.#buffered = buffered;
    });
  }
  call(message: Uint8Array): Promise<Buffer> {
    return new Promise((resolve) => {
      this.#waiting.push(resolve);
      this.#stream.write(grpcFrame(message));
    });
  }
  close(): void {
    this.#stream.end();
  }
}

/** A varint at `at`: its value and where the next field starts. */
function readVarint(bytes: Buffer, at: number): [number, number] {
  let value = 0;
  for (let shift = 0; ; shift += 7) {
    const byte = bytes[at++]!;
    value += (byte & 0x7f) * 2 ** shift;
    if (byte < 0x80) return [value, at];
  }
}

/**
 * A StreamResponse that carries one StreamResult { id = 1; lookup = 2 }: its
 * id and the LookupResponse bytes, walked by hand (the client's own stream
 * decoder is being moved), then read with the client's decodeLookupResponse.
 */
function decodeOneStreamLookup(bytes: Buffer): { id: number; generations: ReturnType<typeof decodeLookupResponse> } {
  if (bytes[0] !== 0x0a) throw new Error("StreamResponse without results");
  const [resultLength, resultStart] = readVarint(bytes, 1);
  const resultEnd = resultStart + resultLength;
  let id = 0;
  for (let at = resultStart; at < resultEnd; ) {
    const tag = bytes[at++]!;
    if (tag === 0x08) [id, at] = readVarint(bytes, at);
    else if (tag === 0x12) {
      const [length, start] = readVarint(bytes, at);
      return { id, generations: decodeLookupResponse(bytes.subarray(start, start + length)) };
    } else throw new Error(`StreamResult field tag ${tag}: not a lookup`);
  }
  throw new Error("StreamResult without a lookup");
}

interface Variant {
  name: string;
  /** The pid whose CPU is the server's. */
  serverPid: number;
  call(i: number): Promise<unknown>;
  lat: number[];
  p50s: number[];
  p99s: number[];
  clientCpuUs: number;
  serverCpuSeconds: number;
  calls: number;
}

const percentile = (sorted: Float64Array | number[], p: number) => sorted[Math.min(sorted.length - 1, Math.floor((sorted.length * p) / 100))]!;
const median = (values: number[]) => {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
};

async function runCalls(variant: Variant, calls: number, offset: number, record: boolean): Promise<void> {
  const latencies = new Float64Array(calls);
  const server0 = cpuSeconds(variant.serverPid);
  const cpu0 = process.cpuUsage();
  for (let k = 0; k < calls; k++) {
    const begun = performance.now();
    await variant.call((offset + k) % KEYS);
    latencies[k] = (performance.now() - begun) * 1000;
  }
  const cpu = process.cpuUsage(cpu0);
  const server = cpuSeconds(variant.serverPid) - server0;
  if (!record) return;
  latencies.sort();
  variant.p50s.push(percentile(latencies, 50));
  variant.p99s.push(percentile(latencies, 99));
  for (const value of latencies) variant.lat.push(value);
  variant.clientCpuUs += cpu.user + cpu.system;
  variant.serverCpuSeconds += server;
  variant.calls += calls;
}

function option(name: string, fallback: number): number {
  const at = process.argv.indexOf(name);
  return at >= 0 ? Number(process.argv[at + 1]) : fallback;
}

async function startH2FixedServer(): Promise<RunningProcess> {
  const child = spawn(process.execPath, [fileURLToPath(import.meta.url), "--h2-fixed-server"], { stdio: ["ignore", "pipe", "inherit"] });
  let output = "";
  const address = await new Promise<string>((resolve, reject) => {
    child.stdout!.on("data", (chunk) => {
      output += chunk;
      const match = /listening on (\S+)/.exec(output);
      if (match) resolve(match[1]!);
    });
    child.once("exit", (code) => reject(new Error(`h2 fixed server exited with ${code}`)));
  });
  return wrap(child, address);
}

async function main(): Promise<void> {
  const rounds = option("--rounds", 8);
  const callsPerRound = option("--calls", 2500);
  const warmup = option("--warmup", 3000);
  const profileSeconds = process.argv.includes("--no-profile") ? 0 : option("--profile-seconds", 5);

  const llmcache: ServerProcess = await startServerProcess([]);
  const redisProcess = await startRedis();
  const emptyGrpc = await startEmptyServer();
  const h2Fixed = await startH2FixedServer();
  children.push(llmcache.child, redisProcess.child, emptyGrpc.child, h2Fixed.child);
  const llmcachePid = llmcache.child.pid!;

  const redis = new Redis(redisProcess.port, "127.0.0.1");
  const unary = new CacheClient({ address: llmcache.address, batching: false });
  const batched = new CacheClient({ address: llmcache.address });
  const grpcClient = new Client(llmcache.address, credentials.createInsecure(), { "grpc-node.flow_control_window": 16 * 1024 * 1024, "grpc.enable_retries": 0 });
  const h2Llmcache = new H2Grpc(llmcache.address);
  const h2Empty = new H2Grpc(emptyGrpc.address);
  const h2Floor = new H2Grpc(h2Fixed.address);
  const h2StreamSession = new H2Grpc(llmcache.address);
  const h2Stream = new H2GrpcStream(h2StreamSession, STREAM_PATH);

  // The same entries in both stores, and the request bytes our client sends.
  const pipeline = redis.pipeline();
  for (let i = 0; i < KEYS; i++) pipeline.set(`bench:${i}`, valueOf(BYTES, i));
  await pipeline.exec();
  for (let first = 0; first < KEYS; first += 100) {
    await unary.aupdateMany(Array.from({ length: 100 }, (_, k) => [promptOf(first + k), LLM_STRING, generationOf(BYTES, first + k)] as const));
  }
  const requests = Array.from({ length: KEYS }, (_, i) =>
    toBinary(LookupRequestSchema, create(LookupRequestSchema, { prompt: promptOf(i), llmString: LLM_STRING })),
  );
  const handEncoded = encodeLookupRequest(promptOf(7), LLM_STRING, { namespace: "", bypass: false });
  if (!Buffer.from(requests[7]!).equals(handEncoded)) throw new Error("protobuf-es and the client's encoder disagree");
  const expected = valueOf(BYTES, 7);
  // One lookup per Stream message, its id the key's index + 1 (calls are sequential: never two in flight).
  const streamRequests = Array.from({ length: KEYS }, (_, i) =>
    toBinary(StreamRequestSchema, create(StreamRequestSchema, { operations: [{ id: i + 1, operation: { case: "lookup", value: { prompt: promptOf(i), llmString: LLM_STRING } } }] })),
  );
  const streamLookup = async (i: number) => {
    const outcome = decodeOneStreamLookup(await h2Stream.call(streamRequests[i]!));
    if (outcome.id !== i + 1) throw new Error(`Stream: answer ${outcome.id} to operation ${i + 1}`);
    return outcome.generations;
  };

  const grpcUnary = (message: Uint8Array) =>
    new Promise<Buffer>((resolve, reject) =>
      grpcClient.makeUnaryRequest(
        LOOKUP_PATH,
        (b: Buffer) => b,
        (b: Buffer) => b,
        Buffer.from(message.buffer, message.byteOffset, message.byteLength),
        new Metadata(),
        { deadline: Date.now() + 5000 },
        (error: ServiceError | null, reply?: Buffer) => (error ? reject(error) : resolve(reply!)),
      ),
    );

  const variant = (name: string, serverPid: number, call: (i: number) => Promise<unknown>): Variant => ({
    name, serverPid, call, lat: [], p50s: [], p99s: [], clientCpuUs: 0, serverCpuSeconds: 0, calls: 0,
  });
  const variants: Variant[] = [
    variant("ioredis GET", redisProcess.child.pid!, (i) => redis.get(`bench:${i}`)),
    variant("CacheClient.alookup unary", llmcachePid, (i) => unary.alookup(promptOf(i), LLM_STRING)),
    variant("CacheClient.alookup auto-batched", llmcachePid, (i) => batched.alookup(promptOf(i), LLM_STRING)),
    variant("raw grpc-js makeUnaryRequest", llmcachePid, (i) => grpcUnary(requests[i]!)),
    variant("bare http2 -> llmcache", llmcachePid, (i) => h2Llmcache.call(LOOKUP_PATH, requests[i]!)),
    variant("bare http2 + client codec -> llmcache", llmcachePid, (i) =>
      h2Llmcache.call(LOOKUP_PATH, encodeLookupRequest(promptOf(i), LLM_STRING, { namespace: "", bypass: false })).then(decodeLookupResponse),
    ),
    variant("bare http2 Stream, 1 lookup/message + codec", llmcachePid, streamLookup),
    variant("bare http2 -> grpc-js fixed reply", emptyGrpc.child.pid!, (i) => h2Empty.call(LOOKUP_PATH, requests[i]!)),
    variant("bare http2 -> bare http2 fixed reply", h2Fixed.child.pid!, (i) => h2Floor.call(LOOKUP_PATH, requests[i]!)),
  ];

  // Every variant must return the hit before it is timed.
  if ((await redis.get("bench:7")) !== expected) throw new Error("ioredis: wrong value");
  for (const client of [unary, batched]) if ((await client.alookup(promptOf(7), LLM_STRING))?.[0]?.text !== expected) throw new Error("CacheClient: wrong value");
  for (const reply of [await grpcUnary(requests[7]!), await h2Llmcache.call(LOOKUP_PATH, requests[7]!)]) {
    if (decodeLookupResponse(reply)?.[0]?.text !== expected) throw new Error("raw client: wrong value");
  }
  if ((await streamLookup(7))?.[0]?.text !== expected) throw new Error("bare http2 Stream: wrong value");

  console.error(`warm-up: ${warmup} calls per variant; then ${rounds} rounds x ${callsPerRound} calls per variant, rotating order`);
  for (const v of variants) await runCalls(v, warmup, 0, false);
  for (let round = 0; round < rounds; round++) {
    for (let k = 0; k < variants.length; k++) {
      const v = variants[(round + k) % variants.length]!;
      await runCalls(v, callsPerRound, round * callsPerRound, true);
    }
    console.error(`round ${round + 1}/${rounds}: ` + variants.map((v) => `${v.p50s.at(-1)!.toFixed(0)}`).join(" "));
  }

  const anchor = median(variants[0]!.p50s);
  const anchor99 = median(variants[0]!.p99s);
  const rows = [["variant", "p50 µs", "×ioredis", "p99 µs", "×ioredis", "pooled p50/p99", "client CPU µs/call", "server CPU µs/call"]];
  for (const v of variants) {
    const pooled = v.lat.sort((a, b) => a - b);
    const p50 = median(v.p50s);
    const p99 = median(v.p99s);
    rows.push([
      v.name,
      p50.toFixed(0),
      (p50 / anchor).toFixed(2),
      p99.toFixed(0),
      (p99 / anchor99).toFixed(2),
      `${percentile(pooled, 50).toFixed(0)}/${percentile(pooled, 99).toFixed(0)}`,
      (v.clientCpuUs / v.calls).toFixed(1),
      ((v.serverCpuSeconds * 1e6) / v.calls).toFixed(1),
    ]);
  }
  printTable(rows);
  console.log(`(p50, p99: medians over ${rounds} rounds of ${callsPerRound} calls; pooled: all ${rounds * callsPerRound} calls; server CPU from /proc at 10 ms resolution per round)`);

  redis.disconnect();
  await Promise.all([unary.close(), batched.close()]);
  grpcClient.close();
  h2Stream.close();
  for (const h of [h2Llmcache, h2Empty, h2Floor, h2StreamSession]) h.close();
  await Promise.all([llmcache.stop(), redisProcess.stop(), emptyGrpc.stop(), h2Fixed.stop()]);

  if (profileSeconds > 0) await profile(profileSeconds);
}

/**
 * A second llmcache server under --cpu-prof; for each client, a child process
 * under --cpu-prof doing one caller's lookups for `seconds`. Each profile is
 * read only over the client's timed window (both clocks are CLOCK_MONOTONIC).
 */
async function profile(seconds: number): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), "llmcache-prof-"));
  const server = await startServerProcess([], {}, ["--cpu-prof", "--cpu-prof-dir", join(dir, "server")]);
  children.push(server.child);
  const seed = new CacheClient({ address: server.address, batching: false });
  for (let first = 0; first < KEYS; first += 100) {
    await seed.aupdateMany(Array.from({ length: 100 }, (_, k) => [promptOf(first + k), LLM_STRING, generationOf(BYTES, first + k)] as const));
  }
  await seed.close();
  const runs: { client: string; window: Window; calls: number; serverCpuSeconds: number }[] = [];
  for (const client of ["unary", "batched", "h2", "h2stream"]) {
    let server0 = -1;
    const child = spawn(process.execPath, ["--cpu-prof", "--cpu-prof-dir", join(dir, client), fileURLToPath(import.meta.url), "--profile-client", server.address, String(seconds), client], {
      stdio: ["ignore", "pipe", "inherit"],
    });
    children.push(child);
    let output = "";
    child.stdout!.on("data", (chunk) => {
      output += chunk;
      if (server0 < 0 && output.startsWith("START\n")) server0 = cpuSeconds(server.child.pid!);
    });
    await once(child, "exit");
    const serverCpuSeconds = cpuSeconds(server.child.pid!) - server0;
    const result = JSON.parse(output.slice("START\n".length)) as { start: number; end: number; calls: number };
    runs.push({ client, window: { start: result.start, end: result.end }, calls: result.calls, serverCpuSeconds });
  }
  const exit = await server.stop("SIGINT");
  const read = (sub: string) => {
    const file = readdirSync(join(dir, sub)).find((name) => name.endsWith(".cpuprofile"));
    return file ? (JSON.parse(readFileSync(join(dir, sub, file), "utf8")) as CpuProfile) : undefined;
  };
  const serverProfile = read("server");
  console.log(`\nCPU profiles (node --cpu-prof, ${seconds} s per client, one caller; server exit ${exit.code}; files in ${dir})`);
  for (const run of runs) {
    const wall = run.window.end - run.window.start;
    console.log(`\n== ${run.client}: ${run.calls} lookups, ${(wall / run.calls).toFixed(0)} µs each under the profiler; server CPU ${((run.serverCpuSeconds * 1e6) / run.calls).toFixed(0)} µs/call (/proc, profiler's own cost included)`);
    if (serverProfile) summarise("server", serverProfile, run.window, run.calls);
    const clientProfile = read(run.client);
    if (clientProfile) summarise("client", clientProfile, run.window, run.calls);
  }
}

/** `--profile-client ADDRESS SECONDS unary|batched|h2|h2stream`: one caller's lookups; prints START, then its window and count as JSON. */
async function profileClient(address: string, seconds: number, kind: string): Promise<void> {
  let lookup: (i: number) => Promise<unknown>;
  let close: () => Promise<void> | void;
  if (kind === "h2") {
    const h2 = new H2Grpc(address);
    lookup = (i) => h2.call(LOOKUP_PATH, encodeLookupRequest(promptOf(i), LLM_STRING, { namespace: "", bypass: false })).then(decodeLookupResponse);
    close = () => h2.close();
  } else if (kind === "h2stream") {
    const h2 = new H2Grpc(address);
    const stream = new H2GrpcStream(h2, STREAM_PATH);
    let id = 0;
    lookup = async (i) => {
      const message = toBinary(StreamRequestSchema, create(StreamRequestSchema, { operations: [{ id: ++id, operation: { case: "lookup", value: { prompt: promptOf(i), llmString: LLM_STRING } } }] }));
      return decodeOneStreamLookup(await stream.call(message));
    };
    close = () => {
      stream.close();
      h2.close();
    };
  } else {
    const client = new CacheClient({ address, batching: kind === "batched" });
    lookup = (i) => client.alookup(promptOf(i), LLM_STRING);
    close = () => client.close();
  }
  for (let i = 0; i < 5000; i++) await lookup(i % KEYS);
  process.stdout.write("START\n");
  const start = Number(process.hrtime.bigint() / 1000n);
  const stopAt = performance.now() + seconds * 1000;
  let calls = 0;
  while (performance.now() < stopAt) await lookup(calls++ % KEYS);
  const end = Number(process.hrtime.bigint() / 1000n);
  await close();
  process.stdout.write(JSON.stringify({ start, end, calls }));
}

interface Window {
  start: number;
  end: number;
}

interface CpuProfile {
  startTime: number;
  nodes: { id: number; callFrame: { functionName: string; url: string; lineNumber: number } }[];
  samples: number[];
  timeDeltas: number[];
}

function category(url: string, name: string): string {
  if (name === "(idle)" || name === "(program)" || name === "(garbage collector)") return name;
  if (url.includes("@grpc/grpc-js")) return "grpc-js";
  if (url.startsWith("node:internal/http2") || url.includes("internal/http2")) return "node http2 (JS)";
  if (url.startsWith("node:internal/streams") || url.startsWith("node:events") || url.startsWith("node:internal/process")) return "node streams/events/ticks";
  if (url.startsWith("node:")) return "node other";
  if (url.includes("@bufbuild/protobuf")) return "protobuf-es";
  if (url.includes("/dist/src/") || url.includes("/dist/gen/")) return "llmcache";
  if (url === "") return "native/other";
  return "other JS";
}

function summarise(title: string, profile: CpuProfile, window: Window, calls: number): void {
  const byId = new Map(profile.nodes.map((node) => [node.id, node]));
  const selfByFunction = new Map<string, number>();
  const selfByCategory = new Map<string, number>();
  let total = 0;
  let at = profile.startTime;
  for (let k = 0; k < profile.samples.length; k++) {
    const delta = profile.timeDeltas[k] ?? 0;
    at += delta;
    if (at < window.start || at > window.end) continue;
    const node = byId.get(profile.samples[k]!)!;
    total += delta;
    const { functionName, url, lineNumber } = node.callFrame;
    const short = url.replace(/^.*node_modules\//, "").replace(/^.*\/dist\//, "dist/");
    const key = `${functionName || "(anonymous)"} ${short ? `${short}:${lineNumber + 1}` : ""}`;
    selfByFunction.set(key, (selfByFunction.get(key) ?? 0) + delta);
    const cat = category(url, functionName);
    selfByCategory.set(cat, (selfByCategory.get(cat) ?? 0) + delta);
  }
  const pct = (us: number) => `${((100 * us) / total).toFixed(1)}%`;
  const perCall = (us: number) => `${(us / calls).toFixed(1)} µs/call`;
  const busy = total - (selfByCategory.get("(idle)") ?? 0);
  console.log(`${title}: ${(total / 1e6).toFixed(2)} s sampled in the window, busy ${perCall(busy)}`);
  console.log("  by category: " + [...selfByCategory].sort((a, b) => b[1] - a[1]).map(([cat, us]) => `${cat} ${pct(us)} (${perCall(us)})`).join("; "));
  for (const [key, us] of [...selfByFunction].sort((a, b) => b[1] - a[1]).slice(0, 12)) console.log(`  ${pct(us).padStart(6)} ${perCall(us).padStart(14)}  ${key}`);
}

function printTable(rows: string[][]): void {
  const widths = rows[0]!.map((_, c) => Math.max(...rows.map((row) => row[c]!.length)));
  for (const row of rows) console.log(row.map((cell, c) => (c === 0 ? cell.padEnd(widths[c]!) : cell.padStart(widths[c]!))).join("  "));
}

// Last, so that every class and function above is initialised before main runs.
if (process.argv[2] === "--h2-fixed-server") {
  const frame = grpcFrame(fixedReply());
  const server = http2.createServer({ settings: { initialWindowSize: 16 * 1024 * 1024 } });
  server.on("stream", (stream) => {
    stream.on("data", () => {});
    stream.on("end", () => {
      stream.respond({ ":status": 200, "content-type": "application/grpc" }, { waitForTrailers: true });
      stream.once("wantTrailers", () => stream.sendTrailers({ "grpc-status": "0" }));
      stream.end(frame);
    });
  });
  server.listen(0, "127.0.0.1", () => {
    const address = server.address() as { port: number };
    console.log(`h2 fixed server listening on 127.0.0.1:${address.port}`);
  });
  process.on("SIGTERM", () => process.exit(0));
} else {
  try {
    if (process.argv[2] === "--profile-client") await profileClient(process.argv[3]!, Number(process.argv[4]), process.argv[5]!);
    else await main();
  } catch (error) {
    console.error(error);
    process.exit(1);
  }
}
