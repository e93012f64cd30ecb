// The README's quick start, as a program: store a generation, look it up.
// Run a server first (npx llmcache serve), then: node examples/quick-start.mjs
import assert from "node:assert/strict";
import { CacheClient } from "llmcache-grpc";

const cache = new CacheClient({ address: process.env.LLMCACHE_ADDRESS ?? "127.0.0.1:50051" });
try {
  await cache.aupdate("What is the capital of France?", "model='gpt-5.4-mini'", [{ text: "Paris" }]);
  const result = await cache.alookup("What is the capital of France?", "model='gpt-5.4-mini'");
  assert.deepEqual(result, [{ text: "Paris" }]);
  assert.equal(await cache.alookup("Never asked", "model='gpt-5.4-mini'"), null, "a miss is null");
  console.log("quick start: stored and found", JSON.stringify(result));
} finally {
  await cache.close();
}
