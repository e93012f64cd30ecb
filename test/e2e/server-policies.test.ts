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
