import type { Metadata } from "@grpc/grpc-js";
import { CacheError } from "../../rpc/errors.js";
import { ANYONE, type Principal } from "./principal.js";
import { TokenFile } from "./token-file.js";

const BEARER = /^Bearer\s+(\S+)\s*$/i;

/**
 * Turns a call's `authorization: Bearer <token>` metadata into its
 * principal, from an auth file that can be reloaded without a restart. With
 * no auth file every call has every right.
 */
export class Authenticator {
  readonly path: string | undefined;
  #tokens: TokenFile | undefined;
  #version = 0;
  /** Told after every reload that took. */
  readonly #reloadListeners = new Set<() => void>();

  constructor(path: string | undefined) {
    this.path = path;
    this.#tokens = path === undefined ? undefined : TokenFile.load(path);
  }

  get enabled(): boolean {
    return this.#tokens !== undefined;
  }

  /** Changes at every reload: a principal found before a change may have lost its rights since. */
  get version(): number {
    return this.#version;
  }

  /** Reads the auth file again. If it cannot be used, the tokens in force stay and this throws. */
  reload(): number {
    if (this.path === undefined) return 0;
    const tokens = TokenFile.load(this.path);
    this.#tokens = tokens;
    this.#version++;
    for (const listener of this.#reloadListeners) listener();
    return tokens.size;
  }

  /** `listener` runs after every reload that took; returns what stops it. */
  onReload(listener: () => void): () => void {
    this.#reloadListeners.add(listener);
    return () => this.#reloadListeners.delete(listener);
  }

  /** The caller's principal; throws UNAUTHENTICATED for a missing, malformed or unknown token. */
  authenticate(metadata: Metadata): Principal {
    if (!this.#tokens) return ANYONE;
    const values = metadata.get("authorization");
    if (values.length === 0) throw new CacheError("UNAUTHENTICATED", "missing authorization metadata: send \"authorization: Bearer <token>\"");
    const match = BEARER.exec(String(values[0]));
    if (!match || values.length > 1) throw new CacheError("UNAUTHENTICATED", "malformed authorization metadata: expected one \"Bearer <token>\"");
    const principal = this.#tokens.authenticate(match[1]!);
    if (!principal) throw new CacheError("UNAUTHENTICATED", "unknown token");
    return principal;
  }
}
