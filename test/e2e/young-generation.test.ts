import assert from "node:assert/strict";
import { CacheClient } from "../../src/index.js";
import { startServerProcess } from "../helpers/server-process.js";
import { MetricsScraper } from "../helpers/single-flight.js";

const MiB = 2 ** 20;

/** V8's young generation in a server after calls that make garbage fast: 8 KiB updates and lookups. */
async function youngGenerationUnderLoad(env: NodeJS.ProcessEnv, nodeFlags: string[] = []): Promise<number> {
  const server = await startServerProcess(["--metrics-port", "0", "--max-bytes", "16MiB"], env, nodeFlags);
  const client = new CacheClient({ address: server.address });
  try {
    const text = "x".repeat(8192);
    for (let round = 0; round < 20; round++) {
      await Promise.all(
        Array.from({ length: 100 }, async (_, k) => {
          await client.aupdate(`prompt ${round} ${k}`, "llm", [{ text }]);
          assert.deepEqual(await client.alookup(`prompt ${round} ${k}`, "llm"), [{ text }]);
        }),
      );
    }
    return await new MetricsScraper(server).value("llmcache_nodejs_heap_space_size_total_bytes", '{space="new"}');
  } finally {
    await client.close();
    await server.stop();
  }
}

describe("V8's young generation in a server", function () {
  this.timeout(30_000);

  // With Node's defaults it grows to 16 MiB while the server's modules load
  // and to 32 MiB under load, resident memory that no byte budget accounts for.
  it("keeps the size it starts with when the operator chose none", async () => {
    const size = await youngGenerationUnderLoad({ NODE_OPTIONS: "" });
    assert.ok(size <= 4 * MiB, `new space ${size / MiB} MiB`);
  });

  it("is left to grow when the operator sized it, in NODE_OPTIONS or on node's command line", async () => {
    const inOptions = await youngGenerationUnderLoad({ NODE_OPTIONS: "--max-semi-space-size=8" });
    assert.ok(inOptions > 4 * MiB, `new space ${inOptions / MiB} MiB`);
    const onCommandLine = await youngGenerationUnderLoad({ NODE_OPTIONS: "" }, ["--max_semi_space_size=8"]);
    assert.ok(onCommandLine > 4 * MiB, `new space ${onCommandLine / MiB} MiB`);
  });
});
