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
  return pino({ level, base: { service: "llmcache" } }, pino.destination(2));
}

export function checkLogLevel(level: unknown): LevelWithSilent {
  if (!LOG_LEVELS.includes(level as LevelWithSilent)) {
    throw new TypeError(`log level must be one of ${LOG_LEVELS.join(", ")}, got ${JSON.stringify(level)}`);
  }
  return level as LevelWithSilent;
}
