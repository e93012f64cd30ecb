import { pino, type Logger, type LevelWithSilent } from "pino";

export type { Logger };

export const LOG_LEVELS: readonly LevelWithSilent[] = ["fatal", "error", "warn", "info", "debug", "trace", "silent"];

/**
 * JSON lines on stderr (stdout carries the one "listening on" line others
 * wait for). What is logged is the server's own doing (starts, stops,
 * reloads, snapshots, failures) and never a prompt, an llm_string or a
 * generation: the server never passes them to the logger.
 */
export function createLogger(level: LevelWithSilent = "info"): Logger {
  // process.stderr, not pino.destination(2): at exit, pino flushes that
  // one synchronously, retrying a failed write for ever, so a server whose
  // log reader had gone (EPIPE) never exited. Writes to a pipe are
  // synchronous in Node all the same.
  dropLinesNoOneReads(process.stderr);
  return pino({ level, base: { service: "llmcache" } }, process.stderr);
}

/**
 * A line for stdout or stderr that cannot be written (its reader has gone)
 * is lost, and the cache goes on: without a listener, the stream's error
 * would kill the process.
 */
export function dropLinesNoOneReads(stream: NodeJS.WriteStream): void {
  if (!stream.listeners("error").includes(dropLine)) stream.on("error", dropLine);
}

function dropLine(): void {}

export function checkLogLevel(level: unknown): LevelWithSilent {
  if (!LOG_LEVELS.includes(level as LevelWithSilent)) {
    throw new TypeError(`log level must be one of ${LOG_LEVELS.join(", ")}, got ${JSON.stringify(level)}`);
  }
  return level as LevelWithSilent;
}
