export type EvictionPolicy = "fifo" | "lru";

/** Limits that apply to the whole store, or to one namespace. */
export interface Limits {
  /** The most entries to hold. None: no limit. */
  maxsize?: number | null;
  /** The most accounted bytes to hold (see ENTRY_OVERHEAD_BYTES). None: no limit. */
  maxBytes?: number | null;
  /** How long an entry lives when its update does not say, in ms. None: for ever. */
  defaultTtlMs?: number | null;
}

/** Limits checked and with every "none" as undefined. */
export interface CheckedLimits {
  maxsize: number | undefined;
  maxBytes: number | undefined;
  defaultTtlMs: number | undefined;
}

/**
 * Added to each entry's key and value bytes when it is accounted: what an
 * entry costs the server beyond those bytes (a Map slot, string headers,
 * per-slot columns, heap slack). `npm run bench` measures it: 928 resident
 * bytes per entry for a 200 B prompt and 505 B of stored generations, so 223.
 */
export const ENTRY_OVERHEAD_BYTES = 224;

export function checkLimits(limits: Limits, where = ""): CheckedLimits {
  if (typeof limits !== "object" || limits === null) throw new TypeError(`${where}limits must be an object`);
  return {
    maxsize: checkMaxsize(limits.maxsize, `${where}maxsize`),
    maxBytes: checkPositiveInteger(limits.maxBytes, `${where}maxBytes`),
    defaultTtlMs: checkPositiveInteger(limits.defaultTtlMs, `${where}defaultTtlMs`),
  };
}

/**
 * Checks a maxsize setting: undefined or null means no limit, anything else
 * must be a whole number above 0. Returns the limit, or undefined.
 */
export function checkMaxsize(maxsize: unknown, name = "maxsize"): number | undefined {
  return checkPositiveInteger(maxsize, name);
}

export function checkPolicy(policy: unknown): EvictionPolicy {
  if (policy === undefined || policy === null) return "fifo";
  if (policy !== "fifo" && policy !== "lru") throw new TypeError(`policy must be "fifo" or "lru", got ${JSON.stringify(policy)}`);
  return policy;
}

/** A per-update TTL: undefined for the default, Infinity for never, else milliseconds above 0. */
export function checkTtl(ttlMs: unknown): number | undefined {
  if (ttlMs === undefined || ttlMs === Infinity) return ttlMs;
  return checkPositiveInteger(ttlMs, "ttlMs");
}

function checkPositiveInteger(value: unknown, name: string): number | undefined {
  if (value === undefined || value === null) return undefined;
  if (typeof value !== "number" || !Number.isSafeInteger(value)) {
    throw new TypeError(`${name} must be an integer, got ${typeof value === "string" ? `"${value}"` : String(value)}`);
  }
  if (value <= 0) throw new RangeError(`${name} must be greater than 0`);
  return value;
}
