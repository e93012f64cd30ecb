// Loaded into a server that is measured for memory (by the benchmark and the
// reliability suite) with node --expose-gc --import ...: SIGUSR2 runs full
// garbage collections, so that the resident size read next is what the
// server holds, not garbage that the next collection would free; it then
// prints what the JavaScript heap and Buffers hold, in bytes, by part
// (see memoryAfterCollection).
const collect = (globalThis as { gc?: () => void }).gc ?? (() => {});

process.on("SIGUSR2", () => {
  collect();
  // V8 frees the dead Buffers' memory, and takes it off its `external` count,
  // on a background thread after the collection: read at once, after the
  // hostile-input check's frames, `external` still held 6 to 12 MiB of freed
  // Buffers in each of six runs, past the check's 8 MiB bound in two. A
  // second collection, a turn of the event loop later, waits for that sweep
  // to finish first.
  setImmediate(() => {
    collect();
    const { heapUsed, external, arrayBuffers } = process.memoryUsage();
    process.stdout.write(`collected heapUsed ${heapUsed} external ${external} arrayBuffers ${arrayBuffers}\n`);
  });
});
