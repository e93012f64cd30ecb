import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { status } from "@grpc/grpc-js";
import { CacheService, LookupRequestSchema, LookupResponseSchema } from "../gen/llmcache/v1/cache_pb.js";
import { CacheClient } from "../src/index.js";
import { methodPath } from "../src/rpc/service-definition.js";
import { grpcFrame, rawCall } from "../test/helpers/raw-grpc.js";
import { progress, type Row } from "./results.js";
import { generationOf, KEYS, LLM_STRING, promptOf } from "./workload.js";

/**
 * Unary Lookup driven by h2load, an independent C client, against
 * llmcache's server (a 500 B hit) and against the same grpc-js server with
 * a handler that answers a fixed reply of the same size: the difference is
 * what the cache costs on top of the transport.
 */
export async function h2loadBench(options: {
  llmcacheAddress: string;
  emptyAddress: string;
  requests: number;
  step: number;
  total: number;
}): Promise<Row[]> {
  const found = spawnSync("h2load", ["--version"]);
  if (found.error) throw new Error("h2load is not installed: apt-get install nghttp2-client (see the README's performance section)");
  const path = methodPath(CacheService.method.lookup);
  const prompt = promptOf(KEYS + 1);
  const client = new CacheClient({ address: options.llmcacheAddress });
  await client.aupdate(prompt, LLM_STRING, generationOf(500));
  await client.close();
  const request = toBinary(LookupRequestSchema, create(LookupRequestSchema, { prompt, llmString: LLM_STRING }));
  const directory = mkdtempSync(join(tmpdir(), "llmcache-h2load-"));
  const body = join(directory, "lookup.bin");
  writeFileSync(body, grpcFrame(request));
  const rows: Row[] = [];
  try {
    const servers: [string, string][] = [
      ["empty handler", options.emptyAddress],
      ["llmcache", options.llmcacheAddress],
    ];
    for (const [system, address] of servers) {
      // h2load counts HTTP statuses only; a gRPC failure is HTTP 200 too. Check one call's grpc-status first.
      const reply = await rawCall(address, path, grpcFrame(request));
      assert.equal(reply.status, status.OK, `${system}: grpc-status ${reply.status} ${reply.message}`);
      const response = fromBinary(LookupResponseSchema, reply.body.subarray(5));
      assert.ok(response.hit && response.generations[0]!.text.length === 500, `${system} did not answer a 500 B hit`);
      runH2load(address, path, body, Math.ceil(options.requests / 10)); // warm-up: both servers' JIT settles
    }
    // Alternating runs, median of three: one run of either is at the mercy of what else the two cores do.
    const runs = new Map<string, Omit<Row, "section" | "system">[]>();
    for (let round = 0; round < 3; round++) {
      for (const [system, address] of servers) {
        progress(options.step + 1 + (system === "llmcache" ? 1 : 0), options.total, `h2load: ${system} unary Lookup, run ${round + 1} of 3`);
        runs.set(system, [...(runs.get(system) ?? []), runH2load(address, path, body, options.requests)]);
      }
    }
    for (const [system] of servers) {
      const sorted = runs.get(system)!.sort((a, b) => a.value - b.value);
      const median = sorted[1]!;
      rows.push({
        ...median,
        section: "h2load",
        system,
        anchor: system === "empty handler" ? undefined : "empty handler",
        note: `median of ${sorted.map((run) => Math.round(run.value)).join(", ")} req/s; ${median.note}`,
      });
    }
  } finally {
    rmSync(directory, { recursive: true, force: true });
  }
  return rows;
}

function runH2load(address: string, path: string, body: string, requests: number): Omit<Row, "section" | "system"> {
  const clients = 8;
  const streams = 16;
  const args = ["-n", String(requests), "-c", String(clients), "-m", String(streams), "-t", "1"];
  args.push("-H", "content-type: application/grpc", "-H", "te: trailers", "-d", body, `http://${address}${path}`);
  const run = spawnSync("h2load", args, { encoding: "utf8" });
  const output = run.stdout;
  const perSecond = /finished in [\d.]+m?s, ([\d.]+) req\/s/.exec(output);
  const done = /requests: \d+ total, \d+ started, \d+ done, (\d+) succeeded, (\d+) failed, (\d+) errored/.exec(output);
  const mean = /time for request:\s+\S+\s+\S+\s+(\S+)/.exec(output);
  if (!perSecond || !done) throw new Error(`h2load output not understood:\n${output}\n${run.stderr}`);
  if (Number(done[2]) > 0 || Number(done[3]) > 0) throw new Error(`h2load saw failures:\n${output}`);
  return {
    scenario: `unary Lookup hit · 500 B · ${clients} connections × ${streams} streams`,
    unit: "req/s",
    value: Number(perSecond[1]),
    note: mean ? `mean time per request ${mean[1]}` : undefined,
  };
}
