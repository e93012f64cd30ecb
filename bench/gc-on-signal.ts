// Loaded into the server of the memory benchmark only (node --expose-gc
// --import ...): SIGUSR2 runs a full garbage collection, so that the
// resident size the benchmark then reads is what the entries hold, not
// garbage that the next collection would free.
process.on("SIGUSR2", () => {
  (globalThis as { gc?: () => void }).gc?.();
  process.stdout.write("collected\n");
});
