import assert from "node:assert/strict";
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { CacheStore } from "../../src/engine/cache-store.js";
import { SegmentIndex } from "../../src/engine/segment-index.js";
import { startServer } from "../../src/server/server.js";
import { loadSnapshot, prepareSnapshotDirectory, SnapshotSetupError, writeSnapshot } from "../../src/server/snapshot.js";

const directory = () => mkdtempSync(join(tmpdir(), "llmcache-hardening-"));

/** The header line's length: the first record starts at this byte. */
const FIRST_RECORD = "LLMCACHE-SNAPSHOT 1\n".length;

async function assertRefused(path: string, message: string): Promise<void> {
  await assert.rejects(prepareSnapshotDirectory(path), (error: unknown) => {
    assert.ok(error instanceof SnapshotSetupError, String(error));
    assert.equal(error.message, message);
    return true;
  });
}

describe("the snapshot's directory, checked at start", () => {
  it("refuses a directory that does not exist", async () => {
    const dir = directory();
    await assertRefused(join(dir, "missing", "cache.snapshot"), `cannot write snapshot ${dir}/missing/cache.snapshot: directory ${dir}/missing does not exist`);
  });

  it("refuses a directory that is a regular file, which fails even as root", async () => {
    const dir = directory();
    writeFileSync(join(dir, "file"), "");
    await assertRefused(join(dir, "file", "cache.snapshot"), `cannot write snapshot ${dir}/file/cache.snapshot: ${dir}/file is not a directory`);
  });

  it("refuses a snapshot path that is a directory", async () => {
    const dir = directory();
    mkdirSync(join(dir, "cache.snapshot"));
    await assertRefused(join(dir, "cache.snapshot"), `cannot write snapshot ${dir}/cache.snapshot: ${dir}/cache.snapshot is a directory`);
  });

  it("refuses a directory it cannot create a file in, by trying", async function () {
    // Root ignores mode bits, but not sysfs's refusal.
    const asRoot = process.getuid?.() === 0;
    if (asRoot && !existsSync("/sys/kernel")) this.skip();
    const dir = asRoot ? "/sys" : directory();
    if (!asRoot) chmodSync(dir, 0o500);
    try {
      await assert.rejects(prepareSnapshotDirectory(join(dir, "cache.snapshot")), (error: unknown) => {
        assert.ok(error instanceof SnapshotSetupError, String(error));
        assert.match(error.message, new RegExp(`^cannot write snapshot ${dir}/cache\\.snapshot: directory ${dir} is not writable: (EACCES|EROFS)$`));
        return true;
      });
    } finally {
      if (!asRoot) chmodSync(dir, 0o700);
    }
  });

  it("keeps the server from starting, before it listens", async () => {
    const path = join(directory(), "missing", "cache.snapshot");
    const started = startServer({ port: 0, snapshotPath: path }).then((server) => server.shutdown()); // were it to start
    await assert.rejects(started, SnapshotSetupError);
  });

  it("leaves a writable directory as it was, probe included", async () => {
    const dir = directory();
    writeFileSync(join(dir, "cache.snapshot"), "kept");
    assert.deepEqual(await prepareSnapshotDirectory(join(dir, "cache.snapshot")), { removed: [] });
    assert.deepEqual(readdirSync(dir), ["cache.snapshot"]);
  });

  it("removes the temporary files of this snapshot's interrupted writes, and no other file", async () => {
    const dir = directory();
    const stale = [`cache.snapshot.tmp-${process.pid}`, "cache.snapshot.tmp-2147483647", "cache.snapshot.tmp-2147483646"];
    const others = [
      "cache.snapshot",
      `cache.snapshot.tmp-${process.ppid}`, // a process still running: it may be writing
      "cache.snapshot.tmp-backup",
      "cache.snapshot.corrupt-2024-01-01T00-00-00-000Z",
      "other.snapshot.tmp-2147483647",
      "notes.txt",
    ];
    const store = new CacheStore<Buffer>(undefined, new SegmentIndex());
    store.set("", "kept", "m", Buffer.from("value"), 5);
    await writeSnapshot(store, join(dir, "cache.snapshot"));
    for (const name of [...stale, ...others.slice(1)]) writeFileSync(join(dir, name), "partial");

    const server = await startServer({ port: 0, snapshotPath: join(dir, "cache.snapshot") });
    try {
      assert.deepEqual(readdirSync(dir).sort(), [...others].sort());
      assert.equal(readFileSync(join(dir, "notes.txt"), "latin1"), "partial");
    } finally {
      await server.shutdown();
    }
  });
});

describe("loading a snapshot whose record claims too much", () => {
  it("finds a length past the end of the file at once, and sets the file aside", async () => {
    const dir = directory();
    const path = join(dir, "cache.snapshot");
    const store = new CacheStore<Buffer>(undefined, new SegmentIndex());
    for (let i = 0; i < 3; i++) store.set("", `prompt ${i}`, "m", Buffer.from(`value ${i}`), 10);
    await writeSnapshot(store, path);
    const bytes = readFileSync(path);
    bytes.writeUInt32BE(2 ** 31, FIRST_RECORD + 1 + 4); // after the type and the (empty) namespace: the prompt's length
    writeFileSync(path, bytes);

    const restored = new CacheStore<Buffer>(undefined, new SegmentIndex());
    const started = performance.now();
    const loaded = await loadSnapshot(restored, path);
    const elapsedMs = performance.now() - started;
    assert.deepEqual(loaded.kind === "corrupt" && loaded.problem, `record 1 at byte 20 claims a prompt of 2147483648 bytes, past the end of the file (${bytes.length} bytes)`);
    assert.ok(elapsedMs < 500, `took ${elapsedMs} ms`);
    assert.equal(restored.size, 0);
    assert.deepEqual(readdirSync(dir).map((f) => f.replace(/\d{4}-.*$/, "TIME")), ["cache.snapshot.corrupt-TIME"]);
  });

  it("reads a long record once, and finds the garbage after it quickly", async function () {
    this.timeout(10_000);
    // One record whose prompt fills the file but its last 8 bytes, which claim an llm_string of 2^32 - 1 bytes.
    // Joining the chunks again at each one took 2.6 s for this file, and reported it cut short.
    const fileBytes = 64 * 2 ** 20;
    const bytes = Buffer.alloc(fileBytes, "p");
    bytes.write("LLMCACHE-SNAPSHOT 1\n", 0, "latin1");
    bytes[FIRST_RECORD] = 1;
    bytes.writeUInt32BE(0, FIRST_RECORD + 1);
    bytes.writeUInt32BE(fileBytes - (FIRST_RECORD + 9) - 8, FIRST_RECORD + 5);
    bytes.fill(0xff, fileBytes - 8);
    const path = join(directory(), "cache.snapshot");
    writeFileSync(path, bytes);

    const restored = new CacheStore<Buffer>(undefined, new SegmentIndex());
    const started = performance.now();
    const loaded = await loadSnapshot(restored, path);
    const elapsedMs = performance.now() - started;
    assert.deepEqual(
      loaded.kind === "corrupt" && loaded.problem,
      "record 1 at byte 20 claims an llm_string of 4294967295 bytes, past the end of the file (67108864 bytes)",
    );
    assert.ok(elapsedMs < 2_000, `took ${elapsedMs} ms`);
    assert.equal(restored.size, 0);
  });
});
