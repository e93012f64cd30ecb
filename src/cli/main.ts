#!/usr/bin/env node
import {
  clearCommand,
  clearHelp,
  hashTokenCommand,
  hashTokenHelp,
  lookupCommand,
  lookupHelp,
  statsCommand,
  statsHelp,
  updateCommand,
  updateHelp,
} from "./client-commands.js";
import { serveCommand, serveHelp } from "./serve-command.js";
import { UsageError } from "./settings.js";
import { packageVersion } from "./version.js";

const USAGE = `Usage:
  llmcache serve [--host HOST] [--port PORT] [--store memory|redis://...|redis-cluster://...]
                 [--near-cache SIZE] [--maxsize N] [--max-bytes SIZE]
                 [--default-ttl DURATION] [--policy fifo|lru]
                 [--namespace-limit NAME:maxsize=N,max-bytes=SIZE,default-ttl=DURATION]...
                 [--tls-cert FILE --tls-key FILE [--tls-client-ca FILE]] [--auth-file FILE]
                 [--insecure] [--metrics-port PORT] [--log-level LEVEL] [--snapshot FILE]
                 [--snapshot-interval DURATION] [--shutdown-grace DURATION]
                 [--max-message-bytes SIZE] [--max-prompt-bytes SIZE]
                 [--max-llm-string-bytes SIZE] [--max-namespace-bytes SIZE]
                 [--max-generations N] [--max-reply-bytes SIZE] [--max-namespaces N]
                 [--max-concurrent-streams N] [--max-connections N]
                 [--handshake-timeout DURATION] [--idle-timeout DURATION]
                 [--max-unread-bytes SIZE] [--max-unread-bytes-total SIZE]
                 [--receive-window SIZE] [--max-lease-waiters N]
                 [--max-lease-waiters-per-pair N]
                 [--keepalive-time DURATION] [--keepalive-timeout DURATION]
  llmcache lookup [CONNECTION] [--namespace NS] [--bypass] PROMPT LLM_STRING
  llmcache update [CONNECTION] [--namespace NS] [--ttl DURATION | --never-expires]
                  [--no-store] [--if-absent] PROMPT LLM_STRING [TEXT...] [--generations JSON]
  llmcache clear [CONNECTION] [--namespace NS | --all-namespaces]
  llmcache stats [CONNECTION]
  llmcache hash-token < TOKEN_FILE
  llmcache COMMAND --help | llmcache help COMMAND
  llmcache --version

CONNECTION: [--address HOST:PORT] [--token TOKEN] [--tls] [--tls-ca FILE]
            [--tls-cert FILE --tls-key FILE] [--tls-server-name NAME] [--timeout-ms MS]

serve listens on 127.0.0.1:50051 by default (--port 0 picks a free port). With
no limit given it holds any number of entries, for ever, evicting nothing.
SIZE is bytes with an optional unit (512MiB, 2GB); DURATION has a unit (500ms,
30s, 10m, 1h, 7d). Every flag can also come from its environment variable,
LLMCACHE_ and the flag in capitals (--max-bytes: LLMCACHE_MAX_BYTES), and the
namespace limits from LLMCACHE_NAMESPACE_LIMITS (";" between them); a flag
wins. Beyond loopback, serve needs TLS and tokens or client certificates, or
--insecure. SIGHUP reloads the auth file.

lookup prints the generations as JSON, or null on a miss; update --if-absent
prints whether it stored (true or false); stats prints JSON. The client
commands reach LLMCACHE_ADDRESS when --address is not given (HOST:PORT, the
port is needed; [IPv6]:PORT; several replicas separated by commas), and wait --timeout-ms (LLMCACHE_TIMEOUT_MS,
default 5000) for each reply. update --generations takes a JSON list of
generations; generation_info, as Python writes it, is read as generationInfo.

An invalid argument or setting exits 2; a failure to listen or to reach the
server exits 1. llmcache COMMAND --help lists the command's flags and defaults.`;

const commands: Record<string, { run: (args: string[]) => Promise<void>; help: string }> = {
  serve: { run: serveCommand, help: serveHelp },
  lookup: { run: lookupCommand, help: lookupHelp },
  update: { run: updateCommand, help: updateHelp },
  clear: { run: clearCommand, help: clearHelp },
  stats: { run: statsCommand, help: statsHelp },
  "hash-token": { run: hashTokenCommand, help: hashTokenHelp },
};

async function main([command, ...args]: string[]): Promise<void> {
  if (command === undefined || command === "--help" || command === "-h" || (command === "help" && args.length === 0)) {
    console.log(USAGE);
    return;
  }
  if (command === "--version" || command === "-v" || command === "version") {
    if (args.length > 0) throw new UsageError(`${command} takes no arguments, got ${args.length}`);
    console.log(packageVersion());
    return;
  }
  const [name, rest] = command === "help" ? [args[0]!, ["--help"]] : [command, args];
  const found = commands[name];
  if (!found) throw new UsageError(`unknown command "${name}" (commands: ${Object.keys(commands).join(", ")})`);
  if (asksForHelp(rest)) console.log(found.help);
  else await found.run(rest);
}

/** --help or -h among the flags: after "--", it is a PROMPT or a TEXT. */
function asksForHelp(args: string[]): boolean {
  const end = args.indexOf("--");
  return (end < 0 ? args : args.slice(0, end)).some((arg) => arg === "--help" || arg === "-h");
}

/**
 * A message on one line. grpc-js ends some UNAVAILABLE messages with
 * "Resolution note: " and what name resolution said, often nothing, and an
 * OpenSSL error can hold a line break.
 */
function oneLine(message: string): string {
  return message
    .replace(/\.?\s*Resolution note:[\s\S]*$/, "")
    .replace(/\s*\n\s*/g, " ")
    .trim();
}

main(process.argv.slice(2)).catch((error: unknown) => {
  // One line, without a stack: these are the program's answers, not crashes.
  const message = oneLine(error instanceof Error ? error.message : String(error));
  if (error instanceof UsageError) {
    console.error(`llmcache: ${message} (see llmcache --help)`);
    process.exitCode = 2;
  } else {
    console.error(`llmcache: ${message}`);
    process.exitCode = 1;
  }
});
