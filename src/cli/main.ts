#!/usr/bin/env node
import { clearCommand, lookupCommand, statsCommand, updateCommand } from "./client-commands.js";
import { serveCommand } from "./serve-command.js";
import { UsageError } from "./settings.js";

const USAGE = `Usage:
  llmcache serve [--host HOST] [--port PORT] [--maxsize N] [--max-bytes SIZE]
                 [--default-ttl DURATION] [--policy fifo|lru]
                 [--namespace-limit NAME:maxsize=N,max-bytes=SIZE,default-ttl=DURATION]...
  llmcache lookup [--address HOST:PORT] [--namespace NS] [--bypass] PROMPT LLM_STRING
  llmcache update [--address HOST:PORT] [--namespace NS] [--ttl DURATION | --never-expires]
                  [--no-store] [--if-absent] PROMPT LLM_STRING [TEXT...] [--generations JSON]
  llmcache clear [--address HOST:PORT] [--namespace NS | --all-namespaces]
  llmcache stats [--address HOST:PORT]

serve listens on 127.0.0.1:50051 by default (--port 0 picks a free port). With
no limit given it holds any number of entries, for ever, evicting nothing.
SIZE is bytes with an optional unit (512MiB, 2GB); DURATION has a unit (500ms,
30s, 10m, 1h, 7d). Its settings can also come from LLMCACHE_HOST, LLMCACHE_PORT,
LLMCACHE_MAXSIZE, LLMCACHE_MAX_BYTES, LLMCACHE_DEFAULT_TTL, LLMCACHE_POLICY and
LLMCACHE_NAMESPACE_LIMITS (";" between namespaces); a flag wins.

lookup prints the generations as JSON, or null on a miss; update --if-absent
prints whether it stored (true or false); stats prints JSON. The client
commands reach LLMCACHE_ADDRESS when --address is not given, and wait
--timeout-ms (LLMCACHE_TIMEOUT_MS, default 5000) for each reply.`;

const commands: Record<string, (args: string[]) => Promise<void>> = {
  serve: serveCommand,
  lookup: lookupCommand,
  update: updateCommand,
  clear: clearCommand,
  stats: statsCommand,
};

async function main([command, ...args]: string[]): Promise<void> {
  if (command === undefined || command === "help" || command === "--help" || command === "-h") {
    console.log(USAGE);
    return;
  }
  const run = commands[command];
  if (!run) throw new UsageError(`unknown command "${command}" (commands: ${Object.keys(commands).join(", ")})`);
  await run(args);
}

main(process.argv.slice(2)).catch((error: unknown) => {
  // One line, without a stack: these are the program's answers, not crashes.
  const message = error instanceof Error ? error.message : String(error);
  if (error instanceof UsageError) {
    console.error(`llmcache: ${message} (see llmcache --help)`);
    process.exitCode = 2;
  } else {
    console.error(`llmcache: ${message}`);
    process.exitCode = 1;
  }
});
