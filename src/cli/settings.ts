import { readFileSync } from "node:fs";
import { isIPv6 } from "node:net";

/** A mistake in how the program was called: reported in one line, exit code 2. */
export class UsageError extends Error {
  override readonly name = "UsageError";
}

/** Runs a flag parser (node's parseArgs), turning its errors into UsageErrors. */
export function parsingFlags<T>(parse: () => T): T {
  try {
    return parse();
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    // parseArgs takes "--maxsize -1" for a flag without its value followed by
    // another flag, and says so in three sentences that never name the rule.
    const ambiguous = /^Option '(--[\w-]+)' argument is ambiguous/.exec(message);
    if (ambiguous) {
      const flag = ambiguous[1]!;
      throw new UsageError(`${flag} is followed by a value that starts with "-", which is taken for a flag: write ${flag}=VALUE`);
    }
    throw new UsageError(message);
  }
}

/**
 * A setting's raw value and where it came from: the flag when given, else
 * the environment variable when set and not empty.
 */
export interface Setting {
  raw: string;
  source: string;
}

export function setting(flag: string, flagValue: string | undefined, envName = envNameOf(flag)): Setting | undefined {
  if (flagValue !== undefined) return { raw: flagValue, source: `--${flag}` };
  const fromEnv = process.env[envName];
  return fromEnv ? { raw: fromEnv, source: envName } : undefined;
}

/** The environment variable of a flag: --max-bytes is LLMCACHE_MAX_BYTES. */
function envNameOf(flag: string): string {
  return `LLMCACHE_${flag.toUpperCase().replace(/-/g, "_")}`;
}

/**
 * A boolean flag's environment variable (LLMCACHE_INSECURE, LLMCACHE_TLS):
 * 1, true or yes turn it on; 0, false, no or empty leave it off. Anything
 * else is refused, rather than read as off: a typo must not turn TLS or a
 * safety check off unseen.
 */
export function envFlag(name: string): boolean {
  const raw = (process.env[name] ?? "").trim();
  if (/^(1|true|yes)$/i.test(raw)) return true;
  if (/^(0|false|no|)$/i.test(raw)) return false;
  throw new UsageError(`invalid ${name} "${raw}": must be 1, true or yes to turn it on, or 0, false, no or empty`);
}

/** Reads the file a setting names; a file that cannot be read is a UsageError naming the setting. */
export function readSettingFile(value: Setting): Buffer {
  try {
    return readFileSync(value.raw);
  } catch (error) {
    throw new UsageError(`cannot read ${value.source} ${value.raw}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`);
  }
}

/** Reads an integer setting; `check` may throw to refuse a value, with a message naming the rule. */
export function integerSetting(value: Setting, check: (n: number) => number | undefined = (n) => n): number {
  return parsedSetting(value, (raw) => {
    const n = /^[+-]?\d+$/.test(raw.trim()) ? Number(raw) : Number.NaN;
    if (Number.isNaN(n)) throw new Error("must be an integer");
    if (n > Number.MAX_SAFE_INTEGER) throw new Error(`must be at most ${Number.MAX_SAFE_INTEGER}`);
    if (n < -Number.MAX_SAFE_INTEGER) throw new Error(`must be at least ${-Number.MAX_SAFE_INTEGER}`);
    return check(n) ?? n;
  });
}

/** Reads a setting with a parser that throws, with a message naming the rule, for a value it refuses. */
export function parsedSetting<T>(value: Setting, parse: (raw: string) => T): T {
  try {
    return parse(value.raw);
  } catch (error) {
    throw new UsageError(`invalid ${value.source} "${value.raw}": ${error instanceof Error ? error.message : error}`);
  }
}

export function checkPort(port: number): number {
  if (port < 0 || port > 65535) throw new RangeError("a port is between 0 and 65535");
  return port;
}

/**
 * The servers the client commands reach: one address, or several replicas
 * of one cache separated by commas (see CacheClientOptions.address), each
 * checked as checkAddress checks one.
 */
export function checkAddresses(addresses: string): string {
  for (const address of addresses.split(",")) checkAddress(address);
  return addresses;
}

/**
 * A server's address for the client commands: HOST:PORT, [IPv6]:PORT, or a
 * grpc-js unix: socket target. Left without a port, grpc-js would dial 443,
 * where no cache server is, and say only that the connection failed.
 */
function checkAddress(address: string): string {
  if (address === "") throw new RangeError("an address is needed between the commas, such as 127.0.0.1:50051");
  if (address.startsWith("unix:")) return address;
  if (isIPv6(address)) throw new RangeError(`an IPv6 address goes in brackets, such as [${address}]:50051`);
  const colon = address.endsWith("]") ? -1 : address.lastIndexOf(":");
  const host = colon < 0 ? address : address.slice(0, colon);
  const port = colon < 0 ? "" : address.slice(colon + 1);
  if (port === "") throw new RangeError(`a port is needed, such as ${host || "127.0.0.1"}:50051`);
  if (!/^\d+$/.test(port) || Number(port) < 1 || Number(port) > 65535) throw new RangeError("a port is between 1 and 65535");
  return address;
}
