import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { fileURLToPath } from "node:url";
import { CacheClient } from "../../src/index.js";
import { startDnsServer, type DnsServer } from "../helpers/dns-server.js";
import { startServerProcess, type ServerProcess } from "../helpers/server-process.js";

const LOOKUPS = fileURLToPath(new URL("../helpers/dns-lookups.js", import.meta.url));
const NAME = "replicas.llmcache.test";

/** Runs dns-lookups.js with grpc-js's DNS resolver that honours a target's DNS server. */
function lookupsThrough(address: string, count: number): Promise<{ failed: number }> {
  return new Promise((resolve, reject) => {
    execFile(
      process.execPath,
      [LOOKUPS, address, String(count)],
      { env: { ...process.env, GRPC_NODE_USE_ALTERNATIVE_RESOLVER: "true" }, timeout: 60_000 },
      (error, stdout, stderr) => (error ? reject(new Error(`${error.message}\n${stderr}`)) : resolve(JSON.parse(stdout) as { failed: number })),
    );
  });
}

async function missesOf(address: string): Promise<number> {
  const client = new CacheClient({ address });
  try {
    return (await client.astats()).total.misses;
  } finally {
    await client.close();
  }
}

/** Two servers on one port, at 127.0.0.1 and 127.0.0.2: the two records of one name. */
async function twoServersOnOnePort(): Promise<ServerProcess[]> {
  for (let attempt = 0; ; attempt++) {
    const first = await startServerProcess(["--host", "127.0.0.1"]);
    const port = first.address.slice(first.address.lastIndexOf(":") + 1);
    try {
      return [first, await startServerProcess(["--host", "127.0.0.2", "--port", port])];
    } catch (error) {
      await first.stop();
      if (attempt === 4) throw error; // the port was taken at 127.0.0.2 five times: not chance
    }
  }
}

describe("a client of a DNS name with several records", function () {
  this.timeout(90_000);
  let dns: DnsServer;
  let servers: ServerProcess[];
  let port: string;

  before(async () => {
    dns = await startDnsServer({ [NAME]: ["127.0.0.1", "127.0.0.2"] });
    servers = await twoServersOnOnePort();
    port = servers[0]!.address.slice(servers[0]!.address.lastIndexOf(":") + 1);
  });
  after(async () => {
    await Promise.all(servers.map((server) => server.stop()));
    await dns.close();
  });

  it("spreads unary lookups over every record", async () => {
    const before = await Promise.all(servers.map((server) => missesOf(server.address)));
    const count = 40;
    const { failed } = await lookupsThrough(`dns://127.0.0.1:${dns.port}/${NAME}:${port}`, count);
    assert.equal(failed, 0);
    assert.ok(dns.answered > 0, "the name was resolved by the test's DNS server");
    const served = (await Promise.all(servers.map((server) => missesOf(server.address)))).map((misses, i) => misses - before[i]!);
    assert.equal(served[0]! + served[1]!, count);
    // round_robin takes turns: each record's server gets about half.
    for (const [i, calls] of served.entries()) assert.ok(calls >= count / 4, `server at ${servers[i]!.address} served ${calls} of ${count}`);
  });

  it("keeps answering through the other record when one server is killed", async () => {
    const [, second] = servers;
    await second!.stop("SIGKILL");
    const count = 30;
    const { failed } = await lookupsThrough(`dns://127.0.0.1:${dns.port}/${NAME}:${port}`, count);
    // A fresh client: its channel finds the killed server refusing connections before any call is sent to it.
    assert.equal(failed, 0);
  });
});
