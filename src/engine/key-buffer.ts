/** Keys up to this long are loaded into a buffer kept for the next; longer ones into one of their own. */
const KEPT_BYTES = 64 * 1024;
/** A string with a character above U+00FF, which no byte held as latin1 can be. */
const WIDE = /[^\u0000-\u00ff]/;

/**
 * One key's bytes at a time, for SegmentIndex: a key string (bytes held
 * one per character, see KeyBytes) is written into a buffer natively,
 * hashed four bytes at a time, and compared with the arena's bytes by
 * Buffer.compare. Hashing and comparing a 200-character prompt a character
 * at a time in JavaScript took 1.5-2 µs; this takes about a fifth.
 */
export class KeyBuffer {
  #kept: Buffer = Buffer.allocUnsafeSlow(256);
  #buffer: Buffer = this.#kept;
  #words: Int32Array = new Int32Array(this.#kept.buffer, 0, this.#kept.length >>> 2);
  #length = 0;

  /** How many bytes the key loaded last has. */
  get length(): number {
    return this.#length;
  }

  /** Makes `text` the loaded key; a TypeError if it is not bytes held as latin1. */
  load(text: string): void {
    if (WIDE.test(text)) throw new TypeError("a key of the segment index must be bytes held as latin1 (no character above U+00FF)");
    if (text.length > this.#kept.length) {
      const buffer = text.length <= KEPT_BYTES ? (this.#kept = Buffer.allocUnsafeSlow(2 ** Math.ceil(Math.log2(text.length)))) : Buffer.allocUnsafeSlow(text.length);
      this.#use(buffer);
    } else if (this.#buffer !== this.#kept) {
      this.#use(this.#kept);
    }
    this.#length = this.#buffer.write(text, 0, "latin1");
  }

  /** A 32-bit hash of the loaded key's bytes, murmur3's, from `seed`. */
  hash(seed: number): number {
    const words = this.#words;
    const blocks = this.#length >>> 2;
    let hash = seed | 0;
    for (let i = 0; i < blocks; i++) {
      hash ^= scramble(words[i]!);
      hash = (hash << 13) | (hash >>> 19);
      hash = (Math.imul(hash, 5) + 0xe6546b64) | 0;
    }
    let tail = 0;
    for (let i = this.#length - 1; i >= blocks << 2; i--) tail = (tail << 8) | this.#buffer[i]!;
    if ((this.#length & 3) !== 0) hash ^= scramble(tail);
    hash ^= this.#length;
    hash ^= hash >>> 16;
    hash = Math.imul(hash, 0x85ebca6b);
    hash ^= hash >>> 13;
    hash = Math.imul(hash, 0xc2b2ae35);
    return hash ^ (hash >>> 16);
  }

  /** Whether `buffer` holds the loaded key's bytes from `start` on. */
  isAt(buffer: Buffer, start: number): boolean {
    return buffer.compare(this.#buffer, 0, this.#length, start, start + this.#length) === 0;
  }

  #use(buffer: Buffer): void {
    this.#buffer = buffer;
    this.#words = new Int32Array(buffer.buffer, 0, buffer.length >>> 2);
  }
}

function scramble(word: number): number {
  let k = Math.imul(word, 0xcc9e2d51);
  k = (k << 15) | (k >>> 17);
  return Math.imul(k, 0x1b873593);
}
