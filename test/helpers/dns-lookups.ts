/**
 * Run as a child process by the DNS tests: grpc-js reads
 * GRPC_NODE_USE_ALTERNATIVE_RESOLVER once, when it loads, and only with it
 * asks the DNS server a "dns://server/name:port" target names (without it
 * the system's resolver answers, which a test cannot give records of its
 * own). Makes `count` unary lookups of prompts no server holds through
 * `address`, and prints how many failed.
 *
 *   node dns-lookups.js ADDRESS COUNT
 */
import { CacheClient } from "../../src/index.js";

const [address, count] = process.argv.slice(2);
const client = new CacheClient({ address: address!, batching: false, timeoutMs: 5_000 });
let failed = 0;
for (let i = 0; i < Number(count); i++) {
  await client.alookup(`dns spreading ${i}`, "llm").catch(() => failed++);
}
await client.close();
console.log(JSON.stringify({ failed }));
