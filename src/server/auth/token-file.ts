import { createHash, timingSafeEqual } from "node:crypto";
import { readFileSync } from "node:fs";
import { parse as parseYaml } from "yaml";
import { principalOf, type Principal, type Rights } from "./principal.js";

/** A token as the auth file lists it: the SHA-256 of the token, never the token itself. */
interface TokenEntry {
  sha256: Buffer;
  principal: Principal;
}

/** Thrown for an auth file that cannot be used; the message says where and why. */
export class AuthFileError extends Error {
  override readonly name = "AuthFileError";
}

/**
 * The tokens of an auth file (YAML or JSON):
 *
 *   tokens:
 *     - name: team-a
 *       sha256: 9f86d081884c7d65...   # `llmcache hash-token` prints it
 *       read: [team-a, shared]        # namespaces it may look up in; "*" is any, "" the default
 *       write: [team-a]               # namespaces it may update (and read)
 *       clear: true                   # may clear the namespaces it may write
 *       stats: false                  # may read the statistics of every namespace
 */
export class TokenFile {
  readonly #entries: readonly TokenEntry[];

  private constructor(entries: TokenEntry[]) {
    this.#entries = entries;
  }

  static load(path: string): TokenFile {
    let text: string;
    try {
      text = readFileSync(path, "utf8");
    } catch (error) {
      throw new AuthFileError(`cannot read the auth file ${path}: ${(error as Error).message}`);
    }
    return TokenFile.parse(text, path);
  }

  static parse(text: string, source: string): TokenFile {
    let document: unknown;
    try {
      document = parseYaml(text); // JSON is YAML too
    } catch (error) {
      throw new AuthFileError(`${source} is not YAML or JSON: ${(error as Error).message.split("\n")[0]}`);
    }
    const tokens = (document as { tokens?: unknown } | null)?.tokens;
    if (!Array.isArray(tokens) || tokens.length === 0) throw new AuthFileError(`${source} must have a non-empty list "tokens"`);
    const seen = new Set<string>();
    const names = new Set<string>();
    const entries = tokens.map((token, i) => {
      const entry = tokenEntry(token, `${source}: tokens[${i}]`);
      const hex = entry.sha256.toString("hex");
      if (seen.has(hex)) throw new AuthFileError(`${source}: tokens[${i}] has the same sha256 as an earlier token`);
      // Logs and errors name a token by its name: two alike could not be told apart.
      if (names.has(entry.principal.name)) throw new AuthFileError(`${source}: tokens[${i}] has the same name as an earlier token, "${entry.principal.name}"`);
      seen.add(hex);
      names.add(entry.principal.name);
      return entry;
    });
    return new TokenFile(entries);
  }

  get size(): number {
    return this.#entries.length;
  }

  /**
   * The principal of a presented token, or undefined for an unknown one. The
   * token is hashed and compared with every entry in constant time, so the
   * time taken says nothing about how close a guess came.
   */
  authenticate(token: string): Principal | undefined {
    const presented = sha256(token);
    let found: Principal | undefined;
    for (const entry of this.#entries) {
      if (timingSafeEqual(presented, entry.sha256)) found = entry.principal;
    }
    return found;
  }
}

export function sha256(token: string): Buffer {
  return createHash("sha256").update(token, "utf8").digest();
}

function tokenEntry(value: unknown, where: string): TokenEntry {
  if (typeof value !== "object" || value === null) throw new AuthFileError(`${where} must be a mapping`);
  // A misspelt right ("raed") would otherwise be dropped, and the token started without it.
  const unknown = Object.keys(value).filter((key) => !TOKEN_FIELDS.includes(key));
  if (unknown.length > 0) throw new AuthFileError(`${where} has ${unknown.map((key) => JSON.stringify(key)).join(", ")}, not one of ${TOKEN_FIELDS.join(", ")}`);
  const { name, sha256: hash, read = [], write = [], clear = false, stats = false } = value as Record<string, unknown>;
  if (typeof name !== "string" || name.length === 0) throw new AuthFileError(`${where}.name must be a non-empty string`);
  if (typeof hash !== "string" || !/^[0-9a-f]{64}$/i.test(hash)) {
    throw new AuthFileError(`${where}.sha256 must be 64 hex digits (the SHA-256 of the token, see llmcache hash-token)`);
  }
  const rights: Rights = {
    name,
    read: namespaceList(read, `${where}.read`),
    write: namespaceList(write, `${where}.write`),
    clear: booleanOf(clear, `${where}.clear`),
    stats: booleanOf(stats, `${where}.stats`),
  };
  return { sha256: Buffer.from(hash, "hex"), principal: principalOf(rights) };
}

const TOKEN_FIELDS = ["name", "sha256", "read", "write", "clear", "stats"];

function namespaceList(value: unknown, where: string): string[] {
  if (!Array.isArray(value) || !value.every((name) => typeof name === "string")) {
    throw new AuthFileError(`${where} must be a list of namespaces ("*" for any, "" for the default)`);
  }
  return value;
}

function booleanOf(value: unknown, where: string): boolean {
  if (typeof value !== "boolean") throw new AuthFileError(`${where} must be true or false`);
  return value;
}
