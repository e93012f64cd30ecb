import { setFlagsFromString } from "node:v8";

/**
 * How the llmcache command sizes V8's heap: for a heap that holds only the
 * server's own objects and the garbage of calls, since the entries are kept
 * in segments outside it. Each setting yields to the operator's: a flag
 * given to node, on its command line or in NODE_OPTIONS, is left as given.
 * Only these two can still be changed once V8 has started. main.ts imports
 * this module before anything else, because loading the server's modules
 * alone grows the young generation to 16 MiB.
 */

/** Whether node was given one of these V8 flags, which V8 takes with dashes or underscores. */
function given(names: readonly string[]): boolean {
  const flags = [...process.execArgv, ...(process.env.NODE_OPTIONS ?? "").split(/\s+/)];
  return flags.some((flag) => names.some((name) => flag.replaceAll("_", "-").startsWith(`--${name}`)));
}

// The young generation keeps the size it starts with, 1 MiB a semi-space,
// where V8 would let it grow to 16 MiB when garbage comes fast: 32 MiB
// resident that no byte budget accounts for. Under the reliability suite's
// load (96 callers, 64 MiB budget) a server peaked at 145-151 MiB against
// 195, idle at 69 MiB against 80, with no more CPU per lookup or update: a
// call's garbage dies young either way.
if (!given(["max-semi-space-size", "min-semi-space-size", "semi-space-growth-factor"])) {
  setFlagsFromString("--semi-space-growth-factor=1");
}

// The old generation may grow by 20% of what survived the last full
// collection before the next one, where V8 lets it grow by up to 4 times
// when collections are fast, as they are with so little on the heap.
// Churning 2,000,000 entries through a 64 MiB budget, peak resident memory
// over the budget fell from 111, 110, 161 and 72 MiB to 76, 72, 55 and 39
// (an llm_string, a prompt, a namespace each; tiny values), and from 122
// to 114 MiB for 64 KiB values, whose excess is request buffers outside
// the heap. Server CPU per call under load showed no change.
if (!given(["heap-growing-percent"])) {
  setFlagsFromString("--heap-growing-percent=20");
}
