import type { KeyBytes } from "../key-bytes.js";

/** The key of a lookup, update or lease release, as the server holds it. */
export interface WireKey {
  namespace: KeyBytes;
  prompt: KeyBytes;
  llmString: KeyBytes;
}

/**
 * What a server checks of each request while the codecs read it, beyond
 * its encoding: its limits (server/request-limits.ts). A check refuses with
 * a LimitExceededError, which a batch or a stream prefixes with the item it
 * was. The generations' bytes are checked only once their number passed.
 */
export interface RequestChecks {
  key(key: WireKey): void;
  generations(count: number): void;
}
