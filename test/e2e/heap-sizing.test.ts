import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { CacheClient } from "../../src/index.js";
import { startServerProcess } from "../helpers/server-process.js";
import { MetricsScraper } from "../helpers/single-flight.js";

const MiB = 2 ** 20;
const HEAP_SIZING = fileURLToPath(new URL("../../src/cli/heap-sizing.js", import.meta.url));
const PROMOTED_GARBAGE = fileURLToPath(new URL("../helpers/promoted-garbage.js", import.meta.url));

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

/** How many full collections the same promoted garbage took in a fresh node, with heap-sizing.ts imported first or not. */
async function fullCollections(sized: boolean, nodeFlags: string[] = []): Promise<number> {
  const args = [...nodeFlags, PROMOTED_GARBAGE, ...(sized ? [HEAP_SIZING] : [])];
  const { stdout } = await promisify(execFile)(process.execPath, args, { env: { ...process.env, NODE_OPTIONS: "" } });
  return (JSON.parse(stdout) as { major: number }).major;
}

describe("the llmcache command's heap", function () {
  this.timeout(30_000);

  describe("young generation", () => {
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

  describe("old generation", () => {
    // Measured: 38-39 full collections sized, 3 with V8's defaults, 4 at an operator's 300%
    // (the small young generation sends this garbage to the old one; a server's dies young).
    it("is collected after growing by a fifth, not by up to four times", async () => {
      const [defaults, sized] = [await fullCollections(false), await fullCollections(true)];
      assert.ok(sized >= 2 * defaults, `${sized} full collections sized, ${defaults} with V8's defaults`);
    });

    it("grows as the operator said when they gave --heap-growing-percent", async () => {
      const [sized, chosen] = [await fullCollections(true), await fullCollections(true, ["--heap-growing-percent=300"])];
      assert.ok(chosen * 2 <= sized, `${chosen} full collections at the operator's 300%, ${sized} sized`);
    });
  });
});
