import type { WireResult } from "../rpc/codec/stream.js";
import type { StreamScope } from "./method-handlers.js";

/**
 * The changes a watching stream is to be told of, gathered over a turn: a
 * burst (a Cluster's words parsed from one read, a clear's keys) is one
 * message, not one each, in Invalidations of at most
 * MAX_INVALIDATION_KEY_BYTES of keys. While the client does not keep up,
 * nothing is written and the changes gather: past MAX_PENDING_KEY_BYTES
 * they become one word that everything changed. So a client that reads
 * slowly, or not at all, costs the replica a bounded amount of memory and
 * is never cut off; it is told to drop everything instead.
 */
export class ChangesToTell {
  readonly id: number;
  readonly #write: (results: WireResult[]) => void;
  readonly #stream: Pick<StreamScope, "writable" | "onceWritable">;
  readonly #keys = new Set<string>();
  #keyBytes = 0;
  #all = false;
  #queued = false;
  #waitingToWrite = false;

  constructor(id: number, write: (results: WireResult[]) => void, stream: Pick<StreamScope, "writable" | "onceWritable">) {
    this.id = id;
    this.#write = write;
    this.#stream = stream;
  }

  /** Whether changes are heard of and not yet written. */
  get owes(): boolean {
    return this.#all || this.#keys.size > 0;
  }

  /** A changed key, or undefined for everything. */
  add(key: string | undefined): void {
    if (key === undefined) this.#all = true;
    else if (!this.#all && !this.#keys.has(key)) {
      this.#keys.add(key);
      this.#keyBytes += key.length;
      if (this.#keyBytes > MAX_PENDING_KEY_BYTES) this.#all = true;
    }
    if (this.#all) this.#dropKeys();
    if (this.#queued || this.#waitingToWrite) return;
    this.#queued = true;
    process.nextTick(() => this.#flush());
  }

  #flush(): void {
    this.#queued = false;
    if (!this.#stream.writable()) {
      if (!this.#waitingToWrite) {
        this.#waitingToWrite = true;
        this.#stream.onceWritable(() => {
          this.#waitingToWrite = false;
          this.#flush();
        });
      }
      return;
    }
    const invalidation = (keys: string[], all: boolean): WireResult => ({ id: this.id, kind: "invalidation", keys, all });
    const results = this.#all ? [invalidation([], true)] : [];
    let keys: string[] = [];
    let bytes = 0;
    for (const key of this.#keys) {
      if (bytes + key.length > MAX_INVALIDATION_KEY_BYTES && keys.length > 0) {
        results.push(invalidation(keys, false));
        [keys, bytes] = [[], 0];
      }
      keys.push(key);
      bytes += key.length;
    }
    if (keys.length > 0) results.push(invalidation(keys, false));
    this.#all = false;
    this.#dropKeys();
    if (results.length > 0) this.#write(results);
  }

  /** Everything changed: no key need be told. */
  #dropKeys(): void {
    this.#keys.clear();
    this.#keyBytes = 0;
  }
}

/**
 * Keeps each Invalidation well under a client's 4 MiB receive limit, and
 * small: grpc-js queues up to 16 messages for a client that has stopped
 * reading before the stream says it is full.
 */
const MAX_INVALIDATION_KEY_BYTES = 256 * 1024;
/** The keys a stream whose client does not keep up may owe before they become "everything changed". */
const MAX_PENDING_KEY_BYTES = 1024 * 1024;
