import { checkTtl } from "./engine/limits.js";
import { checkString, describe } from "./json.js";

/** Options of one lookup. */
export interface LookupOptions {
  /** The namespace to look in. Default: the cache's (see its `namespace` option), else "". */
  namespace?: string;
  /** Skip the read: answer a miss whatever is stored, counted as a bypass rather than a miss. */
  bypass?: boolean;
}

/** Options of one update. */
export interface UpdateOptions {
  namespace?: string;
  /** How long the entry lives, in ms; Infinity: for ever. Default: the namespace's or the cache's default TTL. */
  ttlMs?: number;
  /** Store nothing (the update is accepted and discarded); updateIfAbsent then answers false. */
  noStore?: boolean;
}

export interface ClearOptions {
  namespace?: string;
  /** Clear every namespace. */
  allNamespaces?: boolean;
}

/** The options checked, with the namespace resolved. */
export interface CheckedLookupOptions {
  namespace: string;
  bypass: boolean;
}

export interface CheckedUpdateOptions {
  namespace: string;
  ttlMs: number | undefined;
  noStore: boolean;
}

export interface CheckedClearOptions {
  namespace: string;
  allNamespaces: boolean;
}

export function checkLookupOptions(options: LookupOptions | undefined, defaultNamespace: string): CheckedLookupOptions {
  const given = optionsObject(options);
  return { namespace: namespaceOf(given, defaultNamespace), bypass: flag(given.bypass, "bypass") };
}

export function checkUpdateOptions(options: UpdateOptions | undefined, defaultNamespace: string): CheckedUpdateOptions {
  const given = optionsObject(options);
  return { namespace: namespaceOf(given, defaultNamespace), ttlMs: checkTtl(given.ttlMs), noStore: flag(given.noStore, "noStore") };
}

export function checkClearOptions(options: ClearOptions | undefined, defaultNamespace: string): CheckedClearOptions {
  const given = optionsObject(options);
  return { namespace: namespaceOf(given, defaultNamespace), allNamespaces: flag(given.allNamespaces, "allNamespaces") };
}

export function checkNamespace(namespace: unknown): string {
  return checkString(namespace, "namespace");
}

function optionsObject<T extends object>(options: T | undefined): Partial<T> & Record<string, unknown> {
  if (options === undefined || options === null) return {};
  if (typeof options !== "object") throw new TypeError(`options must be an object, got ${describe(options)}`);
  return options as Partial<T> & Record<string, unknown>;
}

function namespaceOf(options: { namespace?: unknown }, defaultNamespace: string): string {
  return options.namespace === undefined ? defaultNamespace : checkNamespace(options.namespace);
}

function flag(value: unknown, name: string): boolean {
  if (value === undefined) return false;
  if (typeof value !== "boolean") throw new TypeError(`${name} must be a boolean, got ${describe(value)}`);
  return value;
}
