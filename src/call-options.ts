import { MAX_LEASE_MS } from "./engine/leases.js";
import { checkTtl } from "./engine/limits.js";
import type { Generation } from "./generation.js";
import { checkString, describe } from "./json.js";

/** Options of one lookup. */
export interface LookupOptions {
  /** The namespace to look in. Default: the cache's (see its `namespace` option), else "". */
  namespace?: string;
  /** Skip the read: answer a miss whatever is stored, counted as a bypass rather than a miss. */
  bypass?: boolean;
  /**
   * Single flight: on a miss, take the pair's lease, or wait for whoever
   * holds it to fill the pair. The lookup then answers a LeasedLookup.
   * Not with bypass.
   */
  lease?: LeaseOptions;
}

/** What a lookup asks of single flight (see LeasedLookup). */
export interface LeaseOptions {
  /** How long a lease granted to this caller lasts, in ms: the time it needs to compute and store the answer. 1 to 3,600,000. */
  leaseMs: number;
  /**
   * How long to wait, in ms, when another caller holds the lease, for its
   * fill. Default 0: a miss at once. At most 3,600,000. The call's deadline
   * is this plus its usual timeout. A synchronous in-process lookup never
   * waits (nothing could fill the pair while it blocks).
   */
  waitMs?: number;
}

/** A granted lease: fill the pair with `token` (UpdateOptions.leaseToken), or release it. */
export interface Lease {
  token: string;
  leaseMs: number;
}

/**
 * What a lookup with a lease answers: a hit (generations, no lease); a miss
 * with a lease (this caller computes and fills); or a miss with neither
 * (another holds the lease and the wait ran out: compute on your own).
 */
export interface LeasedLookup {
  generations: Generation[] | null;
  lease: Lease | null;
}

/** Options of one update. */
export interface UpdateOptions {
  namespace?: string;
  /** How long the entry lives, in ms; Infinity: for ever. Default: the namespace's or the cache's default TTL. */
  ttlMs?: number;
  /** Store nothing (the update is accepted and discarded); updateIfAbsent then answers false. */
  noStore?: boolean;
  /**
   * The token of the lease this update fills (see LeaseOptions). A stale
   * token (the lease ended) stores only into a pair with no entry and no
   * other lease; otherwise nothing is stored (updateIfAbsent answers false).
   */
  leaseToken?: string;
}

export interface ClearOptions {
  namespace?: string;
  /** Clear every namespace; refused together with `namespace`. */
  allNamespaces?: boolean;
}

/** The options checked, with the namespace resolved. */
export interface CheckedLookupOptions {
  namespace: string;
  bypass: boolean;
  lease: Required<LeaseOptions> | undefined;
}

export interface CheckedUpdateOptions {
  namespace: string;
  ttlMs: number | undefined;
  noStore: boolean;
  leaseToken: string | undefined;
}

export interface CheckedClearOptions {
  namespace: string;
  allNamespaces: boolean;
}

/**
 * Options of a call that every cache takes besides its own, so that code
 * may use either: a deadline (which an in-process cache, answering at
 * once, has no use for) and a signal that stops the call.
 */
const CALL_OPTIONS = ["timeoutMs", "signal"] as const;
const LOOKUP_OPTIONS = ["namespace", "bypass", "lease", ...CALL_OPTIONS];
const UPDATE_OPTIONS = ["namespace", "ttlMs", "noStore", "leaseToken", ...CALL_OPTIONS];
const CLEAR_OPTIONS = ["namespace", "allNamespaces", ...CALL_OPTIONS];
const LEASE_OPTIONS = ["leaseMs", "waitMs"];
const GET_OR_COMPUTE_OPTIONS = ["namespace", "ttlMs", "leaseMs", "waitMs", ...CALL_OPTIONS];

/** Refuses getOrCompute's options that it does not know (see optionsObject). */
export function checkGetOrComputeOptions(options: unknown): void {
  optionsObject(options as object | undefined, GET_OR_COMPUTE_OPTIONS);
}

export function checkLookupOptions(options: LookupOptions | undefined, defaultNamespace: string): CheckedLookupOptions {
  const given = optionsObject(options, LOOKUP_OPTIONS);
  const bypass = flag(given.bypass, "bypass");
  const lease = given.lease === undefined ? undefined : checkLeaseOptions(given.lease);
  if (lease && bypass) throw new TypeError("lease and bypass together: a lookup that bypasses the cache never takes or waits for a lease");
  return { namespace: namespaceOf(given, defaultNamespace), bypass, lease };
}

export function checkUpdateOptions(options: UpdateOptions | undefined, defaultNamespace: string): CheckedUpdateOptions {
  const given = optionsObject(options, UPDATE_OPTIONS);
  const leaseToken = given.leaseToken === undefined ? undefined : checkString(given.leaseToken, "leaseToken");
  if (leaseToken === "") throw new TypeError("leaseToken must not be empty");
  return {
    namespace: namespaceOf(given, defaultNamespace),
    ttlMs: checkTtl(given.ttlMs),
    noStore: flag(given.noStore, "noStore"),
    leaseToken,
  };
}

export function checkLeaseOptions(lease: unknown): Required<LeaseOptions> {
  if (lease === null || typeof lease !== "object") throw new TypeError(`lease must be an object { leaseMs, waitMs? }, got ${describe(lease)}`);
  const { leaseMs, waitMs = 0 } = optionsObject(lease as Partial<LeaseOptions>, LEASE_OPTIONS);
  return { leaseMs: leaseTime(leaseMs, "lease.leaseMs", 1), waitMs: leaseTime(waitMs, "lease.waitMs", 0) };
}

function leaseTime(value: unknown, name: string, least: number): number {
  if (typeof value !== "number" || !Number.isInteger(value) || value < least || value > MAX_LEASE_MS) {
    throw new RangeError(`${name} must be an integer number of milliseconds from ${least} to ${MAX_LEASE_MS}, got ${describe(value)}`);
  }
  return value;
}

export function checkClearOptions(options: ClearOptions | undefined, defaultNamespace: string): CheckedClearOptions {
  const given = optionsObject(options, CLEAR_OPTIONS);
  const allNamespaces = flag(given.allNamespaces, "allNamespaces");
  // The server would clear every namespace, whatever the one named: a call
  // that names one must not clear the others.
  if (allNamespaces && given.namespace !== undefined) throw new TypeError("give either namespace or allNamespaces, not both");
  return { namespace: namespaceOf(given, defaultNamespace), allNamespaces };
}

export function checkNamespace(namespace: unknown): string {
  return checkString(namespace, "namespace");
}

/** The options, refused unless an object of `known` options: a misspelt one would otherwise be dropped silently, leaving its default in force. */
function optionsObject<T extends object>(options: T | undefined, known: readonly string[]): Partial<T> & Record<string, unknown> {
  if (options === undefined || options === null) return {};
  if (typeof options !== "object") throw new TypeError(`options must be an object, got ${describe(options)}`);
  refuseUnknownOptions(options, known);
  return options as Partial<T> & Record<string, unknown>;
}

/** Throws a TypeError naming the members of `options` that are not `known`, and the known ones. */
export function refuseUnknownOptions(options: object, known: readonly string[]): void {
  const unknown = Object.keys(options).filter((key) => !known.includes(key));
  if (unknown.length > 0) {
    throw new TypeError(`unknown option${unknown.length > 1 ? "s" : ""} ${unknown.join(", ")} (the options are ${known.join(", ")})`);
  }
}

function namespaceOf(options: { namespace?: unknown }, defaultNamespace: string): string {
  return options.namespace === undefined ? defaultNamespace : checkNamespace(options.namespace);
}

function flag(value: unknown, name: string): boolean {
  if (value === undefined) return false;
  if (typeof value !== "boolean") throw new TypeError(`${name} must be a boolean, got ${describe(value)}`);
  return value;
}
