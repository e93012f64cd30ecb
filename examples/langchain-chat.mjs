// A LangChain JS chat model with llmcache as its cache, no glue code. Any
// chat model takes `cache:`; the fake one here stands in for a real model.
// Run a server first (npx llmcache serve), then: node examples/langchain-chat.mjs
import assert from "node:assert/strict";
import { FakeListChatModel } from "@langchain/core/utils/testing";
import { CacheClient } from "llmcache-grpc";
import { LangChainCache } from "llmcache-grpc/langchain";

const client = new CacheClient({ address: process.env.LLMCACHE_ADDRESS ?? "127.0.0.1:50051" });
try {
  const model = new FakeListChatModel({ responses: ["Paris", "a second, different answer"], cache: new LangChainCache(client) });
  const first = await model.invoke("What is the capital of France?");
  const second = await model.invoke("What is the capital of France?"); // from the cache: the model is not called
  assert.equal(first.content, "Paris");
  assert.equal(second.content, "Paris");
  console.log("langchain: the second invoke came from the cache:", second.content);
} finally {
  await client.close();
}
