// Loaded into a server that is measured for memory (by the benchmark and the
// reliability suite) with node --expose-gc --import ...: SIGUSR2 runs a full
// garbage collection, so that the resident size read next is what the
// server holds, not garbage that the next collection would free.
process.on("SIGUSR2", () => {
  (globalThis as { gc?: () => void }).gc?.();
  process.stdout.write("collected\n");
});
