import assert from "node:assert/strict";
import { connect, type ClientHttp2Session } from "node:http2";
import { get } from "node:http";
import { create, toBinary } from "@bufbuild/protobuf";
import { status } from "@grpc/grpc-js";
import { BatchLookupRequestSchema, CacheService } from "../../gen/llmcache/v1/cache_pb.js";
import { CacheClient, type Generation } from "../../src/index.js";
import { methodPath } from "../../src/rpc/service-definition.js";
import { COLLECTABLE, memoryAfterCollection, partsGrown, residentBytes } from "../helpers/memory.js";
import { grpcFrame } from "../helpers/raw-grpc.js";
import { startServerProcess, type ServerProcess } from "../helpers/server-process.js";
import { record } from "./figures.js";

const MiB = 2 ** 20;
/** What the heap may hold beyond the byte budget after a full collection: grpc-js's and the store's bookkeeping, the idle namespace records. */
const HEAP_SLACK_MIB = 12;
/** What the heap may hold beyond what the store accounts, once it is full: a connection, its calls, the records of empty namespaces. */
const UNACCOUNTED_MIB = 4;

/**
 * What resident memory may grow by beyond the byte budget, over what the
 * server held idle, with Node's default flags: the allowance this check
 * gave with --max-old-space-size (224 MiB in all, for an idle server of
 * about 80), now without the flag. Measured over the idle server: +25 to
 * +45 MiB for most shapes; a namespace each +60 or +120 MiB from run to
 * run (V8 collects its namespace records' garbage late or early). The goal
 * of budget + 64 MiB is missed; the README gives the figures.
 */
const RESIDENT_OVERHEAD_MIB = 112;

/** A server with a byte budget and Node's default heap settings (no NODE_OPTIONS). */
function budgetedServer(budgetMiB: number, args: string[] = []): Promise<ServerProcess> {
  return startServerProcess(["--max-bytes", `${budgetMiB}MiB`, ...args], { NODE_OPTIONS: "" }, COLLECTABLE);
}

const mib = (bytes: number) => `${(bytes / MiB).toFixed(1)} MiB`;

describe("resources a client can make the server hold", function () {
  this.timeout(180_000);

  it("survives 400,000 lookups and 50,000 updates naming new namespaces, within its budget", async () => {
    const server = await budgetedServer(16);
    const client = new CacheClient({ address: server.address, timeoutMs: 30_000 });
    try {
      const baseline = await memoryAfterCollection(server);
      for (let i = 0; i < 400_000; i += 1_000) {
        await Promise.all(Array.from({ length: 1_000 }, (_, j) => client.alookup("p", "llm", { namespace: `flood-${i + j}` })));
      }
      let refused = 0;
      for (let i = 0; i < 50_000; i += 1_000) {
        const outcomes = await Promise.allSettled(
          Array.from({ length: 1_000 }, (_, j) => client.aupdate("p", "llm", [{ text: "t" }], { namespace: `written-${i + j}` })),
        );
        for (const outcome of outcomes) {
          if (outcome.status === "fulfilled") continue;
          assert.match(String(outcome.reason), /RESOURCE_EXHAUSTED: too many namespaces: 10000 namespaces hold entries/);
          refused++;
        }
      }
      const after = await memoryAfterCollection(server);
      const { total, namespaces, namespacesNotListed } = await client.astats();
      record("namespace flood: heap growth", `${mib(after.heap - baseline.heap)} for a 16 MiB budget (${total.entries} entries, ${refused} updates refused by --max-namespaces)`);
      record("namespace flood: namespaces listed / not listed", `${Object.keys(namespaces).length} / ${namespacesNotListed}`);
      assert.equal(server.child.exitCode, null, "the server is running");
      assert.ok(total.bytes <= 16 * MiB);
      assert.ok(Object.keys(namespaces).length <= 1_000);
      assert.ok(after.heap - baseline.heap <= (16 + HEAP_SLACK_MIB) * MiB, `heap grew by ${mib(after.heap - baseline.heap)}: ${partsGrown(baseline, after)}`);
    } finally {
      await client.close();
      await server.stop();
    }
  });

  const shapes: [string, (i: number) => [string, string, Generation[], string]][] = [
    ["prompts sharing one llm_string (the bench's)", (i) => [`prompt ${i}`.padEnd(200, "."), "model='gpt'", [{ text: "x".repeat(400) }], ""]],
    ["an llm_string each", (i) => ["prompt".padEnd(200, "."), `model-${i}`.padEnd(100, "."), [{ text: "x".repeat(400) }], ""]],
    ["a namespace each", (i) => [`p${i}`, "llm", [{ text: "v" }], `ns-${i}`]],
    ["tiny values", (i) => [`p${i}`, "llm", [{ text: "" }], ""]],
  ];
  for (const [shape, entry] of shapes) {
    it(`keeps the heap within its 32 MiB budget for entries with ${shape}`, async () => {
      const server = await budgetedServer(32, ["--max-namespaces", "1000000"]);
      const client = new CacheClient({ address: server.address, timeoutMs: 30_000 });
      const idle = residentBytes(server.child.pid!);
      let peak = idle;
      const sampler = setInterval(() => (peak = Math.max(peak, residentBytes(server.child.pid!))), 100);
      try {
        const baseline = await memoryAfterCollection(server);
        // Three budgets' worth of updates, so that the budget is held under churn.
        for (let written = 0; ; written += 500) {
          const { total } = await client.astats();
          if (total.evictions.bytes > 0 && written >= 3 * total.entries) break;
          await Promise.all(
            Array.from({ length: 500 }, (_, j) => {
              const [prompt, llmString, generations, namespace] = entry(written + j);
              return client.aupdate(prompt, llmString, generations, { namespace });
            }),
          );
        }
        clearInterval(sampler);
        const after = await memoryAfterCollection(server);
        const { total } = await client.astats();
        const growth = after.heap - baseline.heap;
        record(
          `accounting, ${shape}`,
          `heap +${mib(growth)} for ${total.entries} entries, ${mib(total.bytes)} accounted (${((growth / total.entries) | 0)} B real, ${((total.bytes / total.entries) | 0)} B accounted each); peak resident ${mib(peak)}`,
        );
        assert.ok(total.bytes <= 32 * MiB);
        assert.ok(growth <= 32 * MiB + HEAP_SLACK_MIB * MiB, `the heap grew by ${mib(growth)}, more than the budget and ${HEAP_SLACK_MIB} MiB: ${partsGrown(baseline, after)}`);
        assert.ok(growth <= total.bytes + UNACCOUNTED_MIB * MiB, `real ${mib(growth)} against ${mib(total.bytes)} accounted: ${partsGrown(baseline, after)}`);
        assert.ok(peak - idle <= (32 + RESIDENT_OVERHEAD_MIB) * MiB, `peak resident memory ${mib(peak)}, ${mib(idle)} idle`);
      } finally {
        clearInterval(sampler);
        await client.close();
        await server.stop();
      }
    });
  }

  it("holds a bounded amount for a client that asks for big replies and does not read them", async () => {
    const server = await startServerProcess([], {}, COLLECTABLE);
    const client = new CacheClient({ address: server.address });
    const sessions: ClientHttp2Session[] = [];
    try {
      await client.aupdate("big", "llm", [{ text: "x".repeat(MiB) }]);
      const baseline = residentBytes(server.child.pid!);
      let peak = baseline;
      const codes = new Map<string, number>();
      const call = (session: ClientHttp2Session, names: number) =>
        new Promise<void>((resolve) => {
          const lookups = Array.from({ length: names }, () => ({ prompt: "big", llmString: "llm" }));
          const body = grpcFrame(toBinary(BatchLookupRequestSchema, create(BatchLookupRequestSchema, { lookups })));
          const stream = session.request({ ":method": "POST", ":path": methodPath(CacheService.method.batchLookup), "content-type": "application/grpc", te: "trailers" });
          const settle = (fields: Record<string, unknown>) => {
            if (fields["grpc-status"] === undefined) return;
            const name = status[Number(fields["grpc-status"])]!;
            codes.set(name, (codes.get(name) ?? 0) + 1);
            resolve();
          };
          stream.on("response", settle).on("trailers", settle).on("error", () => resolve());
          stream.end(body);
          setTimeout(resolve, 2_000); // a reply held back by the window never ends
        });
      // 1 MiB named 256 times (a 256 MiB reply), and 15 times (15 MiB, within --max-reply-bytes), by clients that read nothing.
      for (let s = 0; s < 4; s++) {
        const session = connect(`http://${server.address}`, { settings: { initialWindowSize: 0 } }).on("error", () => {});
        sessions.push(session);
        await Promise.all([...Array.from({ length: 4 }, () => call(session, 256)), ...Array.from({ length: 8 }, () => call(session, 15))]);
        peak = Math.max(peak, residentBytes(server.child.pid!));
      }
      record("unread replies: statuses", [...codes].map(([name, count]) => `${name} ${count}`).join(", "));
      record("unread replies: resident growth", `${mib(peak - baseline)} with 4 connections that read nothing (--max-unread-bytes 64 MiB each)`);
      assert.equal(codes.get("OK"), undefined, "no reply held back by the window completed");
      assert.ok((codes.get("RESOURCE_EXHAUSTED") ?? 0) >= 4 * 4, "every 256 MiB reply and the unread bytes past the limit were refused");
      assert.ok(peak - baseline <= (4 * 64 + 64) * MiB, `resident memory grew by ${mib(peak - baseline)}`);
      for (const session of sessions) session.destroy();
      assert.deepEqual(await client.alookup("big", "llm"), [{ text: "x".repeat(MiB) }], "the server still answers");
    } finally {
      for (const session of sessions) session.destroy();
      await client.close();
      await server.stop();
    }
  });

  it("answers Stats and a metrics scrape without listing every namespace", async () => {
    const server = await startServerProcess(["--metrics-port", "0", "--max-namespaces", "20000"]);
    const client = new CacheClient({ address: server.address, timeoutMs: 30_000 });
    try {
      for (let i = 0; i < 20_000; i += 1_000) {
        await Promise.all(Array.from({ length: 1_000 }, (_, j) => client.aupdate("p", "llm", [{ text: "t" }], { namespace: `held-${i + j}` })));
      }
      let started = performance.now();
      const { namespaces, namespacesNotListed, total } = await client.astats();
      const statsMs = performance.now() - started;
      const metricsPort = Number(/metrics on port (\d+)/.exec(server.stdout())![1]);
      started = performance.now();
      const scrape = await new Promise<string>((resolve, reject) =>
        get(`http://127.0.0.1:${metricsPort}/metrics`, (response) => {
          let text = "";
          response.on("data", (chunk) => (text += chunk)).on("end", () => resolve(text));
        }).on("error", reject),
      );
      const scrapeMs = performance.now() - started;
      record("20,000 namespaces: Stats / metrics scrape", `${statsMs.toFixed(0)} ms / ${scrapeMs.toFixed(0)} ms`);
      assert.equal(total.entries, 20_000);
      assert.equal(Object.keys(namespaces).length, 1_000);
      assert.ok(Object.keys(namespaces).length + namespacesNotListed >= 20_000, "the rest are counted");
      assert.match(scrape, /^llmcache_entries 20000$/m);
      assert.doesNotMatch(scrape, /held-/, "no namespace in the metrics");
    } finally {
      await client.close();
      await server.stop();
    }
  });
});
