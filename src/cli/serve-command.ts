import { logVerbosity, setLogVerbosity } from "@grpc/grpc-js";
import { parseArgs } from "node:util";
import { checkMaxsize, checkPolicy, type Limits } from "../engine/limits.js";
import { DEFAULT_HOST, DEFAULT_PORT, startServer } from "../server/server.js";
import { checkPort, integerSetting, parsedSetting, parsingFlags, setting, UsageError, type Setting } from "./settings.js";
import { parseBytes, parseDuration } from "./units.js";

/** `llmcache serve`: runs a server until SIGINT or SIGTERM. */
export async function serveCommand(args: string[]): Promise<void> {
  const { values } = parsingFlags(() =>
    parseArgs({
      args,
      options: {
        host: { type: "string" },
        port: { type: "string" },
        maxsize: { type: "string" },
        "max-bytes": { type: "string" },
        "default-ttl": { type: "string" },
        policy: { type: "string" },
        "namespace-limit": { type: "string", multiple: true },
      },
    }),
  );
  // grpc-js logs a failed bind on its own, in a second line; this command
  // reports its errors itself. GRPC_VERBOSITY still turns grpc-js's logs on.
  if (process.env.GRPC_VERBOSITY === undefined) setLogVerbosity(logVerbosity.NONE);
  const port = setting("port", values.port, "LLMCACHE_PORT");
  const policy = setting("policy", values.policy, "LLMCACHE_POLICY");
  const server = await startServer({
    host: setting("host", values.host, "LLMCACHE_HOST")?.raw ?? DEFAULT_HOST,
    port: port ? integerSetting(port, checkPort) : DEFAULT_PORT,
    ...limitSettings({
      maxsize: setting("maxsize", values.maxsize, "LLMCACHE_MAXSIZE"),
      maxBytes: setting("max-bytes", values["max-bytes"], "LLMCACHE_MAX_BYTES"),
      defaultTtl: setting("default-ttl", values["default-ttl"], "LLMCACHE_DEFAULT_TTL"),
    }),
    policy: policy ? parsedSetting(policy, checkPolicy) : undefined,
    namespaces: namespaceLimits(values["namespace-limit"]),
  });

  let stopping = false;
  const stop = (signal: NodeJS.Signals) => {
    if (stopping) {
      console.error(`llmcache: ${signal} again, stopping now`);
      process.exit(1);
    }
    stopping = true;
    console.error(`llmcache: ${signal} received, finishing calls in flight`);
    server.shutdown().then(() => process.exit(0));
  };
  process.on("SIGINT", stop);
  process.on("SIGTERM", stop);
  // Printed last: whoever waits for this line may signal at once.
  console.log(`llmcache listening on ${server.address}`);
}

function limitSettings(given: { maxsize?: Setting; maxBytes?: Setting; defaultTtl?: Setting }): Limits {
  return {
    maxsize: given.maxsize && integerSetting(given.maxsize, (n) => checkMaxsize(n)),
    maxBytes: given.maxBytes && parsedSetting(given.maxBytes, parseBytes),
    defaultTtlMs: given.defaultTtl && parsedSetting(given.defaultTtl, parseDuration),
  };
}

/**
 * Per-namespace limits, from --namespace-limit flags (repeated) or else
 * LLMCACHE_NAMESPACE_LIMITS (separated by ";"), each
 * NAME:maxsize=N,max-bytes=SIZE,default-ttl=DURATION with any of the three.
 */
function namespaceLimits(flags: string[] | undefined): Record<string, Limits> | undefined {
  const fromEnv = process.env.LLMCACHE_NAMESPACE_LIMITS;
  const specs = flags?.map((raw) => ({ raw, source: "--namespace-limit" })) ??
    (fromEnv ? fromEnv.split(";").filter((raw) => raw.trim()).map((raw) => ({ raw, source: "LLMCACHE_NAMESPACE_LIMITS" })) : []);
  if (specs.length === 0) return undefined;
  const limits: Record<string, Limits> = {};
  for (const spec of specs) {
    const colon = spec.raw.lastIndexOf(":");
    const fail = (why: string) => new UsageError(`invalid ${spec.source} "${spec.raw}": ${why}`);
    if (colon < 0) throw fail("expected NAME:maxsize=N,max-bytes=SIZE,default-ttl=DURATION");
    const name = spec.raw.slice(0, colon);
    const given: { maxsize?: Setting; maxBytes?: Setting; defaultTtl?: Setting } = {};
    for (const pair of spec.raw.slice(colon + 1).split(",")) {
      const [key, value, extra] = pair.split("=");
      const field = ({ maxsize: "maxsize", "max-bytes": "maxBytes", "default-ttl": "defaultTtl" } as const)[key?.trim() ?? ""];
      if (!field || value === undefined || extra !== undefined) throw fail(`"${pair}" is not maxsize=N, max-bytes=SIZE or default-ttl=DURATION`);
      given[field] = { raw: value.trim(), source: `${spec.source} ${name}:${key}` };
    }
    limits[name] = limitSettings(given);
  }
  return limits;
}
