import assert from "node:assert/strict";
import { setTimeout as sleep } from "node:timers/promises";
import { CacheClient, type Limits } from "../../src/index.js";
import { policyBehaviour, type PolicySettings } from "../helpers/policy-behaviour.js";
import { startServerProcess, type ServerProcess } from "../helpers/server-process.js";

/** The settings as `llmcache serve` flags: the suite goes through the command line too. */
function flags(settings: PolicySettings): string[] {
  const args: string[] = [];
  if (settings.maxsize) args.push("--maxsize", String(settings.maxsize));
  if (settings.maxBytes) args.push("--max-bytes", String(settings.maxBytes));
  if (settings.defaultTtlMs) args.push("--default-ttl", `${settings.defaultTtlMs}ms`);
  if (settings.policy) args.push("--policy", settings.policy);
  for (const [name, limits] of Object.entries(settings.namespaces ?? {})) args.push("--namespace-limit", `${name}:${limitSpec(limits)}`);
  return args;
}

function limitSpec({ maxsize, maxBytes, defaultTtlMs }: Limits): string {
  const parts = [maxsize && `maxsize=${maxsize}`, maxBytes && `max-bytes=${maxBytes}`, defaultTtlMs && `default-ttl=${defaultTtlMs}ms`];
  return parts.filter(Boolean).join(",");
}

describe("server policies, through CacheClient", function () {
  this.timeout(20_000);
  let running: { server: ServerProcess; client: CacheClient } | undefined;

  afterEach(async () => {
    await running?.client.close();
    await running?.server.stop();
    running = undefined;
  });

  policyBehaviour(async (settings) => {
    const server = await startServerProcess(flags(settings));
    running = { server, client: new CacheClient({ address: server.address }) };
    return { cache: running.client, advance: (ms) => sleep(ms) };
  });
});

describe("--namespace-limit given in parts", () => {
  it("applies every part of a namespace's limits, given in several flags", async () => {
    // The last flag for a namespace once replaced the earlier ones: maxsize=1 was lost.
    const server = await startServerProcess(["--namespace-limit", "a:maxsize=1", "--namespace-limit", "a:default-ttl=1h"]);
    const client = new CacheClient({ address: server.address, namespace: "a" });
    try {
      for (const prompt of ["p1", "p2", "p3"]) await client.aupdate(prompt, "llm", [{ text: prompt }]);
      const { namespaces } = await client.astats();
      assert.equal(namespaces.a?.entries, 1, "maxsize=1 holds");
      assert.deepEqual(await client.alookup("p3", "llm"), [{ text: "p3" }]);
    } finally {
      await client.close();
      await server.stop();
    }
  });
});
