/**
 * How the server holds names and keys: the UTF-8 bytes a client sent, read
 * as latin1 (one character per byte), so that equal bytes make equal
 * strings and nothing is decoded on the hot path. Text from anywhere else
 * (an auth file, a flag) must be turned into the same form before it is
 * compared with one: "é" is the two characters "\u00c3\u00a9" here.
 */
export type KeyBytes = string & { readonly __keyBytes: unique symbol };

/** Text as the server holds it. */
export function asKeyBytes(text: string): KeyBytes {
  return Buffer.from(text, "utf8").toString("latin1") as KeyBytes;
}

/** Held bytes back as text, for messages and listings. */
export function fromKeyBytes(bytes: string): string {
  return Buffer.from(bytes, "latin1").toString("utf8");
}
