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
 * per-slot columns, and the spare room of columns and maps that grow by
 * doubling). The reliability suite measures the heap a server gains per
 * entry after a full collection. Read at once after one collection, as when
 * this was set, it gave 905 bytes for a 200 B prompt and 407 B of stored
 * generations (287 beyond them), 252 for a tiny entry (234 beyond); read
 * after a second collection, which waits for V8 to free dead Buffers, 821
 * and 121. So this counts 80 to 180 bytes more than an entry costs.
 */
export const ENTRY_OVERHEAD_BYTES = 288;

/**
 * Added once for each distinct llm_string of a namespace (the group that
 * holds it once for all its entries: an object, a Map and its slot in the
 * namespace). Measured on the heap after a full collection: entries that
 * each have an llm_string of their own cost about 260 bytes more than
 * entries that share one.
 */
export const GROUP_OVERHEAD_BYTES = 320;

/**
 * Added, with the name's bytes, for each namespace that holds entries: its
 * record (counters, list ends, the Map of its groups). Measured on the heap:
 * about 420 bytes a namespace beyond its entries and groups.
 */
export const NAMESPACE_OVERHEAD_BYTES = 512;

/** Most namespaces that may hold entries at once, unless the store is told otherwise. */
export const DEFAULT_MAX_NAMESPACES = 10_000;

/**
 * How many records of namespaces that hold no entries and have no limits of
 * their own are kept (their statistics, for a while): the least recently
 * used go first. They are what a lookup in a namespace never written makes,
 * so a caller naming new namespaces cannot grow the store without bound.
 */
export const IDLE_NAMESPACES_KEPT = 1_000;

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

/** A limit on how many namespaces may hold entries: a whole number above 0, or undefined for the default. */
export function checkMaxNamespaces(maxNamespaces: unknown): number {
  return checkPositiveInteger(maxNamespaces, "maxNamespaces") ?? DEFAULT_MAX_NAMESPACES;
}
