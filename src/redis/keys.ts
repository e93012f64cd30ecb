import { hash } from "node:crypto";

/**
 * Where llmcache's data lives in Redis. Every key starts "llmc:", then a
 * kind ("e" an entry, "l" its lease), the namespace's bytes in hex (so that
 * a SCAN pattern can name one namespace, whatever bytes its name holds),
 * and the pair's digest in braces: a Cluster hashes only the part in
 * braces, so an entry and its lease share a slot (one script may touch
 * both) while the pairs spread over every slot.
 *
 * The pair is its SHA-256, not its bytes: keys stay short whatever the
 * prompt's length, and two pairs meet only if their digests collide.
 */
export const KEY_PREFIX = "llmc:";
/** Every entry's key starts so (and no lease's): what the near cache hears changes of. */
export const ENTRY_PREFIX = `${KEY_PREFIX}e:`;
/** Where every replica publishes that a lease ended (its lease key), or "*" when many did (a clear). */
export const LEASES_CHANNEL = "llmc:leases";
/** The hash of counters every replica adds to (see SharedCounters). */
export const STATS_KEY = "llmc:stats";
export const ALL_LEASES = "*";

/** A pair's keys: ASCII only (a prefix, hex and base64url), so the same string to Redis, to the near cache and to lease waits. */
export interface PairKeys {
  entry: string;
  lease: string;
}

/** The entry's and the lease's keys of a pair; the strings given hold one byte per character (KeyBytes). */
export function pairKeys(namespace: string, prompt: string, llmString: string): PairKeys {
  // One buffer hashed in one call: a Hash object fed three times cost twice
  // as much, and was the largest part of a replica's CPU per lookup (6.5% of
  // its samples under 64 callers).
  const digest = hash("sha256", Buffer.from(`${prompt.length}:${prompt}${llmString}`, "latin1"), "base64url");
  const tail = `${namespaceHex(namespace)}:{${digest}}`;
  return { entry: `${ENTRY_PREFIX}${tail}`, lease: `${KEY_PREFIX}l:${tail}` };
}

/** A SCAN pattern for every entry and lease of a namespace, or of all. */
export function scanPattern(namespace?: string): string {
  return namespace === undefined ? `${KEY_PREFIX}[el]:*` : `${KEY_PREFIX}[el]:${namespaceHex(namespace)}:*`;
}

/** The namespace an entry's key (see pairKeys) belongs to. */
export function entryNamespace(entryKey: string): string {
  return namespaceFromHex(entryKey.slice(ENTRY_PREFIX.length, entryKey.indexOf(":", ENTRY_PREFIX.length)));
}

export function namespaceHex(namespace: string): string {
  return Buffer.from(namespace, "latin1").toString("hex");
}

export function namespaceFromHex(hex: string): string {
  return Buffer.from(hex, "hex").toString("latin1");
}
