import assert from "node:assert/strict";
import {
  AIMessage,
  AIMessageChunk,
  ChatMessage,
  FunctionMessage,
  HumanMessage,
  HumanMessageChunk,
  SystemMessage,
  ToolMessage,
  ToolMessageChunk,
  type BaseMessage,
} from "@langchain/core/messages";
import type { ChatGeneration } from "@langchain/core/outputs";
import { FakeListChatModel, FakeStreamingLLM } from "@langchain/core/utils/testing";
import { CacheClient, InMemoryCache } from "../../src/index.js";
import { LangChainCache } from "../../src/langchain/index.js";
import { startServerProcess, type ServerProcess } from "../helpers/server-process.js";

/** A message of every class LangChain JS has, with every field it can carry. */
export function everyMessage(): BaseMessage[] {
  return [
    new AIMessage({
      content: "It is sunny.",
      id: "run-1",
      name: "forecaster",
      tool_calls: [{ name: "weather", args: { city: "Paris", days: 3, units: { temp: "C" } }, id: "call-1", type: "tool_call" }],
      invalid_tool_calls: [{ name: "broken", args: "{oops", id: "call-2", error: "bad JSON", type: "invalid_tool_call" }],
      usage_metadata: { input_tokens: 12, output_tokens: 34, total_tokens: 46, input_token_details: { cache_read: 2 }, output_token_details: { reasoning: 5 } },
      response_metadata: { model_name: "gpt-test", finish_reason: "tool_calls", logprobs: null },
      additional_kwargs: { refusal: null, extra_field: [1, "two", { three: 3 }] },
    }),
    new AIMessageChunk({ content: "partial", tool_call_chunks: [{ name: "weather", args: '{"city":', id: "call-1", index: 0, type: "tool_call_chunk" }] }),
    new HumanMessage({ content: [{ type: "text", text: "What is this?" }, { type: "image_url", image_url: { url: "https://example.com/a.png" } }], id: "h-1" }),
    new HumanMessageChunk({ content: "typing" }),
    new SystemMessage({ content: "You are terse.", name: "policy" }),
    new ToolMessage({ content: "18°C", tool_call_id: "call-1", artifact: { raw: [18, 19], source: "api" }, status: "success", name: "weather" }),
    new ToolMessage({ content: "failed", tool_call_id: "call-9", status: "error" }),
    new ToolMessageChunk({ content: "chunk of a result", tool_call_id: "call-1" }),
    new ChatMessage({ content: "As a critic: fine.", role: "critic" }),
    new FunctionMessage({ content: '{"ok":true}', name: "lookup_fn" }),
  ];
}

describe("LangChainCache (LangChain JS)", function () {
  this.timeout(30_000);
  let server: ServerProcess;
  let client: CacheClient;

  before(async () => {
    server = await startServerProcess();
    client = new CacheClient({ address: server.address });
  });
  after(async () => {
    await client.close();
    await server.stop();
  });

  it("serves a chat model's second invoke from the cache: the fake's next response is not used", async () => {
    const cache = new LangChainCache(client, { namespace: "chat-invoke" });
    const model = new FakeListChatModel({ responses: ["first answer", "second answer"], cache });
    const first = await model.invoke("What is the capital of France?");
    const second = await model.invoke("What is the capital of France?");
    assert.equal(first.content, "first answer");
    assert.equal(second.content, "first answer", "a hit, not the fake's second response");
    assert.ok(AIMessage.isInstance(second));
    assert.equal((await model.invoke("Another question")).content, "second answer", "a different prompt is a miss");
  });

  it("caches an LLM's calls, and each prompt of a generate with several", async () => {
    const cache = new LangChainCache(client, { namespace: "llm-generate" });
    const llm = new FakeStreamingLLM({ responses: ["one", "two", "three", "four"], cache });
    const first = await llm.generate(["a", "b", "c"]);
    assert.deepEqual(first.generations.map((g) => g[0]!.text), ["one", "two", "three"]);
    const again = await llm.generate(["a", "b", "c"]);
    assert.deepEqual(again.generations.map((g) => g[0]!.text), ["one", "two", "three"], "all three from the cache");
    assert.equal(await llm.invoke("b"), "two");
    assert.equal(await llm.invoke("d"), "four", "the fake is at its fourth response: nothing else called it");
  });

  it("gives back an AIMessage with tool calls, usage and metadata equal to the one stored", async () => {
    const cache = new LangChainCache(client, { namespace: "tool-calls" });
    const original = everyMessage()[0]!;
    await cache.update("prompt", "llm", [{ text: "It is sunny.", message: original, generationInfo: { finish_reason: "tool_calls", seed: 7 } } as ChatGeneration]);
    const [hit] = (await cache.lookup("prompt", "llm")) as ChatGeneration[];
    assert.ok(AIMessage.isInstance(hit!.message));
    assert.deepEqual(hit!.message.toDict(), original.toDict());
    assert.deepEqual(hit!.generationInfo, { finish_reason: "tool_calls", seed: 7 });
  });

  for (const message of everyMessage()) {
    it(`round-trips a ${message.constructor.name} (${JSON.stringify(message.toDict().data).slice(0, 40)}...) as the same class, toDict() equal`, async () => {
      const cache = new LangChainCache(client, { namespace: "every-class" });
      await cache.update(`prompt for ${message.constructor.name}`, "llm", [{ text: "t", message } as ChatGeneration]);
      const [hit] = (await cache.lookup(`prompt for ${message.constructor.name}`, "llm")) as ChatGeneration[];
      assert.equal(hit!.message.constructor.name, message.constructor.name);
      assert.deepEqual(hit!.message.toDict(), message.toDict());
    });
  }

  it("works over an InMemoryCache in process too", async () => {
    const cache = new LangChainCache(new InMemoryCache());
    const model = new FakeListChatModel({ responses: ["kept", "not used"], cache });
    await model.invoke("hello");
    assert.equal((await model.invoke("hello")).content, "kept");
  });

  it("keeps LangChain's key as the pair, unhashed: keys that join alike stay apart", async () => {
    const cache = new LangChainCache(client, { namespace: "pairs" });
    await cache.update("a_b", "c", [{ text: "first" }]);
    await cache.update("a", "b_c", [{ text: "second" }]);
    assert.deepEqual(await cache.lookup("a_b", "c"), [{ text: "first" }]);
    assert.deepEqual(await cache.lookup("a", "b_c"), [{ text: "second" }]);
    assert.deepEqual(await client.alookup("a_b", "c", { namespace: "pairs" }), [{ text: "first" }], "stored under the pair as given");
  });

  it("passes its namespace, TTL and bypass to every call", async () => {
    const short = new LangChainCache(client, { namespace: "options", ttlMs: 100 });
    await short.update("p", "llm", [{ text: "soon gone" }]);
    assert.deepEqual(await client.alookup("p", "llm", { namespace: "options" }), [{ text: "soon gone" }]);
    await new Promise((resolve) => setTimeout(resolve, 150));
    assert.equal(await short.lookup("p", "llm"), null, "expired after its TTL");
    await short.update("q", "llm", [{ text: "stored" }]);
    const bypassing = new LangChainCache(client, { namespace: "options", bypass: true });
    assert.equal(await bypassing.lookup("q", "llm"), null, "a bypassing cache never reads");
  });

  it("refuses bad options when it is made, not at the update after the model has answered", () => {
    const refused: [string, () => unknown, { name: string; message: RegExp }][] = [
      ["a server's address for a cache", () => new LangChainCache({ address: "127.0.0.1:50051" } as never), { name: "TypeError", message: /^cache must be a CacheClient or an InMemoryCache, got an object: new LangChainCache\(new CacheClient\(\{ address \}\)\)$/ }],
      ["no cache", () => new LangChainCache(undefined as never), { name: "TypeError", message: /^cache must be a CacheClient or an InMemoryCache, got undefined/ }],
      ["a negative ttlMs", () => new LangChainCache(client, { ttlMs: -1 }), { name: "RangeError", message: /^ttlMs must be greater than 0$/ }],
      ["a namespace that is not a string", () => new LangChainCache(client, { namespace: 5 as never }), { name: "TypeError", message: /^namespace must be a string, got number 5$/ }],
      ["a bypass that is not a boolean", () => new LangChainCache(client, { bypass: "no" as never }), { name: "TypeError", message: /^bypass must be a boolean, got a string$/ }],
      ["a singleFlight that is neither", () => new LangChainCache(client, { singleFlight: "yes" as never }), { name: "TypeError", message: /^singleFlight must be a boolean or \{ leaseMs\?, waitMs\? \}, got a string$/ }],
      ["singleFlight with bypass", () => new LangChainCache(client, { singleFlight: true, bypass: true }), { name: "TypeError", message: /^singleFlight with bypass: / }],
    ];
    for (const [name, make, error] of refused) assert.throws(make, error, name);
    assert.ok(new LangChainCache(client, { ttlMs: Infinity, singleFlight: { leaseMs: 1_000 } }), "never expiring, a lease of its own");
  });

  it("with single flight, an update that fails releases its lease: a waiter is granted the next at once", async () => {
    const namespace = "failed-fill";
    const cache = new LangChainCache(client, { namespace, singleFlight: { leaseMs: 20_000, waitMs: 20_000 } });
    assert.equal(await cache.lookup("p", "llm"), null, "a miss, and this adapter's lease");
    // NaN is refused before anything is sent: the waiters used to wait out the lease.
    await assert.rejects(cache.update("p", "llm", [{ text: "x", generationInfo: { score: NaN } }]), /is not JSON: got number NaN/);
    const other = new LangChainCache(client, { namespace, singleFlight: { leaseMs: 20_000, waitMs: 20_000 } });
    const start = Date.now();
    assert.equal(await other.lookup("p", "llm"), null, "a miss with the next lease, not a wait");
    assert.ok(Date.now() - start < 5_000, `granted at once, not after ${Date.now() - start} ms`);
    const { leases } = (await client.astats()).namespaces[namespace]!;
    assert.deepEqual([leases.granted, leases.released, leases.expired], [2, 1, 0]);
  });

  it("never blocks the event loop: a timer keeps firing during 1,000 cached invocations", async () => {
    const cache = new LangChainCache(client, { namespace: "non-blocking" });
    const model = new FakeListChatModel({ responses: ["cached"], cache });
    await model.invoke("same prompt");
    let ticks = 0;
    const timer = setInterval(() => ticks++, 1);
    const started = performance.now();
    for (let i = 0; i < 1000; i++) assert.equal((await model.invoke("same prompt")).content, "cached");
    clearInterval(timer);
    const elapsedMs = performance.now() - started;
    // A blocked loop would let the 1 ms timer fire at most a handful of times.
    assert.ok(ticks >= Math.min(50, elapsedMs / 4), `${ticks} ticks in ${elapsedMs.toFixed(0)} ms`);
  });
});
