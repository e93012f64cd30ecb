import { setFlagsFromString } from "node:v8";

/**
 * Whether node was told how large V8's young generation may be: then the
 * operator chose, and the llmcache command leaves it as they chose. V8
 * takes its flags with dashes or underscores.
 */
function youngGenerationChosen(execArgv: readonly string[], nodeOptions: string | undefined): boolean {
  const flags = [...execArgv, ...(nodeOptions ?? "").split(/\s+/)];
  return flags.some((flag) => /^--(max[-_]semi[-_]space[-_]size|min[-_]semi[-_]space[-_]size|semi[-_]space[-_]growth[-_]factor)\b/.test(flag));
}

// V8 lets the young generation grow from 1 MiB a semi-space to 16 MiB when
// garbage comes fast, as it does in a server: resident memory that no byte
// budget accounts for, and kept. Under the reliability suite's load (96
// callers, 64 MiB budget) a server peaked at 145-151 MiB resident with it
// kept small against 195 MiB with Node's defaults (69 MiB idle against 80),
// and its CPU per lookup and per update was no higher: a call's garbage
// dies young either way. Only the growth factor can still be changed once
// V8 has started; at 1 the young generation keeps the size it starts with.
// main.ts imports this before anything else, because loading the server's
// modules alone grows it to 16 MiB.
if (!youngGenerationChosen(process.execArgv, process.env.NODE_OPTIONS)) setFlagsFromString("--semi-space-growth-factor=1");
