import { createHash } from "node:crypto";
import { createReadStream } from "node:fs";
import { open, readdir, rename, stat, unlink, writeFile } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import type { Store, StoredEntry, WalkableStore } from "../engine/store.js";
import { EntryTooLargeError } from "../engine/entry-too-large-error.js";
import { TooManyNamespacesError } from "../engine/too-many-namespaces-error.js";
import type { StoredGenerations } from "../rpc/codec/generations.js";

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

/** The snapshot cannot be kept where it was asked to be: the server does not start. */
export class SnapshotSetupError extends Error {
  override readonly name = "SnapshotSetupError";
  /** The snapshot's path, as given. */
  readonly path: string;
  /** What is wrong, without the path: for callers that name the setting the path came from. */
  readonly reason: string;

  constructor(path: string, reason: string, options?: ErrorOptions) {
    super(`cannot write snapshot ${path}: ${reason}`, options);
    this.path = path;
    this.reason = reason;
  }
}

/**
 * Checks, before the server acknowledges anything, that a snapshot can be
 * written at `path`: otherwise the first sign would be a failed write hours
 * later, or at shutdown, and the updates since would be lost. It really
 * creates and removes a file there, since mode bits do not tell (root
 * ignores them; a read-only mount does not show in them). It then removes
 * the temporary files that interrupted writes of this snapshot left, and
 * resolves with their paths.
 */
export async function prepareSnapshotDirectory(path: string): Promise<{ removed: string[] }> {
  const directory = dirname(path);
  const fail = (reason: string, cause?: unknown) => new SnapshotSetupError(path, reason, { cause });
  let isDirectory: boolean;
  try {
    isDirectory = (await stat(directory)).isDirectory();
  } catch (error) {
    if (codeOf(error) === "ENOENT") throw fail(`directory ${directory} does not exist`, error);
    if (codeOf(error) === "ENOTDIR") throw fail(`${directory} is not a directory`, error);
    throw fail(`cannot reach directory ${directory}: ${codeOf(error)}`, error);
  }
  if (!isDirectory) throw fail(`${directory} is not a directory`);
  if ((await stat(path).catch(() => undefined))?.isDirectory()) throw fail(`${path} is a directory`);
  const probe = `${path}.probe-${process.pid}`;
  try {
    await writeFile(probe, "probe", { mode: 0o600 });
    await unlink(probe);
  } catch (error) {
    await unlink(probe).catch(() => {});
    throw fail(`directory ${directory} is not writable: ${codeOf(error)}`, error);
  }
  return { removed: await removeStaleTemporaryFiles(path) };
}

/**
 * Removes the `PATH.tmp-PID` files of this snapshot (see writeSnapshot),
 * which only a process that died mid-write leaves behind; but not those of
 * another process still running, which may be writing (a second server
 * given the same path). A PID reused since only keeps its file until a
 * later start. Other files, those of other snapshots too, are left alone.
 */
async function removeStaleTemporaryFiles(path: string): Promise<string[]> {
  const directory = dirname(path);
  const prefix = `${basename(path)}.tmp-`;
  const removed: string[] = [];
  for (const name of await readdir(directory)) {
    const pid = name.startsWith(prefix) ? name.slice(prefix.length) : "";
    if (!/^\d+$/.test(pid) || isAnotherLiveProcess(Number(pid))) continue;
    const file = join(directory, name);
    try {
      await unlink(file);
      removed.push(file);
    } catch (error) {
      if (codeOf(error) !== "ENOENT") {
        throw new SnapshotSetupError(path, `cannot remove stale temporary file ${file}: ${codeOf(error)}`, { cause: error });
      }
    }
  }
  return removed;
}

function isAnotherLiveProcess(pid: number): boolean {
  if (pid === 0 || pid === process.pid) return false; // 0 would signal our own process group
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return codeOf(error) === "EPERM"; // it runs, as another user
  }
}

function codeOf(error: unknown): string {
  return (error as NodeJS.ErrnoException).code ?? (error instanceof Error ? error.message : String(error));
}

/**
 * Writes the store to `path` atomically: to a temporary file, fsync'd,
 * then renamed over `path` (and the directory fsync'd), so a crash leaves
 * the old snapshot or the new one, never a mix. It writes a slice of a few
 * milliseconds at a time; the store may change in between, and the
 * snapshot holds each entry as it was when reached (see WalkableStore.walk).
 * Expired entries are left out.
 */
export async function writeSnapshot(
  store: WalkableStore<StoredGenerations>,
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
  | { kind: "loaded"; entries: number; expired: number; tooLarge: number; tooManyNamespaces: number }
  | { kind: "corrupt"; problem: string; movedTo: string };

/**
 * Loads a snapshot into an empty store, keeping its order, namespaces and
 * expiry times; entries that expired meanwhile are skipped, and so are those
 * the store's limits now refuse (a smaller byte budget or --max-namespaces
 * than when the snapshot was taken), counted: a lowered limit must not keep
 * the server from starting on every restart. A file that is
 * damaged or truncated is not used: the store is emptied again, the file is
 * renamed aside (`.corrupt-<time>`) for a person to look at, and the result
 * says why. No file is not an error.
 */
export async function loadSnapshot(store: Store<StoredGenerations>, path: string, now: () => number = Date.now): Promise<SnapshotLoaded> {
  let fileBytes: number;
  try {
    fileBytes = (await stat(path)).size;
  } catch {
    return { kind: "none" };
  }
  const counts = { entries: 0, expired: 0, tooLarge: 0, tooManyNamespaces: 0 };
  try {
    await readRecords(path, fileBytes, (entry) => {
      if (entry.expiresAt <= now()) {
        counts.expired++;
        return;
      }
      try {
        store.set(entry.namespace, entry.prompt, entry.llmString, entry.value, entry.bytes, { expiresAt: entry.expiresAt });
        counts.entries++;
      } catch (error) {
        if (error instanceof EntryTooLargeError) counts.tooLarge++;
        else if (error instanceof TooManyNamespacesError) counts.tooManyNamespaces++;
        else throw error;
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

function encodeRecord(entry: StoredEntry<StoredGenerations>): Buffer {
  const fields = [entry.namespace, entry.prompt, entry.llmString, entry.value];
  let size = 1 + 4 + 8;
  for (const field of fields) size += 4 + field.length; // latin1 keys: one byte per character
  const record = Buffer.allocUnsafe(size);
  record[0] = RECORD;
  let position = 1;
  for (const field of fields) {
    position = record.writeUInt32BE(field.length, position);
    position += typeof field === "string" ? record.write(field, position, "latin1") : field.copy(record, position);
  }
  position = record.writeUInt32BE(entry.bytes, position);
  record.writeDoubleBE(entry.expiresAt, position);
  return record;
}

const FIELDS = ["a namespace", "a prompt", "an llm_string", "a value"] as const;

/**
 * Reads the records of a snapshot in order, checking the header, the end
 * record and the digest. The work is bounded by the file's size: a record
 * that claims a field running past the end of the file is corrupt at once,
 * not read to the end first; and the chunks of a long record are gathered
 * and joined once it is all there, not joined again at each chunk (which
 * made start-up quadratic: 28 s for a record claiming 256 MiB).
 */
async function readRecords(path: string, fileBytes: number, onEntry: (entry: StoredEntry<StoredGenerations>) => void): Promise<void> {
  const digest = createHash("sha256");
  let pending: Buffer = Buffer.alloc(0); // read and not parsed yet: the file's bytes from `offset` on
  let offset = 0;
  const arrived: Buffer[] = []; // read since, not joined to `pending` yet
  let arrivedBytes = 0;
  let needed = MAGIC.length; // what `pending` must hold before parsing can go on
  let headerRead = false;
  let records = 0;
  let ended = false;
  for await (const chunk of createReadStream(path, { highWaterMark: 1024 * 1024 })) {
    if (ended) throw new CorruptSnapshotError("bytes after the end record");
    arrived.push(chunk as Buffer);
    arrivedBytes += (chunk as Buffer).length;
    if (pending.length + arrivedBytes < needed) continue;
    pending = pending.length === 0 && arrived.length === 1 ? arrived[0]! : Buffer.concat([pending, ...arrived]);
    arrived.length = 0;
    arrivedBytes = 0;
    let position = 0;
    if (!headerRead) {
      if (!pending.subarray(0, MAGIC.length).equals(MAGIC)) throw new CorruptSnapshotError("not an llmcache snapshot (bad header)");
      digest.update(MAGIC);
      position = MAGIC.length;
      headerRead = true;
    }
    for (;;) {
      const parsed = parseRecord(pending, position, { offset, fileBytes, record: records + 1 });
      if (parsed.kind === "short") {
        needed = parsed.needs - position;
        break;
      }
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
    offset += position;
  }
  if (!headerRead) throw new CorruptSnapshotError("the file is too short to be a snapshot");
  if (!ended) throw new CorruptSnapshotError(`the file ends after ${records} entries without its end record: it was cut short`);
}

type Parsed =
  | { kind: "entry"; entry: StoredEntry<StoredGenerations>; next: number }
  | { kind: "end"; count: number; digestAt: number }
  /** The buffer ends before the record does: it must hold `needs` bytes for the record to be parsed. */
  | { kind: "short"; needs: number };

/** Where a buffer lies: it starts at byte `offset` of a file of `fileBytes`, and `record` (from 1) is next. */
interface Place {
  offset: number;
  fileBytes: number;
  record: number;
}

/** Parses one record at `position`. */
function parseRecord(buffer: Buffer, position: number, { offset, fileBytes, record }: Place): Parsed {
  if (position >= buffer.length) return { kind: "short", needs: position + 1 };
  const kind = buffer[position];
  if (kind === END) {
    const needs = position + 9 + DIGEST_BYTES;
    if (buffer.length < needs) return { kind: "short", needs };
    return { kind: "end", count: buffer.readDoubleBE(position + 1), digestAt: position + 9 };
  }
  if (kind !== RECORD) throw new CorruptSnapshotError(`unknown record type ${kind} at byte ${offset + position}`);
  // The lengths first: the fields are decoded once the whole record is in the buffer.
  let at = position + 1;
  const spans: [start: number, end: number][] = [];
  for (const field of FIELDS) {
    if (buffer.length < at + 4) return { kind: "short", needs: at + 4 };
    const length = buffer.readUInt32BE(at);
    if (offset + at + 4 + length > fileBytes) {
      throw new CorruptSnapshotError(
        `record ${record} at byte ${offset + position} claims ${field} of ${length} bytes, past the end of the file (${fileBytes} bytes)`,
      );
    }
    spans.push([at + 4, at + 4 + length]);
    at += 4 + length;
  }
  if (buffer.length < at + 12) return { kind: "short", needs: at + 12 };
  const [namespace, prompt, llmString] = spans.slice(0, 3).map(([start, end]) => buffer.toString("latin1", start, end)) as [string, string, string];
  const [valueStart, valueEnd] = spans[3]!;
  // A copy of its own: a store may keep the value as it is given (a HeapIndex does), and must not keep the file's chunk.
  const value = Buffer.allocUnsafeSlow(valueEnd - valueStart);
  buffer.copy(value, 0, valueStart, valueEnd);
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
