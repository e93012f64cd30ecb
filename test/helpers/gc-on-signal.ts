// Loaded into a server that is measured for memory (by the benchmark and the
// reliability suite) with node --expose-gc --import ...: SIGUSR2 runs a full
// garbage collection, so that the resident size read next is what the
// server holds, not garbage that the next collection would free; it then
// prints what the JavaScript heap and Buffers hold, in bytes.
process.on("SIGUSR2", () => {
  (globalThis as { gc?: () => void }).gc?.();
  const { heapUsed, external } = process.memoryUsage();
  process.stdout.write(`collected ${heapUsed + external}\n`);
});
