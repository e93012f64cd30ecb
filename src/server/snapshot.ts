import { createHash } from "node:crypto";
import { createReadStream } from "node:fs";
import { open, rename, stat, unlink } from "node:fs/promises";
import { dirname } from "node:path";
import type { CacheStore, StoredEntry } from "../engine/cache-store.js";
import { EntryTooLargeError } from "../engine/entry-too-large-error.js";

/**
 * The snapshot file: a header line, then one record per entry in eviction
 * order (oldest first), then an end record with the count and a SHA-256 of
 * everything before it, so that a truncated or damaged file is detected
 * rather than half loaded.
 *
 *   record: 0x01, then namespace, prompt, llm_string and value, each a u32
 *           length and its bytes, then the entry's bytes (u32) and its
 *           expiry (f64 milliseconds since the epoch; Infinity: never)
 *   end:    0x00, the count (f64), the 32-byte digest
 */
const MAGIC = Buffer.from("LLMCACHE-SNAPSHOT 1\n", "latin1");
const RECORD = 1;
const END = 0;
const DIGEST_BYTES = 32;

/** How long one slice of writing may hold the event loop: requests are served between slices. */
const SLICE_MS = 4;

export interface SnapshotWritten {
  entries: number;
  bytes: number;
  /** The longest the event loop was held by one slice, in ms. */
  longestSliceMs: number;
}

/**
 * Writes the store to `path` atomically: to a temporary file, fsync'd,
 * then renamed over `path` (and the directory fsync'd), so a crash leaves
 * the old snapshot or the new one, never a mix. It writes a slice of a few
 * milliseconds at a time; the store may change in between, and the
 * snapshot holds each entry as it was when reached (see CacheStore.walk).
 * Expired entries are left out.
 */
export async function writeSnapshot(
  store: CacheStore<string>,
  path: string,
  now: () => number = Date.now,
  sliceMs = SLICE_MS,
): Promise<SnapshotWritten> {
  const temporary = `${path}.tmp-${process.pid}`;
  const file = await open(temporary, "w", 0o600);
  const walk = store.walk();
  const digest = createHash("sha256");
  let entries = 0;
  let bytes = 0;
  let longestSliceMs = 0;
  const write = async (data: Buffer) => {
    digest.update(data);
    bytes += data.length;
    await file.write(data);
  };
  try {
    await write(MAGIC);
    for (let done = false; !done; ) {
      const sliceStart = performance.now();
      const records: Buffer[] = [];
      const time = now();
      while (performance.now() - sliceStart < sliceMs) {
        const entry = walk.next();
        if (!entry) {
          done = true;
          break;
        }
        if (entry.expiresAt <= time) continue;
        records.push(encodeRecord(entry));
        entries++;
      }
      const data = Buffer.concat(records);
      longestSliceMs = Math.max(longestSliceMs, performance.now() - sliceStart);
      await write(data); // the event loop runs while this waits
    }
    const end = Buffer.alloc(9);
    end[0] = END;
    end.writeDoubleBE(entries, 1);
    digest.update(end);
    await file.write(Buffer.concat([end, digest.digest()]));
    await file.sync();
    await file.close();
    await rename(temporary, path);
    await syncDirectory(dirname(path));
    return { entries, bytes: bytes + end.length + DIGEST_BYTES, longestSliceMs };
  } catch (error) {
    await file.close().catch(() => {});
    await unlink(temporary).catch(() => {});
    throw error;
  } finally {
    walk.close();
  }
}

export type SnapshotLoaded =
  | { kind: "none" }
  | { kind: "loaded"; entries: number; expired: number; tooLarge: number }
  | { kind: "corrupt"; problem: string; movedTo: string };

/**
 * Loads a snapshot into an empty store, keeping its order, namespaces and
 * expiry times; entries that expired meanwhile are skipped. A file that is
 * damaged or truncated is not used: the store is emptied again, the file is
 * renamed aside (`.corrupt-<time>`) for a person to look at, and the result
 * says why. No file is not an error.
 */
export async function loadSnapshot(store: CacheStore<string>, path: string, now: () => number = Date.now): Promise<SnapshotLoaded> {
  try {
    await stat(path);
  } catch {
    return { kind: "none" };
  }
  const counts = { entries: 0, expired: 0, tooLarge: 0 };
  try {
    await readRecords(path, (entry) => {
      if (entry.expiresAt <= now()) {
        counts.expired++;
        return;
      }
      try {
        store.set(entry.namespace, entry.prompt, entry.llmString, entry.value, entry.bytes, { expiresAt: entry.expiresAt });
        counts.entries++;
      } catch (error) {
        // The byte budget may have shrunk since the snapshot was taken.
        if (!(error instanceof EntryTooLargeError)) throw error;
        counts.tooLarge++;
      }
    });
    return { kind: "loaded", ...counts };
  } catch (error) {
    if (!(error instanceof CorruptSnapshotError)) throw error;
    store.clear();
    const movedTo = `${path}.corrupt-${new Date(now()).toISOString().replace(/[:.]/g, "-")}`;
    await rename(path, movedTo);
    return { kind: "corrupt", problem: error.message, movedTo };
  }
}

class CorruptSnapshotError extends Error {}

function encodeRecord(entry: StoredEntry<string>): Buffer {
  const fields = [entry.namespace, entry.prompt, entry.llmString, entry.value];
  let size = 1 + 4 + 8;
  for (const field of fields) size += 4 + field.length; // latin1: one byte per character
  const record = Buffer.allocUnsafe(size);
  record[0] = RECORD;
  let position = 1;
  for (const field of fields) {
    position = record.writeUInt32BE(field.length, position);
    position += record.write(field, position, "latin1");
  }
  position = record.writeUInt32BE(entry.bytes, position);
  record.writeDoubleBE(entry.expiresAt, position);
  return record;
}

/** Reads the records of a snapshot in order, checking the header, the end record and the digest. */
async function readRecords(path: string, onEntry: (entry: StoredEntry<string>) => void): Promise<void> {
  const digest = createHash("sha256");
  let pending: Buffer = Buffer.alloc(0);
  let headerRead = false;
  let records = 0;
  let ended = false;
  for await (const chunk of createReadStream(path, { highWaterMark: 1024 * 1024 })) {
    if (ended) throw new CorruptSnapshotError("bytes after the end record");
    pending = pending.length === 0 ? (chunk as Buffer) : Buffer.concat([pending, chunk as Buffer]);
    let position = 0;
    if (!headerRead) {
      if (pending.length < MAGIC.length) continue;
      if (!pending.subarray(0, MAGIC.length).equals(MAGIC)) throw new CorruptSnapshotError("not an llmcache snapshot (bad header)");
      digest.update(MAGIC);
      position = MAGIC.length;
      headerRead = true;
    }
    for (;;) {
      const parsed = parseRecord(pending, position);
      if (parsed === undefined) break; // the rest of the record is in the next chunk
      if (parsed.kind === "end") {
        digest.update(pending.subarray(position, parsed.digestAt));
        const expected = digest.digest();
        if (parsed.count !== records) throw new CorruptSnapshotError(`the end record counts ${parsed.count} entries, the file holds ${records}`);
        if (!expected.equals(pending.subarray(parsed.digestAt, parsed.digestAt + DIGEST_BYTES))) {
          throw new CorruptSnapshotError("the digest does not match: the file is damaged");
        }
        if (parsed.digestAt + DIGEST_BYTES !== pending.length) throw new CorruptSnapshotError("bytes after the end record");
        ended = true;
        position = pending.length;
        break;
      }
      digest.update(pending.subarray(position, parsed.next));
      onEntry(parsed.entry);
      records++;
      position = parsed.next;
    }
    pending = pending.subarray(position);
  }
  if (!headerRead) throw new CorruptSnapshotError("the file is too short to be a snapshot");
  if (!ended) throw new CorruptSnapshotError(`the file ends after ${records} entries without its end record: it was cut short`);
}

type Parsed =
  | { kind: "entry"; entry: StoredEntry<string>; next: number }
  | { kind: "end"; count: number; digestAt: number };

/** Parses one record at `position`; undefined when the buffer ends before the record does. */
function parseRecord(buffer: Buffer, position: number): Parsed | undefined {
  if (position >= buffer.length) return undefined;
  const kind = buffer[position];
  if (kind === END) {
    if (buffer.length < position + 9 + DIGEST_BYTES) return undefined;
    return { kind: "end", count: buffer.readDoubleBE(position + 1), digestAt: position + 9 };
  }
  if (kind !== RECORD) throw new CorruptSnapshotError(`unknown record type ${kind} at byte ${position}`);
  let at = position + 1;
  const fields: string[] = [];
  for (let i = 0; i < 4; i++) {
    if (buffer.length < at + 4) return undefined;
    const length = buffer.readUInt32BE(at);
    if (buffer.length < at + 4 + length) return undefined;
    fields.push(buffer.toString("latin1", at + 4, at + 4 + length));
    at += 4 + length;
  }
  if (buffer.length < at + 12) return undefined;
  const [namespace, prompt, llmString, value] = fields as [string, string, string, string];
  const entry = { namespace, prompt, llmString, value, bytes: buffer.readUInt32BE(at), expiresAt: buffer.readDoubleBE(at + 4) };
  return { kind: "entry", entry, next: at + 12 };
}

async function syncDirectory(directory: string): Promise<void> {
  const handle = await open(directory, "r");
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}
