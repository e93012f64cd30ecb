import { logVerbosity, setLogVerbosity } from "@grpc/grpc-js";
import { parseArgs } from "node:util";
import { checkMaxsize } from "../engine/bounded-store.js";
import { DEFAULT_HOST, DEFAULT_PORT, startServer } from "../server/server.js";
import { checkPort, integerSetting, parsingFlags, setting } from "./settings.js";

/** `llmcache serve`: runs a server until SIGINT or SIGTERM. */
export async function serveCommand(args: string[]): Promise<void> {
  const { values } = parsingFlags(() =>
    parseArgs({
      args,
      options: { host: { type: "string" }, port: { type: "string" }, maxsize: { type: "string" } },
    }),
  );
  // grpc-js logs a failed bind on its own, in a second line; this command
  // reports its errors itself. GRPC_VERBOSITY still turns grpc-js's logs on.
  if (process.env.GRPC_VERBOSITY === undefined) setLogVerbosity(logVerbosity.NONE);
  const port = setting("port", values.port, "LLMCACHE_PORT");
  const maxsize = setting("maxsize", values.maxsize, "LLMCACHE_MAXSIZE");
  const server = await startServer({
    host: setting("host", values.host, "LLMCACHE_HOST")?.raw ?? DEFAULT_HOST,
    port: port ? integerSetting(port, checkPort) : DEFAULT_PORT,
    maxsize: maxsize ? integerSetting(maxsize, checkMaxsize) : undefined,
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
