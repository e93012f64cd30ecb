import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { create, toBinary } from "@bufbuild/protobuf";
import { status } from "@grpc/grpc-js";
import { CacheService, UpdateRequestSchema } from "../../gen/llmcache/v1/cache_pb.js";
import { CacheClient, type Generation, type JsonObject, type JsonValue } from "../../src/index.js";
import { methodPath } from "../../src/rpc/service-definition.js";
import { grpcFrame, rawCall } from "../helpers/raw-grpc.js";
import { startServerProcess, type ServerProcess } from "../helpers/server-process.js";

const REPO = fileURLToPath(new URL("../../../", import.meta.url));
const PYTHON = `${REPO}.venv/bin/python`;
const READ_ENTRY = `${REPO}test/python/read_entry.py`;

/**
 * Python's protobuf (upb, protobuf 7.36) parses a message tree at most 101
 * levels deep, counting the outermost response as level 1 and every message
 * below it: Struct, its map entry, Value and ListValue each count. A
 * StreamResponse holds its generations at level 4 (StreamResponse,
 * StreamResult, LookupResponse, Generation), deeper than BatchLookupResponse
 * (3) and LookupResponse (2), so a generation that Python must read in
 * every envelope may nest at most 97 message levels below itself.
 */
const PYTHON_MAX_LEVELS = 101;
const GENERATION_LEVEL_IN_STREAM_RESPONSE = 4;
const MAX_LEVELS_BELOW_GENERATION = PYTHON_MAX_LEVELS - GENERATION_LEVEL_IN_STREAM_RESPONSE;

/** {"k": {"k": ... leaf}}: `objects` objects, each inside the one before. */
function nestedObject(objects: number, leaf: JsonValue): JsonObject {
  let value: JsonValue = leaf;
  for (let i = 0; i < objects; i++) value = { k: value };
  return value as JsonObject;
}

/** Message levels of a google.protobuf.Struct holding `object`: the Struct, then a map entry and a Value per member. */
function structLevels(object: JsonObject): number {
  return 1 + Math.max(0, ...Object.values(object).map((member) => 1 + valueLevels(member)));
}

/** Message levels of a google.protobuf.Value holding `value`: the Value, then a Struct or a ListValue for a container. */
function valueLevels(value: JsonValue): number {
  if (Array.isArray(value)) return 2 + Math.max(0, ...value.map(valueLevels));
  if (value !== null && typeof value === "object") return 1 + structLevels(value);
  return 1;
}

interface LookupSummary {
  hit: boolean;
  generations: number;
  max_depth: number;
}

interface ReadEntryOutput {
  exitCode: number;
  stderr: string;
  summary: { ok: boolean; calls: Record<"Lookup" | "BatchLookup" | "Stream", { results?: LookupSummary[]; error?: string }> };
}

/** Runs test/python/read_entry.py against the server for one pair, all three calls. */
function readFromPython(address: string, prompt: string, llmString: string, namespace: string): Promise<ReadEntryOutput> {
  return new Promise((resolve, reject) => {
    execFile(
      PYTHON,
      [READ_ENTRY, address, prompt, llmString, "--namespace", namespace, "--mode", "all"],
      { timeout: 60_000 },
      (error, stdout, stderr) => {
        const exitCode = error === null ? 0 : error.code;
        if (typeof exitCode !== "number") return reject(new Error(`read_entry.py did not exit normally: ${error?.message}; stderr: ${stderr}`));
        try {
          resolve({ exitCode, stderr, summary: JSON.parse(stdout) });
        } catch {
          reject(new Error(`read_entry.py exited with ${exitCode} and printed no JSON: ${stdout}; stderr: ${stderr}`));
        }
      },
    );
  });
}

describe("a Python client reading what the server stores", function () {
  this.timeout(60_000);
  let server: ServerProcess;
  let client: CacheClient;

  before(async function () {
    assert.ok(existsSync(PYTHON), `${PYTHON} is missing: run 'bash scripts/python-env.sh' (npm test does)`);
    server = await startServerProcess();
    client = new CacheClient({ address: server.address });
  });
  after(async () => {
    await client.close();
    await server.stop();
  });

  // 96 levels below the generation: the deepest JSON object (32 objects)
  // that Python reads in generation_info in every envelope, and as deep as
  // the TypeScript client lets JSON nest.
  const generationInfo = nestedObject(32, "leaf");
  // One level more for the ChatMessage: exactly the limit.
  const atLimit = nestedObject(32, "leaf");
  // {} in place of "leaf" adds a Struct below the innermost Value: one level
  // past the limit (and past the TypeScript client's JSON depth, hence the
  // raw Update).
  const tooDeep = nestedObject(32, {});

  it("counts levels as Python does (the test's own arithmetic)", () => {
    assert.equal(MAX_LEVELS_BELOW_GENERATION, 97);
    assert.equal(structLevels(generationInfo), 96);
    assert.equal(1 + structLevels(atLimit), MAX_LEVELS_BELOW_GENERATION, "ChatMessage, then additional_kwargs");
    assert.equal(1 + structLevels(tooDeep), MAX_LEVELS_BELOW_GENERATION + 1);
  });

  it("reads, in every envelope, a generation nested exactly as deep as Python allows", async () => {
    const generation: Generation = {
      text: "deep",
      generationInfo,
      message: { type: "ai", content: "deep", additional_kwargs: atLimit },
    };
    await client.aupdate("at the limit", "llm", [generation], { namespace: "python" });

    const { exitCode, stderr, summary } = await readFromPython(server.address, "at the limit", "llm", "python");

    assert.equal(exitCode, 0, stderr);
    assert.equal(summary.ok, true);
    // The generation's dict, the message's dict, then 32 objects.
    const expected: LookupSummary = { hit: true, generations: 1, max_depth: 34 };
    assert.deepEqual(summary.calls.Lookup.results, [expected]);
    assert.deepEqual(summary.calls.BatchLookup.results, [expected, expected]);
    assert.deepEqual(summary.calls.Stream.results, [expected]);
  });

  it("never stores a generation one level deeper than Python reads: INVALID_ARGUMENT naming the limit", async () => {
    const request = create(UpdateRequestSchema, {
      prompt: "too deep",
      llmString: "llm",
      namespace: "python",
      generations: [
        {
          text: "deep",
          generationInfo,
          message: { type: "ai", content: { case: "text", value: "deep" }, additionalKwargs: tooDeep },
        },
      ],
    });
    const reply = await rawCall(server.address, methodPath(CacheService.method.update), grpcFrame(toBinary(UpdateRequestSchema, request)));
    assert.equal(reply.status, status.INVALID_ARGUMENT, reply.message);
    assert.equal(
      reply.message,
      "cannot decode llmcache.v1.UpdateRequest: generations[0].message.additional_kwargs nests 98 protobuf message levels below its generation, " +
        "over the limit of 97 (protobuf runtimes such as Python's refuse messages nested more than 101 levels deep)",
    );

    const { exitCode, stderr, summary } = await readFromPython(server.address, "too deep", "llm", "python");
    assert.equal(exitCode, 0, stderr);
    const miss: LookupSummary = { hit: false, generations: 0, max_depth: 0 };
    assert.deepEqual(summary.calls.Lookup.results, [miss]);
    assert.deepEqual(summary.calls.BatchLookup.results, [miss, miss]);
    assert.deepEqual(summary.calls.Stream.results, [miss]);
  });
});
