import assert from "node:assert/strict";
import { existsSync, mkdtempSync, readdirSync, writeFileSync } from "node:fs";
import { connect } from "node:http2";
import { get } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { Metadata, status } from "@grpc/grpc-js";
import { CacheClient, CacheError } from "../../src/index.js";
import { passBytes } from "../../src/rpc/codec.js";
import { openChannel } from "../../src/rpc/channel.js";
import { grpcFrame, rawCall } from "../helpers/raw-grpc.js";
import { startServerProcess, type ServerProcess } from "../helpers/server-process.js";

function httpGet(url: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    get(url, (response) => {
      let body = "";
      response.on("data", (chunk) => (body += chunk));
      response.on("end", () => resolve({ status: response.statusCode ?? 0, body }));
    }).on("error", reject);
  });
}

const metricsPortOf = (server: ServerProcess) => {
  const match = /metrics on port (\d+)/.exec(server.stdout());
  assert.ok(match, "the server printed its metrics port");
  return Number(match[1]);
};

describe("operations", function () {
  this.timeout(30_000);

  describe("health", () => {
    it("reports SERVING once ready, then NOT_SERVING to a watcher as soon as the server drains, and ends the watch", async () => {
      // An open Watch never ends by itself: it held every shutdown for the whole grace.
      const server = await startServerProcess(["--shutdown-grace", "20s"]);
      const channel = openChannel({ address: server.address });
      try {
        const check = await rawCall(server.address, "/grpc.health.v1.Health/Check", grpcFrame(Buffer.alloc(0)));
        assert.equal(check.status, status.OK);
        assert.deepEqual([...check.body.subarray(5)], [0x08, 1], "SERVING");
        const named = await rawCall(server.address, "/grpc.health.v1.Health/Check", grpcFrame(Buffer.from([0x0a, 24, ...Buffer.from("llmcache.v1.CacheService")])));
        assert.deepEqual([...named.body.subarray(5)], [0x08, 1], "CacheService is SERVING too");

        const statuses: number[] = [];
        const watch = channel.makeServerStreamRequest("/grpc.health.v1.Health/Watch", passBytes, passBytes, Buffer.alloc(0), new Metadata());
        watch.on("data", (response: Buffer) => statuses.push(response[1]!));
        const watchEnded = new Promise<number>((resolve) => watch.on("status", ({ code }: { code: number }) => resolve(code)));
        watch.on("error", () => {});
        while (statuses.length === 0) await new Promise((resolve) => setTimeout(resolve, 10));
        const stopping = Date.now();
        server.child.kill("SIGTERM");
        while (!statuses.includes(2) && server.child.exitCode === null) await new Promise((resolve) => setTimeout(resolve, 10));
        assert.deepEqual(statuses.slice(0, 2), [1, 2], "SERVING, then NOT_SERVING");
        assert.equal(await watchEnded, status.OK, "the watch ended");
        assert.equal((await server.exited()).code, 0);
        assert.ok(Date.now() - stopping < 5_000, `exited ${Date.now() - stopping} ms after SIGTERM, not at the end of the grace`);
      } finally {
        channel.close();
        await server.stop();
      }
    });
  });

  describe("health of the snapshots", () => {
    it("tells a watcher of llmcache.v1.Snapshots NOT_SERVING too when the server drains, then ends the watch", async () => {
      const directory = mkdtempSync(join(tmpdir(), "llmcache-watch-"));
      const server = await startServerProcess(["--snapshot", join(directory, "cache.snapshot"), "--shutdown-grace", "20s"]);
      const channel = openChannel({ address: server.address });
      try {
        const name = Buffer.from("llmcache.v1.Snapshots");
        const statuses: number[] = [];
        const watch = channel.makeServerStreamRequest("/grpc.health.v1.Health/Watch", passBytes, passBytes, Buffer.from([0x0a, name.length, ...name]), new Metadata());
        watch.on("data", (response: Buffer) => statuses.push(response[1]!));
        const watchEnded = new Promise<number>((resolve) => watch.on("status", ({ code }: { code: number }) => resolve(code)));
        watch.on("error", () => {});
        while (statuses.length === 0) await sleep(10);
        server.child.kill("SIGTERM");
        assert.equal(await watchEnded, status.OK, "the watch ended");
        assert.deepEqual(statuses.slice(0, 2), [1, 2], "SERVING, then NOT_SERVING before the end");
        assert.equal((await server.exited()).code, 0);
      } finally {
        channel.close();
        await server.stop();
      }
    });
  });

  describe("reflection", () => {
    let server: ServerProcess;
    before(async () => {
      server = await startServerProcess();
    });
    after(() => server.stop());

    for (const version of ["v1", "v1alpha"]) {
      it(`lists the services and describes CacheService (${version})`, async () => {
        const path = `/grpc.reflection.${version}.ServerReflection/ServerReflectionInfo`;
        const list = await rawCall(server.address, path, grpcFrame(Buffer.from([0x3a, 0x01, 0x2a])));
        assert.equal(list.status, status.OK);
        const names = list.body.toString("latin1");
        for (const service of ["llmcache.v1.CacheService", "grpc.health.v1.Health"]) assert.ok(names.includes(service), `lists ${service}`);
        const symbol = Buffer.from("llmcache.v1.CacheService");
        const file = await rawCall(server.address, path, grpcFrame(Buffer.from([0x22, symbol.length, ...symbol])));
        const descriptor = file.body.toString("latin1");
        // Field names as the contract spells them, so tools build requests with the real names.
        for (const name of ["llmcache.v1", "LookupRequest", "llm_string", "generation_info"]) assert.ok(descriptor.includes(name), `describes ${name}`);
      });
    }
  });

  describe("metrics and logs", () => {
    it("serves Prometheus metrics on their own port and never logs a prompt or a generation", async () => {
      const server = await startServerProcess(["--metrics-port", "0", "--maxsize", "1", "--log-level", "trace"]);
      const client = new CacheClient({ address: server.address, batching: false });
      try {
        await client.aupdate("SECRET PROMPT one", "SECRET LLM", [{ text: "SECRET GENERATION" }]);
        await client.aupdate("SECRET PROMPT two", "SECRET LLM", [{ text: "SECRET GENERATION" }]); // evicts one
        await client.alookup("SECRET PROMPT two", "SECRET LLM");
        await client.alookup("SECRET PROMPT one", "SECRET LLM");
        await assert.rejects(client.alookup("SECRET PROMPT \u{1F600}", "x", { namespace: "n".repeat(300) }), CacheError);

        const metrics = await httpGet(`http://127.0.0.1:${metricsPortOf(server)}/metrics`);
        assert.equal(metrics.status, 200);
        const line = (pattern: string) => new RegExp(`^${pattern} (\\S+)$`, "m").exec(metrics.body)?.[1];
        assert.equal(line('llmcache_calls_total\\{method="Update",code="OK"\\}'), "2");
        assert.equal(line('llmcache_calls_total\\{method="Lookup",code="OK"\\}'), "2");
        assert.equal(line('llmcache_calls_total\\{method="Lookup",code="RESOURCE_EXHAUSTED"\\}'), "1");
        assert.equal(line("llmcache_hits_total"), "1");
        assert.equal(line("llmcache_misses_total"), "1");
        assert.equal(line("llmcache_entries"), "1");
        assert.equal(line('llmcache_evictions_total\\{cause="size"\\}'), "1");
        assert.ok(Number(line("llmcache_bytes")) > 0);
        assert.match(metrics.body, /^llmcache_call_duration_seconds_bucket\{le="0\.001",method="Lookup"\} \d+$/m);
        assert.match(metrics.body, /^llmcache_nodejs_eventloop_lag_seconds \S+$/m);
        assert.equal((await httpGet(`http://127.0.0.1:${metricsPortOf(server)}/other`)).status, 404);
      } finally {
        await client.close();
        await server.stop();
      }
      const logs = server.stderr();
      const lines = logs.trim().split("\n");
      assert.ok(lines.length >= 3, "it logged");
      for (const entry of lines) JSON.parse(entry); // every line is JSON
      assert.ok(!/SECRET|\u{1F600}/u.test(logs), "no prompt, llm_string or generation text in the logs");
    });

    it("counts the operations that Stream calls carry, by operation and status", async () => {
      // Batching clients send everything on Stream: calls_total saw one call for all of them.
      const server = await startServerProcess(["--metrics-port", "0"]);
      const client = new CacheClient({ address: server.address });
      try {
        await Promise.all([client.aupdate("p", "llm", [{ text: "x" }]), client.aupdate("q", "llm", [{ text: "y" }])]);
        await Promise.all([client.alookup("p", "llm"), client.alookup("missing", "llm"), client.alookup("p", "llm")]);
        await assert.rejects(client.alookup("p", "llm", { namespace: "n".repeat(300) }), CacheError);
        const metrics = await httpGet(`http://127.0.0.1:${metricsPortOf(server)}/metrics`);
        const line = (pattern: string) => new RegExp(`^${pattern} (\\S+)$`, "m").exec(metrics.body)?.[1];
        assert.equal(line('llmcache_stream_operations_total\\{operation="update",code="OK"\\}'), "2");
        assert.equal(line('llmcache_stream_operations_total\\{operation="lookup",code="OK"\\}'), "3");
        assert.equal(line('llmcache_stream_operations_total\\{operation="lookup",code="RESOURCE_EXHAUSTED"\\}'), "1");
        assert.match(metrics.body, /^# HELP llmcache_stream_operations_total Operations carried by Stream calls/m);
      } finally {
        await client.close();
        await server.stop();
      }
    });

    it("exits on SIGTERM when the reader of its logs has gone", async () => {
      // pino's own destination retried a write that failed with EPIPE for
      // ever as the process exited: the server stopped listening and never exited.
      const server = await startServerProcess();
      server.child.stderr!.destroy();
      const exit = await Promise.race([server.stop(), sleep(10_000).then(() => "still running 10 s after SIGTERM")]);
      assert.deepEqual(exit, { code: 0, signal: null });
    });
  });

  describe("limits", () => {
    let server: ServerProcess;
    let client: CacheClient;
    before(async () => {
      server = await startServerProcess([
        "--max-prompt-bytes", "100",
        "--max-llm-string-bytes", "50",
        "--max-namespace-bytes", "10",
        "--max-generations", "2",
        "--max-message-bytes", "64KiB",
        "--max-concurrent-streams", "7",
      ]);
      client = new CacheClient({ address: server.address });
    });
    after(async () => {
      await client.close();
      await server.stop();
    });

    const cases: [string, () => Promise<unknown>, RegExp][] = [
      ["a prompt", () => client.alookup("p".repeat(101), "llm"), /the prompt's size in bytes is 101, over the limit of 100 \(--max-prompt-bytes\)$/],
      ["an llm_string", () => client.aupdate("p", "l".repeat(51), []), /the llm_string's size in bytes is 51, over the limit of 50 \(--max-llm-string-bytes\)$/],
      ["a namespace", () => client.alookup("p", "llm", { namespace: "n".repeat(11) }), /the namespace's size in bytes is 11, over the limit of 10 \(--max-namespace-bytes\)$/],
      ["generations", () => client.aupdate("p", "llm", [{ text: "1" }, { text: "2" }, { text: "3" }]), /the number of generations is 3, over the limit of 2 \(--max-generations\)$/],
      ["a batch item", () => client.alookupMany([["ok", "llm"], ["p".repeat(101), "llm"]]), /lookups\[1\]: the prompt's size in bytes is 101, over the limit of 100 \(--max-prompt-bytes\)$/],
      ["a whole message", () => client.aupdate("p", "llm", [{ text: "x".repeat(70_000) }]), /Received message larger than max \(\d+ vs 65536\)$/],
    ];
    for (const [name, call, message] of cases) {
      it(`refuses ${name} over its limit with RESOURCE_EXHAUSTED, naming the limit`, async () => {
        await assert.rejects(call(), (error: unknown) => {
          assert.ok(error instanceof CacheError, String(error));
          assert.equal(error.code, "RESOURCE_EXHAUSTED");
          assert.match(error.message, message);
          return true;
        });
        assert.equal(await client.alookup("p", "llm"), null, "the server still answers, and stored nothing");
      });
    }

    it("tells clients how many calls a connection may carry at once", async () => {
      const session = connect(`http://${server.address}`);
      try {
        await new Promise((resolve) => session.once("remoteSettings", resolve));
        assert.equal(session.remoteSettings.maxConcurrentStreams, 7);
      } finally {
        session.close();
      }
    });
  });

  describe("snapshots", () => {
    it("keeps every acknowledged entry, with its namespace, order and expiry, across a SIGTERM and a restart", async () => {
      const path = join(mkdtempSync(join(tmpdir(), "llmcache-")), "cache.snapshot");
      const args = ["--snapshot", path, "--maxsize", "4", "--policy", "lru"];
      const first = await startServerProcess(args);
      const client = new CacheClient({ address: first.address });
      for (const key of ["a", "b", "c"]) await client.aupdate(key, "llm", [{ text: key }]);
      await client.aupdate("x", "llm", [{ text: "team" }], { namespace: "team", ttlMs: 1_500 });
      await client.alookup("a", "llm"); // lru: a is now the most recent
      await client.close();
      assert.equal((await first.stop()).code, 0);
      assert.ok(existsSync(path), "written on shutdown");

      const second = await startServerProcess(args);
      const restarted = new CacheClient({ address: second.address });
      try {
        assert.deepEqual(await restarted.alookup("x", "llm", { namespace: "team" }), [{ text: "team" }]);
        await restarted.aupdate("d", "llm", [{ text: "d" }]); // maxsize 4: the least recently used goes: b
        assert.equal(await restarted.alookup("b", "llm"), null);
        for (const key of ["a", "c", "d"]) assert.deepEqual(await restarted.alookup(key, "llm"), [{ text: key }]);
        await new Promise((resolve) => setTimeout(resolve, 1_600));
        assert.equal(await restarted.alookup("x", "llm", { namespace: "team" }), null, "x expired when it was due to");
      } finally {
        await restarted.close();
        await second.stop();
      }
    });

    it("starts with a lowered --max-namespaces, loading what fits and saying what it left out", async () => {
      const path = join(mkdtempSync(join(tmpdir(), "llmcache-")), "cache.snapshot");
      const first = await startServerProcess(["--snapshot", path]);
      const client = new CacheClient({ address: first.address });
      const namespaces = ["a", "b", "c", "d", "e"];
      for (const namespace of namespaces) await client.aupdate("p", "llm", [{ text: namespace }], { namespace });
      await client.close();
      assert.equal((await first.stop()).code, 0);

      const second = await startServerProcess(["--snapshot", path, "--max-namespaces", "2"]);
      const restarted = new CacheClient({ address: second.address });
      try {
        const found = await Promise.all(namespaces.map((namespace) => restarted.alookup("p", "llm", { namespace })));
        assert.deepEqual(found, [[{ text: "a" }], [{ text: "b" }], null, null, null], "the first two namespaces written");
        assert.match(second.stderr(), /"level":40,.*"entries":2,.*"tooManyNamespaces":3.*"msg":"snapshot loaded without the entries the store's limits now refuse"/);
      } finally {
        await restarted.close();
        await second.stop();
      }
    });

    it("sets a damaged snapshot aside, says so, and starts empty", async () => {
      const dir = mkdtempSync(join(tmpdir(), "llmcache-"));
      const path = join(dir, "cache.snapshot");
      writeFileSync(path, "LLMCACHE-SNAPSHOT 1\n\x01\x00\x00");
      const server = await startServerProcess(["--snapshot", path]);
      const client = new CacheClient({ address: server.address });
      try {
        assert.equal((await client.astats()).total.entries, 0);
        assert.match(server.stderr(), /"problem":"the file ends after 0 entries without its end record: it was cut short".*"msg":"snapshot unusable: set aside, starting empty"/);
        assert.ok(readdirSync(dir).some((file) => file.startsWith("cache.snapshot.corrupt-")));
      } finally {
        await client.close();
        await server.stop();
      }
    });
  });
});
