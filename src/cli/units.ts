const BYTE_UNITS: Record<string, number> = {
  b: 1,
  kb: 1e3,
  kib: 2 ** 10,
  mb: 1e6,
  mib: 2 ** 20,
  gb: 1e9,
  gib: 2 ** 30,
  tb: 1e12,
  tib: 2 ** 40,
};

const DURATION_UNITS: Record<string, number> = { ms: 1, s: 1e3, m: 60e3, h: 3600e3, d: 86400e3 };

/** "512MiB", "1.5GB", "4096" (bytes): a whole number of bytes above 0. */
export function parseBytes(text: string): number {
  const match = /^(\d+(?:\.\d+)?)\s*([a-z]*)$/i.exec(text.trim());
  const unit = match?.[2]?.toLowerCase() || "b";
  const scale = BYTE_UNITS[unit];
  if (!match || scale === undefined) {
    throw new RangeError("must be a size such as 4096, 64KiB, 512MiB or 2GB (B, KB, KiB, MB, MiB, GB, GiB, TB, TiB)");
  }
  const bytes = Math.floor(Number(match[1]) * scale);
  if (bytes > Number.MAX_SAFE_INTEGER) throw new RangeError("must be less than 8 PiB (2^53 bytes)");
  if (bytes <= 0) throw new RangeError("must be at least 1 byte");
  return bytes;
}

/** "500ms", "30s", "10m", "1.5h", "7d": a whole number of milliseconds above 0. A bare number is refused: seconds or milliseconds? */
export function parseDuration(text: string): number {
  const match = /^(\d+(?:\.\d+)?)\s*([a-z]*)$/i.exec(text.trim());
  const scale = DURATION_UNITS[match?.[2]?.toLowerCase() ?? ""];
  if (!match || scale === undefined) throw new RangeError("must be a duration with its unit, such as 500ms, 30s, 10m, 1h or 7d");
  const ms = Math.round(Number(match[1]) * scale);
  if (ms > Number.MAX_SAFE_INTEGER) throw new RangeError("must be less than 2^53 ms (285,616 years)");
  if (ms <= 0) throw new RangeError("must be at least 1ms");
  return ms;
}

/**
 * The longest timer Node.js keeps, 2^31 - 1 ms (24.8 days): it fires a
 * longer one after 1 ms instead, with only a warning.
 */
export const MAX_TIMER_MS = 2 ** 31 - 1;

/** As parseDuration, for a duration the process waits for with a timer: at most MAX_TIMER_MS. */
export function parseTimerDuration(text: string): number {
  const ms = parseDuration(text);
  if (ms > MAX_TIMER_MS) throw new RangeError("must be at most 2147483647ms (24.8 days, the longest timer Node.js keeps)");
  return ms;
}
