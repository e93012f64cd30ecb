import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { get } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { healthOf } from "../helpers/raw-grpc.js";
import { runCli, startServerProcess, type ServerProcess } from "../helpers/server-process.js";

const directory = () => mkdtempSync(join(tmpdir(), "llmcache-snapshot-health-"));

function serve(args: string[], env: NodeJS.ProcessEnv = {}) {
  return runCli(["serve", "--port", "0", ...args], env);
}


function metricsOf(server: ServerProcess): Promise<string> {
  const port = /metrics on port (\d+)/.exec(server.stdout())?.[1];
  assert.ok(port, "the server printed its metrics port");
  return new Promise((resolve, reject) => {
    get(`http://127.0.0.1:${port}/metrics`, (response) => {
      let body = "";
      response.on("data", (chunk) => (body += chunk));
      response.on("end", () => resolve(body));
    }).on("error", reject);
  });
}

const metric = (text: string, name: string) => Number(new RegExp(`^${name} (\\S+)$`, "m").exec(text)?.[1]);

async function until(what: string, check: () => Promise<boolean>, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

describe("snapshot health", function () {
  this.timeout(30_000);

  describe("serve refuses a snapshot it could not write, with a one-line error and exit code 2", () => {
    it("when the snapshot's directory does not exist", async () => {
      const path = join(directory(), "missing", "cache.snapshot");
      const run = await serve(["--snapshot", path]);
      assert.deepEqual(run, {
        code: 2,
        stdout: "",
        stderr: `llmcache: cannot write --snapshot ${path}: directory ${join(path, "..")} does not exist (see llmcache --help)\n`,
      });
    });

    it("when LLMCACHE_SNAPSHOT's directory is a regular file", async () => {
      const dir = directory();
      writeFileSync(join(dir, "file"), "");
      const path = join(dir, "file", "cache.snapshot");
      const run = await serve([], { LLMCACHE_SNAPSHOT: path });
      assert.deepEqual(run, {
        code: 2,
        stdout: "",
        stderr: `llmcache: cannot write LLMCACHE_SNAPSHOT ${path}: ${dir}/file is not a directory (see llmcache --help)\n`,
      });
    });
  });

  it("turns llmcache.v1.Snapshots NOT_SERVING while writes fail, and SERVING again once one succeeds, with metrics to match", async () => {
    const dir = directory();
    const server = await startServerProcess(["--snapshot", join(dir, "cache.snapshot"), "--snapshot-interval", "200ms", "--metrics-port", "0"]);
    try {
      assert.equal(await healthOf(server.address, "llmcache.v1.Snapshots"), "SERVING", "its directory was checked at start");

      rmSync(dir, { recursive: true });
      await until("llmcache.v1.Snapshots is NOT_SERVING", async () => (await healthOf(server.address, "llmcache.v1.Snapshots")) === "NOT_SERVING");
      assert.equal(await healthOf(server.address, "llmcache.v1.CacheService"), "SERVING", "the cache still serves");
      assert.equal(await healthOf(server.address, ""), "SERVING", "the server still serves");
      assert.ok(metric(await metricsOf(server), "llmcache_snapshot_failures_total") >= 1, "failures are counted");
      assert.match(server.stderr(), /"msg":"snapshot failed"/);

      const recreatedAtSeconds = Date.now() / 1000;
      mkdirSync(dir);
      await until("llmcache.v1.Snapshots is SERVING", async () => (await healthOf(server.address, "llmcache.v1.Snapshots")) === "SERVING");
      const writtenAt = metric(await metricsOf(server), "llmcache_snapshot_last_success_timestamp_seconds");
      assert.ok(writtenAt >= recreatedAtSeconds, `the last success, ${writtenAt}, is a write since the directory came back at ${recreatedAtSeconds}`);
    } finally {
      assert.equal((await server.stop()).code, 0, "the snapshot on shutdown is written");
    }
  });
});
