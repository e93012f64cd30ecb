#!/usr/bin/env node
// The llmcache command. Before anything else loads, V8's young generation
// is kept at its starting size (see young-generation.ts): a static import
// of the commands would load every module of the server first.
import "./young-generation.js";

const { runCommandLine } = await import("./command-line.js");
await runCommandLine(process.argv.slice(2));
